"""The GRU's training step on the CPU: the compiled loop (gru_layer.py, native/gru_train.cpp) against
nn.GRU, with oneDNN's LSTM of the same size beside them, in one process.

Each configuration builds one model per side with the same initial weights and trains it with AdamW
on the same random windows of tiny Shakespeare (random ids where it is absent). The sides run in
lockstep, one step each in turn (a shared 2-core machine's bursts last seconds, so whole runs one
after the other meet different loads); a side's speed is its median step. "nn.GRU" is the same model
with the compiled library switched off for its steps (``native_step.available`` returns False). On a
CPU where the compiled loop makes its step products with its own AVX2 kernels (AVX2 and FMA, no AVX-512:
``devices.cpu_prefers_avx2_products``), a fourth side makes them with torch's BLAS (MKL) instead.

Configurations: the small GRU of the CPU defaults (2x256, a 64 embedding, batch 32 x 64) and the
TensorFlow tutorial's GRU 1024x1 (a 256 embedding, batch 64 x 100, bench_keras's case), fp32.

    python benchmarks/bench_gru_layer.py                  # about 3 minutes on 2 cores
    python benchmarks/bench_gru_layer.py --threads 1      # one thread (add taskset -c 0 for one core)
    python benchmarks/bench_gru_layer.py --quick          # a tiny GRU, a few steps, for the smoke test
    python benchmarks/bench_gru_layer.py --loops          # the time loops alone, AVX2 against BLAS products

``--loops`` times each configuration's compiled forward and backward loops by themselves (one layer, the
100 or 64 step products and gate passes, no autograd), the step products by the AVX2 kernels and by
torch's BLAS alternating call by call; a side's time is its fastest of ``LOOP_CALLS`` calls, the
least disturbed by the host's load.
"""
from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from unittest import mock

import torch
import torch.nn.functional as F
from bench_trainer import load_ids
from common import describe, emit, machine, median, table

from textgen_core import gru_layer, native_step
from textgen_core.data import random_windows
from textgen_core.models import ModelConfig, build_model

CASES = [
    dict(name="gru 2x256", embedding=64, hidden=256, layers=2, batch=32, seq=64, steps=40, warmup=5),
    dict(name="gru 1024x1", embedding=256, hidden=1024, layers=1, batch=64, seq=100, steps=8, warmup=2),
]
LOOP_CALLS = 15
QUICK_CASE = dict(name="gru 1x32 (quick)", embedding=16, hidden=32, layers=1, batch=8, seq=16, steps=4, warmup=1)


def stepper(arch: str, case: dict, vocab: int, ids: torch.Tensor, compiled: bool,
            blas_products: bool = False) -> Callable[[], float]:
    """One timed training step per call (seconds), of a model every side starts with the same weights."""
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, vocab_size=vocab, embedding=case["embedding"], hidden=case["hidden"],
                         layers=case["layers"], dropout=0.0)
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)

    def step() -> float:
        inputs, targets = random_windows(ids, case["batch"], case["seq"], generator)
        start = time.perf_counter()
        off = mock.patch.object(native_step, "available", lambda **kwargs: False)
        blas = mock.patch.object(gru_layer, "cpu_prefers_avx2_products", lambda: False)
        with off if not compiled else blas if blas_products else contextlib.nullcontext():
            logits, _ = model(inputs)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def time_loops(case: dict) -> dict[str, float]:
    """The fastest forward and backward loop of one layer, by AVX2 and by BLAS products, in seconds."""
    torch.manual_seed(0)
    steps, batch, hidden = case["seq"], case["batch"], case["hidden"]
    gi = torch.randn(steps, batch, 3 * hidden)
    h0, b_hh = torch.zeros(batch, hidden), torch.zeros(3 * hidden)
    w_hh = torch.randn(3 * hidden, hidden) / hidden ** 0.5
    d_out = torch.randn(steps, batch, hidden)
    ops = torch.ops.textgen_native

    def forward(avx2: bool):
        return ops.gru_layer_forward(gi, h0, w_hh.t(), b_hh, avx2)

    saved = forward(False)
    calls = {f"{part} {kind}": fn for kind, avx2 in (("avx2", True), ("blas", False)) for part, fn in
             (("forward", lambda avx2=avx2: forward(avx2)),
              ("backward", lambda avx2=avx2: ops.gru_layer_backward(d_out, None, *saved, w_hh, avx2)))}
    best = {name: float("inf") for name in calls}
    for _ in range(LOOP_CALLS):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def loops_main(cases: list[dict], quick: bool) -> None:
    if not gru_layer.cpu_prefers_avx2_products():
        print("note: this CPU does not take the AVX2 products by default (it has AVX-512, or lacks AVX2/FMA)")
    rows, results = [], []
    for case in cases:
        best = time_loops(case)
        rows.append([case["name"], f"{case['batch']} x {case['seq']}",
                     *(1000 * best[f"{part} {kind}"] for part in ("forward", "backward") for kind in ("avx2", "blas")),
                     best["forward blas"] / best["forward avx2"], best["backward blas"] / best["backward avx2"]])
        results.append(dict(case=case["name"], best_ms={name: 1000 * s for name, s in best.items()}))
    print(table(["config", "batch x seq", "forward AVX2 ms", "forward BLAS ms", "backward AVX2 ms",
                 "backward BLAS ms", "forward BLAS / AVX2", "backward BLAS / AVX2"], rows))
    emit("gru_loops", {"quick": quick, "threads": torch.get_num_threads(), "calls": LOOP_CALLS, "machine": machine(),
                       "results": results})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--only", help="one configuration by name, e.g. 'gru 2x256'")
    parser.add_argument("--quick", action="store_true", help="a tiny GRU, a few steps (smoke test)")
    parser.add_argument("--loops", action="store_true", help="the time loops alone, AVX2 against BLAS products")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for symmetry: this benchmark is CPU only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not native_step.load(wait=True):
        print(f"skipped: the compiled loop is not available ({native_step.reason()})")
        return
    print(describe(machine()))
    print(f"torch threads: {torch.get_num_threads()}")
    if args.loops:
        loops_main([case for case in ([QUICK_CASE] if args.quick else CASES)
                    if not args.only or case["name"] == args.only], args.quick)
        return
    ids, vocab = load_ids(synthetic=args.quick)
    rows, results = [], []
    for case in [QUICK_CASE] if args.quick else CASES:
        if args.only and case["name"] != args.only:
            continue
        sides = {"compiled GRU": stepper("gru", case, vocab, ids, compiled=True),
                 "nn.GRU": stepper("gru", case, vocab, ids, compiled=False),
                 "LSTM (oneDNN)": stepper("lstm", case, vocab, ids, compiled=True)}
        if gru_layer.cpu_prefers_avx2_products():
            sides["compiled GRU, BLAS products"] = stepper("gru", case, vocab, ids, compiled=True, blas_products=True)
        times: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(case["steps"]):
            for name, step in sides.items():
                seconds = step()
                if index >= case["warmup"]:
                    times[name].append(seconds)
        step_s = {name: median(values) for name, values in times.items()}
        blas_s = step_s.get("compiled GRU, BLAS products")
        rows.append([case["name"], f"{case['batch']} x {case['seq']}",
                     *(1000 * step_s[name] for name in ("compiled GRU", "nn.GRU", "LSTM (oneDNN)")),
                     step_s["nn.GRU"] / step_s["compiled GRU"], step_s["LSTM (oneDNN)"] / step_s["compiled GRU"],
                     blas_s / step_s["compiled GRU"] if blas_s else "-"])
        results.append(dict(case=case["name"], step_ms={name: 1000 * s for name, s in step_s.items()}))
        print(f"  {case['name']}: " + ", ".join(f"{name} {1000 * s:.1f} ms" for name, s in step_s.items()), flush=True)
    print(table(["config", "batch x seq", "compiled GRU ms", "nn.GRU ms", "LSTM ms", "nn.GRU / compiled",
                 "LSTM / compiled GRU", "BLAS products / AVX2 products"], rows))
    emit("gru_layer", {"quick": args.quick, "threads": torch.get_num_threads(), "machine": machine(),
                       "results": results})


if __name__ == "__main__":
    main()
