"""Scaling with torchrun: training tokens per second with 1 and 2 processes (CPU: one thread each,
gloo), alternating in one run, and on a machine with several GPUs the same with 1, 2, ... GPUs
(NCCL), with the GPU named.

Each run is the command line under torchrun on tiny Shakespeare (char level), the same global batch
for every process count; its speed is the median tokens/s of its progress reports after the first
(the trainer counts the global batch). Efficiency = tokens/s with N / (N x tokens/s with 1).

    .venv/bin/python benchmarks/bench_distributed.py [--quick] [--steps N] [--repeats N]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from common import ROOT, describe, emit, find_corpus, machine, median, table


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_run(corpus: Path, processes: int, device: str, args: list[str], scratch: Path, index: int) -> float:
    out = scratch / f"run-{processes}-{device}-{index}"
    command = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", str(processes),
               "--master_port", str(free_port()), "-m", "textgen_core", "train", str(corpus), "--out", str(out),
               "--device", device, *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {processes} failed:\n{done.stderr[-2000:]}")
    rates = [p["tokens_per_s"] for p in map(json.loads, (out / "history.jsonl").read_text().splitlines())
             if p["kind"] == "train"][1:]
    return median(rates)


def measure(corpus: Path, counts: list[int], device: str, args: list[str], repeats: int) -> list[dict]:
    scratch = Path(tempfile.mkdtemp(prefix="textgen-dist-"))
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for rep in range(repeats):   # alternate: 1, 2, 2, 1, ... so that a changing load falls on both alike
        for n in (counts if rep % 2 == 0 else counts[::-1]):
            rates[n].append(one_run(corpus, n, device, args, scratch, rep))
    base = median(rates[counts[0]])
    return [{"device": device, "processes": n, "tokens_per_s": round(median(rates[n])),
             "efficiency": round(median(rates[n]) / (n * base), 3), "runs": rates[n]} for n in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps, once")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU rows")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    corpus = find_corpus()
    if corpus is None:
        raise SystemExit("tiny Shakespeare not found (../shared/data or .data/); nothing to measure")
    steps, repeats = (20, 1) if args.quick else (args.steps, args.repeats)
    train = ["--model", "lstm", "--preset", "small", "--batch-size", "32", "--seq-len", "64", "--dropout", "0",
             "--max-steps", str(steps), "--eval-every", str(steps), "--cpu-threads", "1"]
    rows = measure(corpus, [1, 2], "cpu", train, repeats)
    gpus = 0 if args.cpu_only or not torch.cuda.is_available() else torch.cuda.device_count()
    if gpus >= 2:
        gpu_train = ["--model", "lstm", "--preset", "medium", "--batch-size", str(64 * gpus), "--seq-len", "256",
                     "--max-steps", str(steps), "--eval-every", str(steps)]
        counts = [n for n in (1, 2, 4, 8) if n <= gpus]
        for row in measure(corpus, counts, "cuda", gpu_train, repeats):
            rows.append({**row, "gpu": torch.cuda.get_device_name(0)})
    print(table(["device", "processes", "tokens/s", "efficiency"],
                [(r.get("gpu", "CPU, 1 thread each"), r["processes"], r["tokens_per_s"], r["efficiency"])
                 for r in rows]))
    emit("distributed", {"machine": info, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
