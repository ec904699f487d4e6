"""Markdown rows for RECIPES.md from the model folders that `python -m textgen_core recipe` wrote.

Usage: python scripts/recipes_table.py [RUNS_DIR]   (default runs/recipes; RUNS_DIR/<recipe>/<run>/)
Each row: run, parameters, steps, epochs reached, wall time, training loss (first and lowest
evaluation point), best and last validation loss, best bits per char, why it stopped, hardware.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def epochs(info: dict) -> float:
    train = info["train_config"]
    train_tokens = info["corpus"]["chars"] * (1 - info["val_fraction"]) / info["chars_per_token"]
    return info["steps"] * train["batch_size"] * train["seq_len"] / train_tokens


def row(folder: Path) -> str:
    info = json.loads((folder / "run.json").read_text())
    evals = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()
             if '"val_loss"' in line]
    train_losses = [e["train_loss"] for e in evals if e.get("train_loss") is not None]
    first = f"{train_losses[0]:.3f}" if train_losses else "n/a"
    lowest = f"{min(train_losses):.3f}" if train_losses else "n/a"
    return (f"| {folder.parent.name} / {folder.name} | {info['parameters']:,} | {info['steps']:,} | "
            f"{epochs(info):.2f} | {info['elapsed_s']:.0f} s | {first} → {lowest} | "
            f"{info['best_val_loss']:.3f} (step {info['best_step']}) | {evals[-1]['val_loss']:.3f} | "
            f"{info['best_val_bpc']:.3f} | "
            f"{info['stop_reason']} | {info['hardware']} |")


HEADER = ("| run | parameters | steps | epochs | time | train loss (first → lowest eval) | "
          "best val nats/token | last val | best val bits/char | stopped | hardware |\n"
          "|---|---:|---:|---:|---:|---|---|---:|---:|---|---|")


def main() -> None:
    """One section per recipe found under the folder: its original figures, then the measured rows."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from textgen_core.recipes import RECIPES

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/recipes")
    for name, item in RECIPES.items():
        folders = [root / name / run.label for run in item.runs if (root / name / run.label / "run.json").is_file()]
        if not folders:
            continue
        print(f"## {name}: {item.title}\n\n**Original:** {item.reference}.\n\n{HEADER}")
        for folder in folders:
            print(row(folder).replace(f"| {name} / ", "| ", 1))
        print()


if __name__ == "__main__":
    main()
