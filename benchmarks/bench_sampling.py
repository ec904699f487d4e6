"""Sampling speed in tokens/s at batch 1 and batch 64, GRU and LSTM 2x256 (char vocabulary, 65 ids).

Variants, timed interleaved in one process (A, B, C, C, B, A, ...), medians reported:
  eager     a plain loop: model(ids, state) -> softmax(logits / T) -> multinomial, torch's defaults
            (oneDNN on, all intra-op threads)
  no_onednn the same loop inside torch.backends.mkldnn.flags(enabled=False) (the sampler's old path)
  unfused   (CPU) sample_ids with the fused step and draw turned off: the module's kernels step by
            step (torch.lstm / torch.gru) and torch.multinomial, what the sampler did before
  fused     (CPU, batch 1) sample_ids with the compiled loop turned off: fused_step.FusedRnnStep's
            steps and the draw called from Python
  project   textgen_core.sampling.sample_ids as shipped: on the CPU at batch 1 a GRU/LSTM steps through
            the compiled loop (native_step.py, the fused step's ops in C++, the same ids) where it is
            built, else through fused_step.FusedRnnStep (the same bits, fewer ops); on a GPU, GRU/LSTM
            steps in chunks of 32 replayed as CUDA graphs (graphed_sampling.py), the ids read back once
            per chunk
  api       (CPU, batch 1) tg.generate with a 65-character tokenizer: the text, decoding included
On a CUDA machine the same table is measured on the GPU (named in the output), for the 2x256 models
and the large preset (1024x2); without one the GPU rows are skipped with a line saying so. The GPU's
eager loop never reads its ids back, which flatters it: text needs them on the host.

    python benchmarks/bench_sampling.py            # full run (about 1-2 minutes on 2 cores)
    python benchmarks/bench_sampling.py --quick    # a few tokens per case, for the smoke test
"""
from __future__ import annotations

import argparse
import contextlib
import string
import time

import torch
from common import describe, emit, interleave, machine, median, ratios, sync, table

import textgen_core as tg
from textgen_core import fused_step, native_step, sampling
from textgen_core.models import ModelConfig, build_model
from textgen_core.sampling import SamplingOptions, sample_ids
from textgen_core.tokenizers import CharTokenizer

VOCAB = 65
PROMPT = [1, 2, 3, 4]


def eager_loop(model, batch: int, length: int, onednn: bool) -> float:
    """Tokens/s of the plain loop (temperature 0.8, no filters)."""
    device = model.device
    generator = torch.Generator(device=device).manual_seed(1)
    flags = contextlib.nullcontext() if onednn else torch.backends.mkldnn.flags(enabled=False)
    with torch.inference_mode(), flags:
        sync(device)
        start = time.perf_counter()
        logits, state = model(torch.tensor([PROMPT] * batch, device=device))
        for step in range(length):
            probs = torch.softmax(logits[:, -1, :] / 0.8, dim=-1)
            next_ids = torch.multinomial(probs, 1, generator=generator)
            if step + 1 < length:
                logits, state = model(next_ids, state)
        sync(device)
    return batch * length / (time.perf_counter() - start)


def project(model, batch: int, length: int) -> float:
    options = SamplingOptions(length=length, temperature=0.8, num_samples=batch, seed=1)
    sync(model.device)
    start = time.perf_counter()
    for _ in sample_ids(model, PROMPT, options, banned_ids=(0,)):
        pass
    sync(model.device)
    return batch * length / (time.perf_counter() - start)


@contextlib.contextmanager
def unfused():
    """The sampler without its fused CPU step and draw (the module step by step, torch.multinomial)."""
    saved = sampling._fused_step, fused_step.draw
    sampling._fused_step = lambda model, batch: None
    fused_step.draw = lambda probs, generator, noise: torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    try:
        yield
    finally:
        sampling._fused_step, fused_step.draw = saved


def fused_project(model, batch: int, length: int) -> float:
    saved = native_step.available
    native_step.available = lambda **kwargs: False
    try:
        return project(model, batch, length)
    finally:
        native_step.available = saved


def unfused_project(model, batch: int, length: int) -> float:
    with unfused():
        return project(model, batch, length)


def api(bundle, length: int) -> float:
    start = time.perf_counter()
    tg.generate(bundle, "The ", length=length, temperature=0.8, seed=1)
    return length / (time.perf_counter() - start)


def char_bundle(model) -> tg.Bundle:
    alphabet = (string.ascii_letters + string.digits + " \n.,;:!?'")[:VOCAB - 1]  # 64 characters + <unk>
    return tg.Bundle(model, CharTokenizer().fit(alphabet))


def measure(device: torch.device, quick: bool, repeats: int, presets: tuple[str, ...] = ("small",)) -> list[dict]:
    rows = []
    for arch, preset in [(arch, preset) for preset in presets for arch in ("gru", "lstm")]:
        torch.manual_seed(0)
        size = dict(embedding=16, hidden=32, layers=1) if quick else {}
        model = build_model(ModelConfig.from_preset(arch, preset, VOCAB, **size)).to(device).eval()
        for batch in (1, 64):
            length = 8 if quick else (3000 if batch == 1 else 150) * (4 if device.type == "cuda" else 1)
            runs = {"eager": (lambda model=model, batch=batch, length=length:
                              eager_loop(model, batch, length, onednn=True))}
            if device.type == "cpu":
                runs["no_onednn"] = (lambda model=model, batch=batch, length=length:
                                     eager_loop(model, batch, length, onednn=False))
                runs["unfused"] = lambda model=model, batch=batch, length=length: unfused_project(model, batch, length)
                if batch == 1:
                    runs["fused"] = lambda model=model, batch=batch, length=length: fused_project(model, batch, length)
            runs["project"] = lambda model=model, batch=batch, length=length: project(model, batch, length)
            if device.type == "cpu" and batch == 1:
                bundle = char_bundle(model)
                runs["api"] = lambda bundle=bundle, length=length: api(bundle, length)
            for run in runs.values():  # warm-up (allocator, oneDNN primitives, CUDA context)
                run()
            values = interleave(runs, repeats)
            row = {"device": device.type, "arch": arch,
                   "layers_x_hidden": f"{model.config.layers}x{model.config.hidden}",
                   "batch": batch, "length": length, "repeats": repeats}
            for name, vals in values.items():
                row[f"{name}_tok_s"] = median(vals)
                row[f"{name}_best_tok_s"] = max(vals)  # load from other processes only slows a run
            row["project_vs_eager"] = median(ratios(values["project"], values["eager"]))
            if "no_onednn" in values:
                row["project_vs_no_onednn"] = median(ratios(values["project"], values["no_onednn"]))
                row["project_vs_unfused"] = median(ratios(values["project"], values["unfused"]))
            if "fused" in values:
                row["project_vs_fused"] = median(ratios(values["project"], values["fused"]))
            rows.append(row)
            print(f"  {device.type} {arch} batch {batch}: " + ", ".join(
                f"{k} {median(v):,.0f}" for k, v in values.items()), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models, 20 tokens: checks the script runs")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats per variant (default 5)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even when one is present")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU rows")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 5)
    info = machine()
    print(describe(info))
    rows = [] if args.gpu_only else measure(torch.device("cpu"), args.quick, repeats)
    if torch.cuda.is_available() and not args.cpu_only:
        print(f"GPU: {info['gpu']}")
        rows += measure(torch.device("cuda"), args.quick, repeats, ("small",) if args.quick else ("small", "large"))
    else:
        print("GPU rows: not measured (no CUDA GPU in this session)" if not torch.cuda.is_available()
              else "GPU rows: skipped (--cpu-only)")
    print()
    print("tokens/s: median of the interleaved runs (best run in brackets); ratios: median of adjacent pairs")
    best = lambda r, name: (f"{r[name + '_tok_s']:,.0f} ({r[name + '_best_tok_s']:,.0f})"  # noqa: E731
                            if name + "_tok_s" in r else "-")
    print(f"compiled loop: {'in use' if native_step.available(build_in_background=False) else 'not in use'}"
          f"{' (' + native_step.reason() + ')' if native_step.reason() else ''}")
    print(table(["device", "model", "batch", "eager tok/s", "no oneDNN tok/s", "unfused tok/s", "fused tok/s",
                 "project tok/s", "api chars/s", "project / eager", "project / unfused", "project / fused"],
                [(r["device"] if r["device"] == "cpu" else info.get("gpu", "cuda"),
                  f"{r['arch']} {r['layers_x_hidden']}", r["batch"], best(r, "eager"), best(r, "no_onednn"),
                  best(r, "unfused"), best(r, "fused"), best(r, "project"), best(r, "api"), r["project_vs_eager"],
                  r.get("project_vs_unfused", float("nan")), r.get("project_vs_fused", float("nan")))
                 for r in rows]))
    api_rates = {f"cpu_{r['arch']}_api_batch1_chars_s": r["api_tok_s"] for r in rows if "api_tok_s" in r}
    batch1 = {f"{r['device']}_{r['arch']}_batch1_tok_s": r["project_tok_s"] for r in rows
              if r["batch"] == 1 and r["layers_x_hidden"] == ("1x32" if args.quick else "2x256")}
    targets = {key: batch1.get(key) for key in ("cpu_lstm_batch1_tok_s", "cuda_gru_batch1_tok_s",
                                                "cuda_lstm_batch1_tok_s")}
    emit("sampling", {"machine": info, "quick": args.quick, "rows": rows, **targets, **api_rates})


if __name__ == "__main__":
    main()
