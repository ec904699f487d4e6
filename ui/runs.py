"""The workspace's runs in the app: a page's runs found again by folder after a reload (the job that
trains it, else the run read from disk), resumed from their last checkpoint, exported, summarised."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import threading
from collections.abc import Sequence
from typing import Optional, Union

import streamlit as st

from textgen_core import Corpus, TextgenError, TrainConfig
from textgen_core.checkpoint import has_checkpoint, read_state
from textgen_core.errors import ConfigError
from textgen_core.hub import Bundle
from textgen_core.jobs import QUEUED, JobSnapshot, TrainingJob, snapshot_from_folder
from textgen_core.outdir import CHECKPOINT_DIR
from textgen_core.recipes import RECIPES
from textgen_core.registry import get_registry
from textgen_core.status import read_status
from textgen_core.workspace import WAITING, RunRecord, read_run, run_history

from .models import load_run
from .state import workspace

FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")   # a run folder's name, as the project makes it
BUDGETS = (("max_steps", "steps"), ("epochs", "epochs"), ("max_minutes", "minutes"))
CSV_FIELDS = ("kind", "step", "epoch", "elapsed", "train_loss", "val_loss", "val_bpc", "lr", "tokens_per_s",
              "progress")


class SavedRun:
    """A run of the workspace that trains nowhere in this process, read from its folder: drawn,
    sampled and resumed like a TrainingJob (``snapshot``, ``bundle``, ``can_resume``), never trained."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self.out_dir, self.id, self.name = record.path, record.name, record.display_name

    @property
    def status(self) -> str:
        return QUEUED if self.record.status == WAITING else self.record.status

    @property
    def active(self) -> bool:
        return self.record.active   # another process holds its folder (e.g. the command line trains it)

    @property
    def message(self) -> str:
        return self.record.message

    @property
    def bundle(self) -> Optional[Bundle]:
        """Its model (the best weights), loaded on first use; None without one or when it is damaged."""
        if not self.record.has_model:
            return None
        try:
            return load_run(self.out_dir)
        except (TextgenError, OSError):
            return None

    def snapshot(self) -> JobSnapshot:
        fresh = read_run(self.out_dir, workspace().index()["names"])
        self.record = fresh or self.record
        return snapshot_from_folder(self.record)

    def can_resume(self) -> bool:
        return self.record.resumable

    def stop(self, note: Optional[str] = None) -> None:
        """Nothing to stop: no job of this process trains it."""

    def join(self, timeout: Optional[float] = None) -> bool:
        return not self.active


Run = Union[TrainingJob, SavedRun]


# --- runs the registry has not taken yet (over its caps), kept for a reload ---------------------------
_unsubmitted: dict[str, list[TrainingJob]] = {}
_unsubmitted_lock = threading.Lock()


def hold_unsubmitted(owner: str, jobs: Sequence[TrainingJob]) -> None:
    """Keep the workspace's jobs that wait to be handed to the registry (they have no folder yet), so
    that a reloaded page finds them too."""
    with _unsubmitted_lock:
        _unsubmitted[owner] = [j for j in jobs if j.status == QUEUED]
        if not _unsubmitted[owner]:
            del _unsubmitted[owner]


def _held(owner: str) -> list[TrainingJob]:
    with _unsubmitted_lock:
        return list(_unsubmitted.get(owner, []))


# --- finding a page's runs again ----------------------------------------------------------------------
def find(name: object, known: Sequence[object] = (), names: Optional[dict] = None) -> Optional[Run]:
    """The run in the workspace's folder ``name``: its job when one trains or waits (in the registry,
    this session's, or held back), else the run read from disk; None when there is no such run."""
    if not isinstance(name, str) or not FOLDER_NAME.fullmatch(name):
        return None
    ws = workspace()
    folder = ws.root / name
    ours = [j for j in known if isinstance(j, TrainingJob) and (j.active or j.out_dir.is_dir())]  # not deleted
    for job in [*get_registry().active_jobs(ws.id), *ours, *_held(ws.id)]:
        if job.out_dir == folder:
            return job
    if not folder.is_dir() or folder.is_symlink():
        return None
    record = read_run(folder, ws.index()["names"] if names is None else names)
    return SavedRun(record) if record is not None else None


def attach() -> None:
    """The Train, Compare and Recipes pages' runs as the workspace saved them (a reload, a second tab,
    an earlier visit): a run that trains is its live job, with its whole curve so far; one that ended
    is read from disk. A page whose runs the workspace does not name keeps the session's."""
    ss, index = st.session_state, workspace().index()
    saved, names = index["state"], index["names"]
    if isinstance(saved.get("train_run"), str):
        ss.train_job = find(saved["train_run"], [ss.train_job], names)
    if isinstance(saved.get("compare_runs"), list):
        ss.compare_jobs = [run for name in saved["compare_runs"] if (run := find(name, ss.compare_jobs, names))]
    if isinstance(saved.get("recipe_runs"), list) and saved.get("recipe_name") in RECIPES:
        ss.recipe_name = saved["recipe_name"]
        ss.recipe_jobs = [run for name in saved["recipe_runs"] if (run := find(name, ss.recipe_jobs, names))]


def disk_usage() -> int:
    """The workspace's bytes on disk."""
    return workspace().disk_usage()


def check_quota() -> None:
    """Refuse a new run past the workspace's quota with the engine's message naming what to delete."""
    workspace().check_quota()


def has_model(run: Run) -> bool:
    """Whether the run has written its model (without loading it)."""
    return run.record.has_model if isinstance(run, SavedRun) else run.bundle is not None


def live_job(record: RunRecord) -> Optional[TrainingJob]:
    """The job of this process that trains or waits in ``record``'s folder, if any."""
    return next((j for j in get_registry().active_jobs(workspace().id) if j.out_dir == record.path), None)


# --- resuming -----------------------------------------------------------------------------------------
def corpus_fingerprint(record: RunRecord) -> Optional[str]:
    """The SHA-256 of the text the run was trained on: its run.json's, else its checkpoint's."""
    corpus = record.info.get("corpus") or {}
    if isinstance(corpus.get("sha256"), str):
        return corpus["sha256"]
    if has_checkpoint(record.path / CHECKPOINT_DIR):
        try:
            saved = read_state(record.path / CHECKPOINT_DIR).get("run") or {}
        except (TextgenError, OSError):
            return None
        sha = (saved.get("corpus") or {}).get("sha256") if isinstance(saved.get("corpus"), dict) else None
        return sha if isinstance(sha, str) else None
    return None


def run_corpus(record: RunRecord) -> Corpus:
    """The workspace's copy of the text the run was trained on (ConfigError, naming it, when absent)."""
    sha = corpus_fingerprint(record)
    for saved in workspace().corpora() if sha else []:
        if saved["sha256"] == sha:
            return workspace().load_corpus(saved["key"])
    raise ConfigError(f"the text this run was trained on ({record.corpus or 'unknown'}) is not in this workspace; "
                      "upload it again on the Corpus page to resume the run")


def saved_train_config(record: RunRecord) -> Optional[TrainConfig]:
    """The run's own training settings (run.json's, else its checkpoint's), None when unreadable."""
    saved = record.info.get("train_config")
    if not isinstance(saved, dict) and has_checkpoint(record.path / CHECKPOINT_DIR):
        try:
            saved = read_state(record.path / CHECKPOINT_DIR).get("train_config")
        except (TextgenError, OSError):
            saved = None
    if not isinstance(saved, dict):
        return None
    try:
        return TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    except TypeError:
        return None


def budget_of(config: TrainConfig) -> tuple[str, str, float]:
    """(setting, unit, value) of the run's budget: steps, epochs or minutes, the first one it has."""
    for setting, unit in BUDGETS:
        if getattr(config, setting) is not None:
            return setting, unit, getattr(config, setting)
    return "max_steps", "steps", 1000


def run_name(record: RunRecord) -> str:
    """The name the run was started with (its folder's name when neither file says one)."""
    name = record.info.get("name") or read_status(record.path).get("name")
    return name if isinstance(name, str) and name else record.name


def resume(run: Run, train: TrainConfig) -> TrainingJob:
    """Continue ``run`` from its last checkpoint with ``train`` (its new budget): a job of this session
    is queued again; a run found on disk becomes a job with its curve so far, on the workspace's copy
    of its text. Refused past the workspace's quota."""
    check_quota()
    if isinstance(run, TrainingJob):
        get_registry().resume(run, train)
        return run
    job = TrainingJob.for_folder(run.out_dir, run_corpus(run.record), workspace().id, train=train,
                                 name=run_name(run.record))
    get_registry().submit(job)
    return job


def stop_and_delete(record: RunRecord, timeout_s: float = 120) -> None:
    """Delete a run; one that trains is stopped first, and waited for."""
    job = live_job(record)
    if job is not None:
        job.stop("stopped by the user")
        job.join(timeout_s)
    workspace().delete_run(record.name)


# --- what the Runs page shows -----------------------------------------------------------------------
def history_csv(record: RunRecord) -> str:
    """The run's reports so far (training and validation points) as CSV, one row a report."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for point in run_history(record.path):
        if isinstance(point, dict) and point.get("kind") in ("train", "eval"):
            writer.writerow({k: point.get(k, "") for k in CSV_FIELDS})
    return buffer.getvalue()


def when(created: str) -> str:
    """A run's start time in the server's local time ("?" when its files do not say)."""
    try:
        return dt.datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "?"


def runs_table(records: Sequence[RunRecord]) -> list[dict]:
    """One row a run, newest first: what it is, how it ended, what it reached."""
    return [{
        "run": r.display_name, "status": r.label, "corpus": r.corpus or None, "architecture": r.arch or None,
        "tokenizer": r.tokenizer or None, "parameters": r.parameters,
        "best val loss (nats/token)": round(r.best_val_loss, 4) if r.best_val_loss is not None else None,
        "best val bits/char": round(r.best_val_bpc, 4) if r.best_val_bpc is not None else None,
        "steps": r.step, "training time (s)": round(r.elapsed_s, 1) if r.elapsed_s is not None else None,
        "started": when(r.created),
    } for r in records]
