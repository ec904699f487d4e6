"""Listing a workspace: the time to read every run of a workspace of 200 runs from disk (what the
app's Runs page and `runs list` do on every visit), and the time to measure its disk use.

One run is trained, then copied into 200 run folders (a quarter of them left saying "running" with
no process behind them, so they are found interrupted, which also reads their checkpoint).

    .venv/bin/python benchmarks/bench_workspace.py [--quick] [--runs N]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import describe, emit, machine, median, table

import textgen_core as tg
from textgen_core.workspace import INTERRUPTED, Workspace

SONG = "the river runs to the sea and the sea runs to the sky\n" * 40


def make_workspace(root: Path, runs: int) -> Workspace:
    workspace, _ = Workspace.for_app(root, None)
    settings = tg.RunSettings(preset="tiny", train=tg.TrainConfig(batch_size=4, seq_len=16, max_steps=20,
                                                                  eval_every=10, device="cpu"))
    first = workspace.root / "run-000"
    tg.train_model(tg.read_text(SONG.encode(), "song.txt"), settings, first)
    for index in range(1, runs):
        folder = workspace.root / f"run-{index:03d}"
        shutil.copytree(first, folder)
        if index % 4 == 0:   # said "running" when its process died: found interrupted
            status = json.loads((folder / "status.json").read_text())
            (folder / "status.json").write_text(json.dumps({**status, "status": "running"}))
    return workspace


def timed(call, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    return median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 runs, 2 repeats")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cpu-only", action="store_true", help="accepted for the smoke test (CPU only)")
    args = parser.parse_args()
    count, repeats = (20, 2) if args.quick else (args.runs, 5)
    info = machine()
    print(describe(info))
    scratch = Path(tempfile.mkdtemp(prefix="textgen-workspace-"))
    try:
        workspace = make_workspace(scratch, count)
        list_s, records = timed(workspace.runs, repeats)
        usage_s, usage = timed(workspace.disk_usage, repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    interrupted = sum(1 for r in records if r.status == INTERRUPTED)
    rows = [{"runs": len(records), "interrupted": interrupted, "list_s": round(list_s, 4),
             "disk_usage_s": round(usage_s, 4), "disk_mb": round(usage / 1e6, 1)}]
    print(table(["runs", "of them interrupted", "list s (median)", "disk use s (median)", "disk MB"],
                [(r["runs"], r["interrupted"], r["list_s"], r["disk_usage_s"], r["disk_mb"]) for r in rows]))
    emit("workspace", {"machine": info, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
