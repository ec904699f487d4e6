"""CPU training speed against the number of torch threads: is a second thread worth it?

The project's Trainer on tiny Shakespeare (char level), GRU and LSTM 2x256 at the CPU defaults'
batch 32 x 64, in fp32 and bf16 autocast, with 1 thread and with every core, runs interleaved
(1, all | all, 1 | ...). Each run's speed is its median step; the ratio is the geometric mean of the
pairs' ratios. Ratio above 1: all cores train faster than one.

    .venv/bin/python benchmarks/bench_threads.py [--quick] [--repeats N] [--steps N]
"""
from __future__ import annotations

import argparse
import copy
import os
from statistics import geometric_mean

import torch
from bench_trainer import load_ids, trainer_run
from common import describe, emit, machine, median, table

from textgen_core.data import TokenSplit
from textgen_core.devices import bf16_supported
from textgen_core.models import ModelConfig, build_model

CASES = [dict(name=f"{arch} 2x256", arch=arch, embedding=64, hidden=256, layers=2, batch=32, seq=64)
         for arch in ("lstm", "gru")]
# with dropout between the layers torch runs an LSTM layer by layer (without it, one multi-layer kernel)
CASES.append(dict(CASES[0], name="lstm 2x256 dropout 0.1", dropout=0.1))
QUICK_CASE = dict(name="gru 1x32 (quick)", arch="gru", embedding=16, hidden=32, layers=1, batch=8, seq=16)


def run_with_threads(threads: int, model, split: TokenSplit, case: dict, precision: str, steps: int) -> float:
    """Median seconds per step of Trainer.fit with ``threads`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        case = dict(case, precision=precision)
        return median(trainer_run(copy.deepcopy(model), split, case, torch.device("cpu"), steps, 2, True))
    finally:
        torch.set_num_threads(before)


def measure(case: dict, precision: str, ids: torch.Tensor, vocab: int, steps: int, repeats: int,
            cores: int) -> dict:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(case["arch"], "small", vocab, embedding=case["embedding"],
                                                hidden=case["hidden"], layers=case["layers"],
                                                dropout=case.get("dropout", 0.0)))
    n_val = max(case["seq"] * 4, len(ids) // 100)
    split = TokenSplit(train=ids[:-n_val], val=ids[-n_val:])
    one, many = [], []
    run_with_threads(1, model, split, case, precision, steps)  # warm-up
    for repeat in range(repeats):
        order = [(1, one), (cores, many)] if repeat % 2 == 0 else [(cores, many), (1, one)]
        for threads, store in order:
            store.append(run_with_threads(threads, model, split, case, precision, steps))
    tokens = case["batch"] * case["seq"]
    return {"config": case["name"], "batch": case["batch"], "seq_len": case["seq"], "precision": precision,
            "threads": cores, "one_thread_tok_s": tokens / median(one), "all_threads_tok_s": tokens / median(many),
            "ratio_all_over_one": geometric_mean([a / b for a, b in zip(one, many)]),
            "run_ratios": [round(a / b, 3) for a, b in zip(one, many)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per thread count (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 14)")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for symmetry: this one is CPU only")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    precisions = ["fp32", "bf16"] if bf16_supported("cpu") else ["fp32"]
    if args.quick:
        ids, vocab = load_ids(synthetic=True)
        rows = [measure(QUICK_CASE, "fp32", ids, vocab, steps=6, repeats=args.repeats or 1, cores=cores)]
    else:
        ids, vocab = load_ids()
        rows = [measure(case, precision, ids, vocab, steps=args.steps or 14, repeats=args.repeats or 4, cores=cores)
                for case in CASES for precision in precisions]
    print(table(["config", "batch x seq", "precision", "1 thread tok/s", f"{cores} threads tok/s",
                 f"{cores} threads / 1"],
                [(r["config"], f"{r['batch']} x {r['seq_len']}", r["precision"], r["one_thread_tok_s"],
                  r["all_threads_tok_s"], f"{r['ratio_all_over_one']:.3f}") for r in rows]))
    emit("threads", {"machine": info, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
