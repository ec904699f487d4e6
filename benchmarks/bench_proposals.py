"""The settings the Train page proposes for a corpus, tried on three sizes: 4 KB (a song), 100 KB and
1 MB, char level, on this device. For each: the proposed settings, the trainer's steps a second,
the time to the best validation loss, its bits per char, and why the run stopped.

    .venv/bin/python benchmarks/bench_proposals.py [--quick] [--sizes 4000 100000 1000000]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import SHARED_DATA, describe, emit, machine, table

import textgen_core as tg
from textgen_core.defaults import propose_settings, recommended_run_settings

SOURCES = {4_000: "lyrics_public_domain.txt", 100_000: "alice.txt", 1_000_000: "tinyshakespeare.txt"}


def corpus_of(size: int) -> tg.Corpus:
    name = SOURCES.get(size, "tinyshakespeare.txt")
    text = (SHARED_DATA / name).read_text(encoding="utf-8")[:size]
    return tg.read_text(text.encode(), f"{name} ({size:,} chars)")


def measure(size: int, quick: bool) -> dict:
    corpus = corpus_of(size)
    proposal = propose_settings(len(corpus.text), "cpu")
    values = dict(proposal.settings)
    if quick:
        values.update(max_minutes=0.05)
    settings = recommended_run_settings("cpu", **{k: v for k, v in values.items()})
    stamps: list[tuple[int, float]] = []
    evals: list[tuple[int, float, float]] = []
    start = time.perf_counter()

    def note(event) -> None:
        now = time.perf_counter() - start
        if event.kind == "train":
            stamps.append((event.step, now))
        elif event.kind == "eval":
            evals.append((event.step, event.elapsed, event.val_bpc))

    with tempfile.TemporaryDirectory() as folder:
        result = tg.train_model(corpus, settings, Path(folder) / "run", callbacks=(note,))
    end = result.history.end
    best = min(evals, key=lambda e: e[2]) if evals else (None, None, None)
    rate = ((stamps[-1][0] - stamps[0][0]) / (stamps[-1][1] - stamps[0][1])) if len(stamps) > 1 else float("nan")
    return {"chars": len(corpus.text), "corpus": corpus.name, "settings": values, "reasons": proposal.reasons,
            "steps_per_s": round(rate, 2), "best_step": best[0], "time_to_best_s": best[1], "best_bpc": best[2],
            "steps": end.step, "elapsed_s": round(end.elapsed, 1), "stop": end.reason,
            "parameters": result.bundle.model.num_parameters(), "proposed_epochs": round(proposal.epochs, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seconds a size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4_000, 100_000, 1_000_000])
    parser.add_argument("--cpu-only", action="store_true", help="accepted for the smoke test (CPU only)")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    rows = [measure(size, args.quick) for size in ([4_000] if args.quick else args.sizes)]
    print(table(["corpus", "model", "params", "dropout", "eval every", "patience", "budget min", "steps/s",
                 "best at step", "time to best s", "best bits/char", "stopped", "elapsed s"],
                [(r["corpus"], f"{r['settings']['arch']} {r['settings']['preset']}", r["parameters"],
                  r["settings"]["dropout"], r["settings"]["eval_every"], r["settings"].get("patience") or "-",
                  r["settings"]["max_minutes"], r["steps_per_s"], r["best_step"], r["time_to_best_s"],
                  r["best_bpc"], r["stop"], r["elapsed_s"]) for r in rows]))
    emit("proposals", {"machine": info, "quick": args.quick, "rows": rows})


if __name__ == "__main__":
    main()
