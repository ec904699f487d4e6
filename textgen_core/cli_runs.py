"""python -m textgen_core runs list | show | delete --workspace DIR

The runs of a workspace (any folder of model folders: the app's workspaces, or where the command
line trained), read from disk the way the app's Runs page reads them.
"""
from __future__ import annotations

import argparse
import sys

from .errors import ConfigError
from .files import size_text
from .jobs import runs_dir
from .workspace import RunRecord, Workspace, run_history


def add_parser(commands) -> None:
    runs = commands.add_parser("runs", help="list, show or delete the runs of a workspace")
    actions = runs.add_subparsers(dest="action", required=True)
    for name, text in (("list", "every run, newest first"), ("show", "one run in full"),
                       ("delete", "delete a run's folder (a training run must be stopped first)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--workspace", default=None,
                            help="the workspace folder (default: the runs folder, TEXTGEN_RUNS_DIR or ./runs)")
        if name != "list":
            action.add_argument("run", help="the run's folder name (or its name shown by `runs list`)")
        if name == "delete":
            action.add_argument("--yes", action="store_true", help="delete without asking")


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _row(record: RunRecord) -> str:
    return (f"{record.name:<40} {record.label:<20} {record.step:>7} {record.arch or '-':<9} "
            f"{record.tokenizer or '-':<13} {_fmt(record.parameters, ','):>11} {_fmt(record.best_val_loss, '.4f'):>8} "
            f"{_fmt(record.best_val_bpc, '.3f'):>6} {_fmt(record.elapsed_s, '.0f'):>7}  {record.corpus}")


def run(args: argparse.Namespace) -> int:
    workspace = Workspace(args.workspace or runs_dir())
    if not workspace.root.is_dir():
        raise ConfigError(f"{workspace.root} is not a folder; give the workspace with --workspace DIR")
    if args.action == "list":
        records = workspace.runs()
        print(f"{'run':<40} {'status':<20} {'step':>7} {'model':<9} {'tokenizer':<13} {'parameters':>11} "
              f"{'val loss':>8} {'bpc':>6} {'time s':>7}  corpus")
        for record in records:
            print(_row(record))
        print(f"{len(records)} run{'s' if len(records) != 1 else ''}, {size_text(workspace.disk_usage())} on disk",
              file=sys.stderr)
        return 0
    record = workspace.run(args.run)
    if args.action == "show":
        _show(record)
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"deleting {record.name} needs --yes (there is no terminal to ask)")
        answer = input(f"delete {record.display_name} ({record.path}, "
                       f"{size_text(Workspace(record.path).disk_usage())})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 0
    workspace.delete_run(record.name)
    print(f"deleted {record.display_name}")
    return 0


def _show(record: RunRecord) -> None:
    fields = [("name", record.display_name), ("folder", str(record.path)), ("status", record.label),
              ("message", record.message), ("step", record.step), ("corpus", record.corpus),
              ("model", record.arch), ("tokenizer", record.tokenizer), ("parameters", _fmt(record.parameters, ",")),
              ("best validation loss", _fmt(record.best_val_loss, ".4f") + " nats/token"),
              ("best validation bits per char", _fmt(record.best_val_bpc, ".4f")),
              ("training time", _fmt(record.elapsed_s, ".1f") + " s"), ("created", record.created),
              ("can be sampled", "yes" if record.has_model else "no"),
              ("can be resumed", "yes" if record.resumable else "no")]
    for name, value in fields:
        print(f"{name + ':':<31} {value}")
    evals = [p for p in run_history(record.path) if p.get("kind") == "eval"]
    if evals:
        print("\nstep      train    val   bits/char")
        for point in evals[-20:]:
            print(f"{point.get('step', 0):>6} {point.get('train_loss', float('nan')):>8.4f} "
                  f"{point.get('val_loss', float('nan')):>6.4f} {point.get('val_bpc', float('nan')):>8.3f}")
