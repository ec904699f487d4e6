"""Trainer overhead: tokens/s of textgen_core's Trainer against a bare PyTorch loop, in one process.

Both sides use the same model (same initial weights), batch, sequence length, precision and AdamW
settings; the bare loop has no schedule, no clipping, no logging and never reads the loss.
The trainer is timed from the start of its step ``warmup`` to the end of its last step (so its loss
reads, learning-rate schedule, clipping and batch sampling count; the validation pass at the end
does not).
Runs alternate (trainer, bare | bare, trainer | ...). On the CPU every step is timed and a run's speed
is its median step, which a shared machine's bursts of load do not move much (tokens/s: the median
step of all runs of a side); on a GPU each run is timed as a whole after its warm-up steps. The
ratio is the geometric mean of the pairs' ratios (which cancels a run's position in its pair); the
ratio of the fastest steps of each side is printed too (other processes' load only adds time).

Configurations: GRU and LSTM 2x256, batch 64 x 128, fp32 on the CPU; on a CUDA GPU (named in the
output) GRU 1024x1 batch 64 x 100 and LSTM 512x2 batch 512 x 256 in the trainer's GPU precision (bf16
autocast). Without a GPU those rows are skipped with a line saying so.

    python benchmarks/bench_trainer.py             # full run (about 2 minutes on 2 cores)
    python benchmarks/bench_trainer.py --quick     # tiny model, a few steps, for the smoke test
    python benchmarks/bench_trainer.py --gpu-only --only "gru 1024x1" --ablation   # where a gap comes from
"""
from __future__ import annotations

import argparse
import copy
import time
from statistics import geometric_mean

from common import describe, emit, find_corpus, interleave, machine, median, sync, table

import torch
import torch.nn.functional as F

from textgen_core.data import TokenSplit, random_windows, to_id_tensor
from textgen_core.evaluation import autocast_for
from textgen_core.models import ModelConfig, build_model
from textgen_core.tokenizers import CharTokenizer
from textgen_core.training import TrainConfig, Trainer

CPU_CASES = [
    dict(name="gru 2x256", arch="gru", embedding=64, hidden=256, layers=2, batch=64, seq=128),
    dict(name="lstm 2x256", arch="lstm", embedding=64, hidden=256, layers=2, batch=64, seq=128),
]
GPU_CASES = [
    dict(name="gru 1024x1", arch="gru", embedding=256, hidden=1024, layers=1, batch=64, seq=100),
    dict(name="lstm 512x2", arch="lstm", embedding=128, hidden=512, layers=2, batch=512, seq=256),
]
QUICK_CASE = dict(name="gru 1x32 (quick)", arch="gru", embedding=16, hidden=32, layers=1, batch=8, seq=16)


def load_ids(synthetic: bool = False) -> tuple[torch.Tensor, int]:
    """Tiny Shakespeare as char ids when present, else (or when asked) random ids over 65 symbols."""
    path = None if synthetic else find_corpus()
    if path is None:
        size = 50_000 if synthetic else 1_000_000
        return torch.randint(0, 65, (size,), generator=torch.Generator().manual_seed(0)).short(), 65
    text = path.read_text(encoding="utf-8")
    tokenizer = CharTokenizer().fit(text)
    return to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size), tokenizer.vocab_size


def trainer_run(model, split: TokenSplit, case: dict, device: torch.device, steps: int, warmup: int,
                per_step: bool, grad_clip: float = 1.0) -> list[float]:
    """Seconds per step of Trainer.fit after ``warmup`` steps, stamped where each step starts.

    ``per_step`` (the CPU): a stamp at every step and a progress report every step (on the CPU
    reading the loss costs nothing), so the median step is robust to bursts of load from other
    processes. Otherwise (a GPU): one window from step ``warmup`` to the end, with a sync at both
    ends only, as in the bare loop; the Trainer's own loss reads happen in between, as they would.
    """
    config = TrainConfig(batch_size=case["batch"], seq_len=case["seq"], lr=3e-3, max_steps=steps,
                         eval_every=steps, log_every=1 if per_step else 10, device=device.type, seed=0,
                         precision=case.get("precision", "auto"), grad_clip=grad_clip)
    trainer = Trainer(model, split, config)
    stamps, train_step = [], trainer._train_step

    def stamped_step() -> torch.Tensor:   # the Trainer's step, with a clock around it
        if trainer.step >= warmup and (per_step or trainer.step == warmup):
            sync(device)
            stamps.append(time.perf_counter())
        loss = train_step()
        if trainer.step == steps - 1:
            sync(device)
            stamps.append(time.perf_counter())
        return loss

    trainer._train_step = stamped_step
    trainer.fit()
    if per_step:
        return [b - a for a, b in zip(stamps, stamps[1:])]
    return [(stamps[-1] - stamps[0]) / (steps - warmup)]


def bare_run(model, split: TokenSplit, case: dict, device: torch.device, steps: int, warmup: int,
             per_step: bool, clip: bool = False, read_every: int = 0) -> list[float]:
    """Seconds per step of the plainest loop that trains the same model the same way (``clip``: with
    torch's gradient clipping, as the Trainer clips; ``read_every``: with ``.item()`` on the summed
    loss every that many steps, a host sync each time)."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    model = model.to(device).train()
    ids = split.train.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.01,
                                  fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    loss_sum = torch.zeros((), device=device)
    stamps = []
    for step in range(steps):
        if step >= warmup and (per_step or step == warmup):
            sync(device)
            stamps.append(time.perf_counter())
        inputs, targets = random_windows(ids, case["batch"], case["seq"], generator)
        with autocast_for(device, precision):
            logits, _ = model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if read_every:
            loss_sum += loss.detach()
            if (step + 1) % read_every == 0:
                loss_sum.item()
    sync(device)
    stamps.append(time.perf_counter())
    if per_step:
        return [b - a for a, b in zip(stamps, stamps[1:])]
    return [(stamps[-1] - stamps[0]) / (steps - warmup)]


def measure(case: dict, device: torch.device, ids: torch.Tensor, vocab: int, steps: int, warmup: int,
            repeats: int, ablation: bool = False) -> dict:
    """Interleaved runs; tokens/s from the median step time of all timed steps of each side.

    ``ablation`` adds three runs to the rotation, to find where a gap comes from: the Trainer without
    gradient clipping, the bare loop with it, and the bare loop with a loss read (a sync) every 10
    steps."""
    torch.manual_seed(0)
    config = ModelConfig.from_preset(case["arch"], "small", vocab, embedding=case["embedding"],
                                     hidden=case["hidden"], layers=case["layers"])
    initial = build_model(config)
    n_val = max(case["seq"] * 4, len(ids) // 100)
    split = TokenSplit(train=ids[:-n_val], val=ids[-n_val:])
    per_step = device.type == "cpu"
    runs = {"trainer": lambda: trainer_run(copy.deepcopy(initial), split, case, device, steps, warmup, per_step),
            "bare": lambda: bare_run(copy.deepcopy(initial), split, case, device, steps, warmup, per_step)}
    if ablation:
        runs["trainer_no_clip"] = lambda: trainer_run(copy.deepcopy(initial), split, case, device, steps, warmup,
                                                      per_step, grad_clip=0.0)
        runs["bare_with_clip"] = lambda: bare_run(copy.deepcopy(initial), split, case, device, steps, warmup,
                                                  per_step, clip=True)
        runs["bare_with_syncs"] = lambda: bare_run(copy.deepcopy(initial), split, case, device, steps, warmup,
                                                   per_step, read_every=10)
    for run in runs.values():  # warm-up: first-call costs (allocator, kernels, CUDA context) fall here
        run()
    values = interleave(runs, repeats)
    tokens = case["batch"] * case["seq"]
    trainer_steps = [t for run in values["trainer"] for t in run]
    bare_steps = [t for run in values["bare"] for t in run]
    row = {"device": device.type, "config": case["name"], "batch": case["batch"], "seq_len": case["seq"],
           "precision": "bf16" if device.type == "cuda" else "fp32", "timed_steps_per_side": len(bare_steps),
           "repeats": repeats, "trainer_tok_s": tokens / median(trainer_steps),
           "bare_tok_s": tokens / median(bare_steps),
           # runs alternate T B | B T | ...: the geometric mean of each pair's ratio cancels any
           # effect of a run's position in its pair
           "ratio": geometric_mean([median(b) / median(t) for t, b in zip(values["trainer"], values["bare"])]),
           "ratio_pooled_medians": median(bare_steps) / median(trainer_steps),
           # fastest step of each side: other processes' load only ever adds time
           "ratio_best": min(bare_steps) / min(trainer_steps),
           "run_ratios": [round(median(b) / median(t), 3) for t, b in zip(values["trainer"], values["bare"])]}
    for name in [n for n in values if n not in ("trainer", "bare")]:   # bare / variant, as the main ratio
        row[f"{name}_tok_s"] = tokens / median([t for run in values[name] for t in run])
        row[f"{name}_ratio"] = geometric_mean([median(b) / median(v) for v, b in zip(values[name], values["bare"])])
        print(f"    {name}: {row[f'{name}_tok_s']:,.0f} tok/s, bare / it {row[f'{name}_ratio']:.3f}", flush=True)
    print(f"  {device.type} {case['name']}: trainer {row['trainer_tok_s']:,.0f} tok/s, bare "
          f"{row['bare_tok_s']:,.0f} tok/s, ratio {row['ratio']:.3f} (fastest steps {row['ratio_best']:.3f}; "
          f"per run pair {row['run_ratios']})",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps: checks the script runs")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs per side (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 8 CPU, 200 GPU)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU rows")
    parser.add_argument("--only", nargs="*", help="configurations by name, e.g. 'gru 2x256'")
    parser.add_argument("--ablation", action="store_true", help="also time the Trainer without clipping, and "
                        "the bare loop with clipping or with a loss read every 10 steps (where does a gap come from?)")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    ids, vocab = load_ids(synthetic=args.quick)
    rows = []
    if args.quick:
        rows.append(measure(QUICK_CASE, torch.device("cpu"), ids, vocab, steps=6, warmup=2, repeats=args.repeats or 1,
                            ablation=args.ablation))
    elif not args.gpu_only:
        timed = args.steps or 8
        for case in [c for c in CPU_CASES if not args.only or c["name"] in args.only]:
            rows.append(measure(case, torch.device("cpu"), ids, vocab, steps=timed + 2, warmup=2,
                                repeats=args.repeats or 6, ablation=args.ablation))
    if torch.cuda.is_available() and not args.cpu_only:
        print(f"GPU: {info['gpu']}")
        timed = args.steps or (5 if args.quick else 200)
        for case in ([QUICK_CASE] if args.quick else [c for c in GPU_CASES if not args.only or c["name"] in args.only]):
            rows.append(measure(case, torch.device("cuda"), ids, vocab, steps=timed + 10, warmup=10,
                                repeats=args.repeats or (1 if args.quick else 6), ablation=args.ablation))
    else:
        print("GPU rows (gru 1024x1 B64 T100, lstm 512x2 B512 T256): not measured (no CUDA GPU in this session)"
              if not torch.cuda.is_available() else "GPU rows: skipped (--cpu-only)")
    print()
    print(table(["device", "config", "batch x seq", "precision", "trainer tok/s", "bare tok/s",
                 "ratio (geo. mean of pairs)", "ratio (fastest steps)", "target"],
                [(info.get("gpu", "cuda") if r["device"] == "cuda" else "cpu", r["config"],
                  f"{r['batch']} x {r['seq_len']}", r["precision"], r["trainer_tok_s"], r["bare_tok_s"],
                  f"{r['ratio']:.3f}", f"{r['ratio_best']:.3f}", ">= 0.95") for r in rows]))
    emit("trainer_overhead", {"machine": info, "quick": args.quick, "rows": rows,
                              "min_ratio": min(r["ratio"] for r in rows)})


if __name__ == "__main__":
    main()
