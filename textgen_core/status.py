"""What a run says about itself while it runs: ``status.json`` and its timeline of samples.

``status.json`` is rewritten atomically when the run starts, at every evaluation and when it ends, so
a crash at any instant leaves a readable status; whether the run still lives is its folder's lock
(``outdir.lock_is_held``), which a reader checks beside it. ``samples.jsonl`` gets one line per
evaluation: a short sample from the weights of that moment (temperature 0.8, the same seed every
time), so a learner can watch text emerge from noise step by step.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .files import MAX_CONFIG_BYTES, MAX_HISTORY_BYTES, dumps, read_bytes, read_json, write_json
from .sampling import SamplingOptions, stream_text
from .training import EvalResult

if TYPE_CHECKING:
    from .runs import PreparedRun

STATUS_FILE = "status.json"
TIMELINE_FILE = "samples.jsonl"
PREVIEW_CHARS = 200
WAITING, RUNNING, FINISHED, STOPPED, FAILED = "waiting", "running", "finished", "stopped", "failed"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def preview_sample(model, tokenizer, chars_per_token: float, chars: int = PREVIEW_CHARS) -> str:
    """About ``chars`` characters from the model as it is now (temperature 0.8, seed 1)."""
    tokens = max(8, round(chars / max(chars_per_token, 1e-6)))
    options = SamplingOptions(length=tokens, temperature=0.8, seed=1)
    return "".join(pieces[0] for pieces in stream_text(model, tokenizer, "", options))


def write_waiting(folder: Path, name: str, corpus: str, arch: str, tokenizer: str) -> None:
    """The status of a run that waits for a free training slot (its folder is reserved and locked)."""
    write_json(folder / STATUS_FILE, {"status": WAITING, "reason": None, "message": "waiting for a free training slot",
                                      "step": 0, "name": name, "corpus": corpus, "model": {"arch": arch},
                                      "tokenizer": tokenizer, "created": _now(), "updated": _now(),
                                      "pid": os.getpid(), "host": socket.gethostname()})


def write_failed(folder: Path, message: str) -> None:
    """Mark a run that failed before it could start (its status said it was waiting) as failed."""
    status = read_status(folder)
    if status.get("status") in (WAITING, RUNNING):
        write_json(Path(folder) / STATUS_FILE, {**status, "status": FAILED, "reason": "error", "message": message,
                                                "updated": _now()})


def ended_status(reason: str) -> str:
    """The status a run ends in for the Trainer's end ``reason``."""
    if reason == "stopped":
        return STOPPED
    if reason in ("diverged", "out_of_memory"):
        return FAILED
    return FINISHED


class RunRecorder:
    """A Trainer callback that keeps ``status.json`` and the timeline of samples current."""

    def __init__(self, run: "PreparedRun", timeline_chars: int = PREVIEW_CHARS) -> None:
        self.run = run
        self.folder = run.out_dir
        self.timeline_chars = timeline_chars
        self.stop_event: Optional[threading.Event] = None   # no sample is drawn once a stop is asked for
        self.last_sample: Optional[tuple[int, str]] = None  # (step, text) of the newest sample
        self.best: dict = {}
        previous = read_status(self.folder)
        self.created = previous.get("created") if isinstance(previous.get("created"), str) else _now()

    def write(self, status: str, message: str, reason: Optional[str] = None, step: Optional[int] = None,
              elapsed: Optional[float] = None) -> None:
        run, trainer = self.run, self.run.trainer
        write_json(self.folder / STATUS_FILE, {
            "status": status, "reason": reason, "message": message,
            "step": trainer.step if step is None else step, "elapsed_s": elapsed,
            "name": run.name, "corpus": run.corpus.name, "tokenizer": run.tokenizer.kind,
            "model": run.model.config.to_dict(), "parameters": run.model.num_parameters(),
            **self.best, "created": self.created, "updated": _now(),
            "pid": os.getpid(), "host": socket.gethostname(),
        })

    def started(self) -> None:
        step = self.run.trainer.step
        self.write(RUNNING, f"resuming at step {step}" if step else "training")

    def ended(self, reason: str, message: str, step: int, elapsed: float) -> None:
        self.write(ended_status(reason), message, reason, step, elapsed)

    def failed(self, message: str) -> None:
        self.write(FAILED, message, "error")

    def __call__(self, event) -> None:
        if not isinstance(event, EvalResult):
            return
        if event.is_best:
            self.best = {"best_step": event.step, "best_val_loss": event.val_loss, "best_val_bpc": event.val_bpc}
        if self.timeline_chars and not (self.stop_event is not None and self.stop_event.is_set()):
            self._sample(event)
        self.write(RUNNING, f"training: step {event.step}", step=event.step, elapsed=event.elapsed)

    def _sample(self, event: EvalResult) -> None:
        trainer = self.run.trainer
        text = preview_sample(self.run.model, self.run.tokenizer, trainer.chars_per_token, self.timeline_chars)
        self.last_sample = (event.step, text)
        line = dumps({"step": event.step, "elapsed": event.elapsed, "val_loss": event.val_loss,
                      "val_bpc": event.val_bpc, "text": text}, ensure_ascii=False) + "\n"
        with open(self.folder / TIMELINE_FILE, "a", encoding="utf-8") as handle:
            handle.write(line)   # one line a sample: a torn last line loses that sample only


def read_status(folder: Path) -> dict:
    """A run folder's status.json ({} when it has none, or one that cannot be read)."""
    try:
        status = read_json(Path(folder) / STATUS_FILE, MAX_CONFIG_BYTES)
    except Exception:  # a missing, damaged or hostile file says nothing
        return {}
    return status if isinstance(status.get("status"), str) else {}


def read_timeline(folder: Path) -> list[dict]:
    """The run's samples, one per evaluation, oldest first (damaged lines are skipped)."""
    try:
        data = read_bytes(Path(folder) / TIMELINE_FILE, MAX_HISTORY_BYTES, tail=True)
    except Exception:  # missing, or not a regular file: no timeline
        return []
    samples = []
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("step"), int) and isinstance(value.get("text"), str):
            samples.append(value)
    return samples
