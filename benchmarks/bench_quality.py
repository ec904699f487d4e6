"""Time to quality on tiny Shakespeare, char level, the last 10% of the text held out for validation.

Default run: the project's recommended settings for each device present (textgen_core.defaults),
trained through the project's own Trainer with a wall-clock budget; prints the validation curve
(seconds, step, val nats/char) and the best loss. CPU: 5 minutes. GPU (named in the output): 60 s,
and the first time the validation loss reaches 1.40 nats/char. No GPU: those rows are skipped.

Candidate mode (--candidates) chooses the CPU defaults at equal time on a shared machine:
  1. each candidate's step time and the time of one validation pass: the fastest seen over
     interleaved runs with every step timed (load from other processes only ever adds time);
  2. each candidate trains for the number of steps that fills --seconds at that speed (a step budget,
     so the loss reached does not depend on what else the machine runs while it trains);
  3. the table ranks them by the best validation loss at equal (projected) time.

    python benchmarks/bench_quality.py                           # CPU 5 min (+ GPU 60 s when present)
    python benchmarks/bench_quality.py --candidates --seconds 60 # the CPU defaults search, round 1
    python benchmarks/bench_quality.py --candidates --tokens 3750000 --only ...   # round 2
    python benchmarks/bench_quality.py --changes '{"carry_state": false}'   # the CPU defaults, one change
    python benchmarks/bench_quality.py --quick                   # seconds, for the smoke test
    python benchmarks/bench_quality.py --gpu-only                # the GPU defaults, 60 s
    python benchmarks/bench_quality.py --candidates --gpu-only   # the GPU defaults search (60 s each)
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from common import describe, emit, find_corpus, interleave, machine, table

from textgen_core.data import split_ids, to_id_tensor
from textgen_core.defaults import recommended_settings
from textgen_core.evaluation import total_nats
from textgen_core.models import ModelConfig, build_model
from textgen_core.tokenizers import CharTokenizer
from textgen_core.training import TrainConfig, Trainer

GPU_TARGET = 1.40  # nats per char

# the CPU defaults in fp32, which the candidates for a CPU without bf16 units vary
FP32_BASE = dict(arch="lstm", preset="small", dropout=0.0, batch_size=32, seq_len=64, lr=5e-3, precision="fp32")
# name: model and training settings (anything not named: TrainConfig's defaults)
CANDIDATES = {
    "lstm256x2 b32 t128 lr3e-3 fp32": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=128,
                                           lr=3e-3, precision="fp32"),
    "lstm256x2 b16 t128 lr3e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=16, seq_len=128,
                                           lr=3e-3, precision="bf16"),
    "lstm256x2 b32 t128 lr3e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=128,
                                           lr=3e-3, precision="bf16"),
    "lstm256x2 b64 t128 lr3e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=64, seq_len=128,
                                           lr=3e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr3e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=64, lr=3e-3,
                                          precision="bf16"),
    "lstm256x2 b32 t128 lr6e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=128,
                                           lr=6e-3, precision="bf16"),
    "lstm256x2 b16 t128 lr6e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=16, seq_len=128,
                                           lr=6e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr6e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=64, lr=6e-3,
                                          precision="bf16"),
    "lstm256x2 b32 t64 lr3e-3 d0.2 bf16": dict(arch="lstm", preset="small", dropout=0.2, batch_size=32, seq_len=64,
                                               lr=3e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr5e-3 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=64, lr=5e-3,
                                          precision="bf16"),
    "lstm256x2 b32 t64 lr5e-3 d0.2 bf16": dict(arch="lstm", preset="small", dropout=0.2, batch_size=32, seq_len=64,
                                               lr=5e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr5e-3 d0 bf16": dict(arch="lstm", preset="small", dropout=0.0, batch_size=32, seq_len=64,
                                             lr=5e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr4e-3 d0.05 bf16": dict(arch="lstm", preset="small", dropout=0.05, batch_size=32, seq_len=64,
                                                lr=4e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr1e-2 bf16": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=64, lr=1e-2,
                                          precision="bf16"),
    "gru256x2 b32 t128 lr3e-3 bf16": dict(arch="gru", preset="small", dropout=0.1, batch_size=32, seq_len=128, lr=3e-3,
                                          precision="bf16"),
    "lstm512x2 b32 t128 lr2e-3 bf16": dict(arch="lstm", preset="medium", dropout=0.1, batch_size=32, seq_len=128,
                                           lr=2e-3, precision="bf16"),
    # for a CPU with AMX, which trains the defaults about twice as fast (twice the epochs in 5 minutes)
    "lstm384x2 b32 t64 lr4e-3 d0.1 bf16": dict(arch="lstm", preset="small", hidden=384, dropout=0.1, batch_size=32,
                                               seq_len=64, lr=4e-3, precision="bf16"),
    "lstm256x2 b32 t64 lr5e-3 bf16 carried": dict(arch="lstm", preset="small", dropout=0.1, batch_size=32,
                                                  seq_len=64, lr=5e-3, precision="bf16", carry_state=True),
    # for a CPU without bf16 units (fp32), one thread; run with the kernels held to AVX2 on a faster CPU,
    # whose seconds stand for the AVX2-only CPU's at its measured speed (see BENCHMARKS.md)
    **{f"{name} fp32 1 thread": dict(FP32_BASE, **changes, cpu_threads=1) for name, changes in {
        "lstm256x2 b32 t64 lr5e-3 d0": {},
        "lstm256x2 b32 t64 lr8e-3 d0": dict(lr=8e-3),
        "lstm256x2 b16 t64 lr5e-3 d0": dict(batch_size=16),
        "lstm256x2 b32 t32 lr5e-3 d0": dict(seq_len=32),
        "lstm512x1 b32 t64 lr5e-3 d0": dict(preset="medium", layers=1),
        "lstm192x2 b32 t64 lr6e-3 d0": dict(hidden=192, lr=6e-3),
        "gru256x2 b32 t64 lr5e-3 d0": dict(arch="gru"),
        # round 2, around round 1's winner (the GRU): shorter steps, the schedule's floor, width
        "gru256x2 b32 t32 lr5e-3 d0": dict(arch="gru", seq_len=32),
        "gru256x2 b16 t64 lr5e-3 d0": dict(arch="gru", batch_size=16),
        "gru256x2 b16 t32 lr5e-3 d0": dict(arch="gru", batch_size=16, seq_len=32),
        "gru256x2 b32 t64 lr8e-3 d0": dict(arch="gru", lr=8e-3),
        "gru256x2 b32 t64 lr5e-3 d0 min-lr0": dict(arch="gru", min_lr_ratio=0.0),
        "gru320x2 b32 t64 lr5e-3 d0": dict(arch="gru", hidden=320),
        "gru256x2 emb128 b32 t64 lr5e-3 d0": dict(arch="gru", embedding=128),
        # round 3: each batch row reading on through its part of the text, the state carried between steps
        "gru256x2 b32 t64 lr5e-3 d0 carried": dict(arch="gru", carry_state=True),
        "gru256x2 b16 t64 lr5e-3 d0 carried": dict(arch="gru", batch_size=16, carry_state=True),
        "gru256x2 b32 t32 lr5e-3 d0 carried": dict(arch="gru", seq_len=32, carry_state=True),
        "lstm256x2 b32 t64 lr5e-3 d0.1 carried": dict(dropout=0.1, carry_state=True),
        # round 4, the state carried: the schedule and the regularisation around the one-core defaults
        "gru256x2 b32 t64 lr7e-3 d0 carried": dict(arch="gru", carry_state=True, lr=7e-3),
        "gru256x2 b32 t64 lr3.5e-3 d0 carried": dict(arch="gru", carry_state=True, lr=3.5e-3),
        "gru256x2 b32 t64 lr5e-3 d0 min-lr0 carried": dict(arch="gru", carry_state=True, min_lr_ratio=0.0),
        "gru256x2 b32 t64 lr5e-3 d0 wd0.1 carried": dict(arch="gru", carry_state=True, weight_decay=0.1),
        "gru256x2 b32 t64 lr5e-3 d0 clip3 carried": dict(arch="gru", carry_state=True, grad_clip=3.0),
        # round 5, around round 4's winner (weight decay 0.1)
        "gru256x2 b32 t64 lr5e-3 d0 wd0.2 carried": dict(arch="gru", carry_state=True, weight_decay=0.2),
        "gru256x2 b32 t64 lr5e-3 d0 wd0.3 carried": dict(arch="gru", carry_state=True, weight_decay=0.3),
        # the same two with another seed (the model's weights, the streams' order, the batches)
        "gru256x2 b32 t64 lr5e-3 d0 carried seed1": dict(arch="gru", carry_state=True, seed=1),
        "gru256x2 b32 t64 lr5e-3 d0 wd0.1 carried seed1": dict(arch="gru", carry_state=True, weight_decay=0.1, seed=1),
    }.items()},
    # the same where the CPU has two physical cores: a second thread trained the LSTM 1.8x faster there
    **{f"{name} fp32 2 threads": dict(FP32_BASE, **changes, cpu_threads=2) for name, changes in {
        "lstm256x2 b32 t64 lr5e-3 d0": {},
        "gru256x2 b32 t64 lr5e-3 d0": dict(arch="gru"),
        "lstm256x2 b32 t64 lr5e-3 d0.1": dict(dropout=0.1),
        "gru256x2 b32 t64 lr5e-3 d0.1": dict(arch="gru", dropout=0.1),
        "gru256x2 b32 t64 lr5e-3 d0 carried": dict(arch="gru", carry_state=True),
        "lstm256x2 b32 t64 lr5e-3 d0.1 carried": dict(dropout=0.1, carry_state=True),
    }.items()},
}
# GPU candidates: real wall-clock budgets (a GPU session has the machine to itself). On an H100 these
# models read ~100 epochs of tiny Shakespeare a minute, so the search is about size and regularisation.
GPU_CANDIDATES = {
    "lstm256x2 d0.2 b128 t256 lr3e-3": dict(arch="lstm", preset="small", dropout=0.2, batch_size=128, seq_len=256,
                                            lr=3e-3),
    "lstm512x2 d0.5 b128 t256 lr3e-3": dict(arch="lstm", preset="medium", dropout=0.5, batch_size=128, seq_len=256,
                                            lr=3e-3),
    "lstm1024x2 d0.5 b128 t256 lr2e-3": dict(arch="lstm", preset="large", dropout=0.5, batch_size=128, seq_len=256,
                                             lr=2e-3),
    "lstm1024x2 d0.5 b256 t256 lr3e-3": dict(arch="lstm", preset="large", dropout=0.5, batch_size=256, seq_len=256,
                                             lr=3e-3),
    "lstm1024x2 d0.6 wd0.1 b128 t256 lr2e-3": dict(arch="lstm", preset="large", dropout=0.6, weight_decay=0.1,
                                                   batch_size=128, seq_len=256, lr=2e-3),
    "lstm768x3 d0.5 b128 t256 lr2e-3": dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.5,
                                            batch_size=128, seq_len=256, lr=2e-3),
    "lstm512x3 d0.5 b128 t256 lr3e-3": dict(arch="lstm", preset="medium", layers=3, dropout=0.5, batch_size=128,
                                            seq_len=256, lr=3e-3),
    "gru1024x2 d0.5 b128 t256 lr2e-3": dict(arch="gru", preset="large", dropout=0.5, batch_size=128, seq_len=256,
                                            lr=2e-3),
    # round 2: round 1's 1024x2 models peaked by 15-27 s and then overfit; 512x2 and 768x3 still improved at 60 s
    "lstm768x3 d0.5 b128 t256 lr3e-3": dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.5,
                                            batch_size=128, seq_len=256, lr=3e-3),
    "lstm768x3 d0.6 wd0.1 b128 t256 lr3e-3": dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.6,
                                                  weight_decay=0.1, batch_size=128, seq_len=256, lr=3e-3),
    "lstm1024x3 d0.6 b128 t256 lr2e-3": dict(arch="lstm", preset="large", layers=3, dropout=0.6, batch_size=128,
                                             seq_len=256, lr=2e-3),
    "lstm1024x2 d0.7 wd0.1 b128 t256 lr2e-3": dict(arch="lstm", preset="large", dropout=0.7, weight_decay=0.1,
                                                   batch_size=128, seq_len=256, lr=2e-3),
    "lstm768x2 d0.5 b128 t256 lr3e-3": dict(arch="lstm", preset="large", hidden=768, dropout=0.5, batch_size=128,
                                            seq_len=256, lr=3e-3),
    "lstm512x2 d0.4 b128 t256 lr4e-3": dict(arch="lstm", preset="medium", dropout=0.4, batch_size=128, seq_len=256,
                                            lr=4e-3),
    # round 3, around round 2's winner (lstm768x3 d0.6 wd0.1: 1.3974)
    "lstm768x3 d0.6 wd0.2 b128 t256 lr3e-3": dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.6,
                                                  weight_decay=0.2, batch_size=128, seq_len=256, lr=3e-3),
    "lstm896x3 d0.65 wd0.1 b128 t256 lr3e-3": dict(arch="lstm", preset="large", hidden=896, layers=3, dropout=0.65,
                                                   weight_decay=0.1, batch_size=128, seq_len=256, lr=3e-3),
}
MODEL_KEYS = ("arch", "preset", "embedding", "hidden", "layers", "dropout")


def load_split(quick: bool, seq_len: int):
    path = find_corpus()
    if path is None:
        raise SystemExit("tiny Shakespeare not found (../shared/data or .data/); nothing to measure")
    text = path.read_text(encoding="utf-8")
    if quick:
        text = text[:20_000]
    tokenizer = CharTokenizer().fit(text)
    ids = to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size)
    return split_ids(ids, 0.1, seq_len), tokenizer.vocab_size


def make_model(settings: dict, vocab: int):
    torch.manual_seed(settings.get("seed", 0))
    model_args = {k: settings[k] for k in MODEL_KEYS if k in settings}
    return build_model(ModelConfig.from_preset(model_args.pop("arch"), model_args.pop("preset"), vocab, **model_args))


def train_config(settings: dict, device: str, **budget) -> TrainConfig:
    values = {k: v for k, v in settings.items() if k not in MODEL_KEYS}
    values.update(device=device, seed=settings.get("seed", 0), **budget)
    return TrainConfig(**values)


def train_curve(settings: dict, split, vocab: int, device: str, **budget) -> dict:
    """Train with the project's Trainer; returns the evaluation curve and the run's summary."""
    curve = []
    model = make_model(settings, vocab)
    trainer = Trainer(model, split, train_config(settings, device, **budget), chars_per_token=1.0,
                      callbacks=(lambda e: curve.append(
                          {"seconds": round(e.elapsed, 1), "step": e.step, "val_loss": round(e.val_loss, 4),
                           "train_loss": round(e.train_loss, 4)}) if e.kind == "eval" else None,))
    history = trainer.fit()
    best = min((p["val_loss"] for p in curve), default=float("nan"))
    return {"curve": curve, "best_val_loss": best, "steps": history.end.step, "seconds": history.end.elapsed,
            "params": model.num_parameters(), "tokens_per_step": trainer.tokens_per_step}


def step_and_eval_seconds(settings: dict, split, vocab: int, steps: int = 6, warmup: int = 2) -> dict:
    """Seconds per training step (each step timed: an event per step costs nothing on the CPU), then
    the seconds of one validation pass, in the same run so that both see the same machine load."""
    stamps = {}
    model = make_model(settings, vocab)
    config = train_config(settings, "cpu", max_steps=steps + warmup, eval_every=10**6, log_every=1)
    Trainer(model, split, config, callbacks=(
        lambda e: stamps.setdefault(e.step, time.perf_counter()) if e.kind == "train" else None,)).fit()
    start = time.perf_counter()
    total_nats(model, split.val, config.seq_len, config.eval_streams, settings.get("precision", "fp32"))
    return {"steps": [stamps[i + 1] - stamps[i] for i in range(warmup, steps + warmup)],
            "eval": time.perf_counter() - start}


def run_candidates(names: list[str], seconds: float, quick: bool, repeats: int,
                   tokens: int | None = None) -> list[dict]:
    """Rank candidates at equal projected time, or at an equal number of training tokens (``tokens``:
    fair between candidates with the same tokens/s, and needs no timing on a busy machine)."""
    split, vocab = load_split(quick, 128)
    chosen = {name: CANDIDATES[name] for name in names}
    steps = 2 if quick else 6
    timing = {} if tokens else interleave(
        {name: (lambda s=s: step_and_eval_seconds(s, split, vocab, steps=steps)) for name, s in chosen.items()},
        repeats)
    rows = []
    for name, settings in chosen.items():
        per_step = settings["batch_size"] * settings["seq_len"]
        if tokens:
            step_s = eval_s = float("nan")
            budget_steps = max(2, tokens // per_step)
            eval_every = max(1, budget_steps // 8)
        else:
            # the fastest step and pass seen: other processes' load only ever adds time, and on this
            # shared machine it comes in bursts that even interleaved medians do not cancel
            step_s = min(t for run in timing[name] for t in run["steps"])
            eval_s = min(run["eval"] for run in timing[name])
            # steps that fill the budget with about 8 evaluations on the way
            eval_every = max(1, int(seconds / step_s / 8))
            budget_steps = max(2, int(seconds / (step_s + eval_s / eval_every)))
        print(f"  {name}: {step_s * 1000:,.0f} ms/step, eval {eval_s:.1f} s -> {budget_steps} steps, "
              f"eval every {eval_every}", flush=True)
        start = time.perf_counter()
        result = train_curve(settings, split, vocab, "cpu", max_steps=budget_steps, eval_every=eval_every)
        wall = time.perf_counter() - start
        rows.append({"name": name, "settings": settings, "step_ms": step_s * 1000,
                     "train_tok_s": per_step / step_s, "eval_s": eval_s, "steps": budget_steps,
                     "eval_every": eval_every, "projected_s": None if tokens else seconds,
                     "budget_tokens": budget_steps * per_step, "wall_s": wall, **result})
        print(f"    best val {result['best_val_loss']:.4f} nats/char after {budget_steps} steps "
              f"(wall {wall:.0f} s; curve {[(p['step'], p['val_loss']) for p in result['curve']]})", flush=True)
    return sorted(rows, key=lambda r: r["best_val_loss"])


def seconds_to_target(curve: list[dict]) -> float | None:
    """When the validation loss first reached GPU_TARGET (None: never)."""
    return next((p["seconds"] for p in curve if p["val_loss"] <= GPU_TARGET), None)


def run_gpu_candidates(names: list[str], seconds: float, quick: bool) -> list[dict]:
    """Each candidate trains on the GPU for ``seconds`` of wall-clock time (evaluations included),
    one after another in this process; ranked by the best validation loss."""
    rows = []
    for name in names:
        settings = dict(GPU_CANDIDATES[name], precision="bf16")
        if quick:
            settings.update(preset="tiny", hidden=None, layers=None, batch_size=4, seq_len=32)
        split, vocab = load_split(quick, settings["seq_len"])
        budget = dict(max_steps=4, eval_every=2) if quick else dict(max_minutes=seconds / 60, eval_every=100)
        result = train_curve({k: v for k, v in settings.items() if v is not None}, split, vocab, "cuda", **budget)
        reached = seconds_to_target(result["curve"])
        rows.append({"name": name, "settings": settings, "seconds_to_1_40": reached,
                     "train_tok_s": result["steps"] * result["tokens_per_step"] / result["seconds"], **result})
        print(f"  {name}: best val {result['best_val_loss']:.4f} nats/char, {result['steps']} steps in "
              f"{result['seconds']:.0f} s, 1.40 reached at {reached} s; curve "
              f"{[(p['seconds'], p['val_loss']) for p in result['curve']]}", flush=True)
    return sorted(rows, key=lambda r: r["best_val_loss"])


def run_defaults(device: str, seconds: float, quick: bool, changes: dict | None = None) -> dict:
    settings = dict(recommended_settings(device), **(changes or {}))
    if quick:  # the script's plumbing only: a tiny model for a few steps
        settings.update(preset="tiny", batch_size=4, seq_len=32, eval_every=2)
    split, vocab = load_split(quick, settings["seq_len"])
    budget = dict(max_steps=4) if quick else dict(max_minutes=seconds / 60)
    result = train_curve(settings, split, vocab, device, **budget)
    reached = seconds_to_target(result["curve"])
    return {"device": device, "settings": settings, "budget_s": seconds, "seconds_to_1_40": reached, **result}


def known_names(asked: list[str] | None, known: dict, where: str) -> list[str]:
    """The candidates asked for (all when none), or a clear exit naming those that do not exist."""
    unknown = [name for name in asked or () if name not in known]
    if unknown:
        raise SystemExit(f"no such candidate: {', '.join(map(repr, unknown))} (see {where} in this script)")
    return list(asked or known)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="60k characters, seconds of training")
    parser.add_argument("--candidates", action="store_true", help="the CPU defaults search")
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    parser.add_argument("--seconds", type=float, help="budget per run (default: 300 CPU, 60 GPU, 75 per candidate)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved step-timing runs per candidate")
    parser.add_argument("--tokens", type=int, help="candidates: equal budgets of this many training tokens "
                        "instead of equal projected seconds")
    parser.add_argument("--changes", type=json.loads, help="JSON: changes to the CPU defaults for the default "
                        "run, e.g. '{\"carry_state\": false}' for the same budget with random windows")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU run (default run), or search "
                        "the GPU candidates at real wall-clock budgets (--candidates)")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    if args.candidates and args.gpu_only:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu-only needs a CUDA GPU")
        names = known_names(args.only, GPU_CANDIDATES, "GPU_CANDIDATES")
        rows = run_gpu_candidates(names[:1] if args.quick else names, args.seconds or 60, args.quick)
        print(f"\nGPU: {info['gpu']}")
        print(table(["candidate", "parameters", "train tok/s", "steps", "best val nats/char", "seconds to 1.40"],
                    [(r["name"], f"{r['params']:,}", r["train_tok_s"], r["steps"], f"{r['best_val_loss']:.4f}",
                      r["seconds_to_1_40"] or "-") for r in rows]))
        emit("quality_gpu_candidates", {"machine": info, "quick": args.quick, "budget_s": args.seconds or 60,
                                        "rows": rows, "best": rows[0]["name"]})
        return
    if args.candidates:
        names = known_names(args.only, CANDIDATES, "CANDIDATES")
        if args.quick:
            names = names[:2]
        seconds = args.seconds or (3 if args.quick else 75)
        rows = run_candidates(names, seconds, args.quick, args.repeats or (1 if args.quick else 3), args.tokens)
        print()
        print(table(["candidate", "train tok/s", "ms/step", "eval s", "steps in budget", "tokens",
                     "best val nats/char", "wall s"],
                    [(r["name"], r["train_tok_s"], r["step_ms"], r["eval_s"], r["steps"], f"{r['budget_tokens']:,}",
                      f"{r['best_val_loss']:.4f}", r["wall_s"]) for r in rows]))
        emit("quality_candidates", {"machine": info, "quick": args.quick, "budget_s": None if args.tokens else seconds,
                                    "budget_tokens": args.tokens, "rows": rows, "best": rows[0]["name"]})
        return
    runs = [] if args.gpu_only else [run_defaults("cpu", args.seconds or (2 if args.quick else 300), args.quick,
                                                  args.changes)]
    if torch.cuda.is_available() and not args.cpu_only:
        print(f"GPU: {info['gpu']}")
        runs.append(run_defaults("cuda", args.seconds or (2 if args.quick else 60), args.quick))
    else:
        print("GPU run (target val <= 1.40 nats/char within 60 s): not measured (no CUDA GPU in this session)"
              if not torch.cuda.is_available() else "GPU run: skipped (--cpu-only)")
    for run in runs:
        name = info.get("gpu", "cuda") if run["device"] == "cuda" else "cpu"
        print(f"\n{name}: {run['settings']}; {run['params']:,} parameters; {run['steps']} steps in "
              f"{run['seconds']:.0f} s; best validation {run['best_val_loss']:.4f} nats/char")
        print(table(["seconds", "step", "train loss", "val nats/char"],
                    [(p["seconds"], p["step"], f"{p['train_loss']:.4f}", f"{p['val_loss']:.4f}")
                     for p in run["curve"]]))
    by_device = {run["device"]: run for run in runs}
    emit("time_to_quality", {"machine": info, "quick": args.quick, "runs": runs,
                             "cpu_best_val_loss": by_device.get("cpu", {}).get("best_val_loss"),
                             "gpu_best_val_loss": by_device.get("cuda", {}).get("best_val_loss"),
                             "gpu_seconds_to_1_40": by_device.get("cuda", {}).get("seconds_to_1_40")})


if __name__ == "__main__":
    main()
