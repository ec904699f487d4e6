"""Background training jobs for the app: a thread per job, a stop event, a lock-guarded snapshot.

    job = new_job(corpus, settings, owner="session-id")
    get_registry().submit(job)          # (registry.py) starts it, or queues it behind the owner's running job
    snap = job.snapshot()               # poll: status, thinned chart points, ETA, latest sample
    job.stop()                          # sets the stop event; the trainer stops at the next step

A ``TrainingJob`` runs ``prepare_run`` + ``trainer.fit(stop_event)`` + ``finish_run`` in a daemon
thread and records the trainer's events for charts (thinned to a bounded number of points), plus a
short preview sample drawn in the training thread at every evaluation. ``resume`` continues the
same model folder. ``registry.py`` decides when jobs run. This module imports no UI code.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from .card import hardware_name
from .checkpoint import has_checkpoint, read_state
from .corpus import Corpus
from .errors import ConfigError, TextgenError
from .files import write_failure
from .hub import Bundle
from .outdir import MANIFEST_FILE, RUN_FILES, FolderLock, claim, inspect_folder, remove_own_files
from .runs import CHECKPOINT_DIR, PreparedRun, RunSettings, execute, prepare_run
from .status import read_timeline, write_failed, write_waiting
from .training import EvalResult, History, TrainConfig, TrainingEnded, TrainProgress

log = logging.getLogger(__name__)

RUNS_DIR_ENV = "TEXTGEN_RUNS_DIR"          # where jobs write their model folders
DEFAULT_RUNS_DIR = Path("runs")            # in the working directory: never inside an installed package

QUEUED, RUNNING, FINISHED, STOPPED, FAILED = "queued", "running", "finished", "stopped", "failed"
ACTIVE = (QUEUED, RUNNING)


def runs_dir() -> Path:
    """TEXTGEN_RUNS_DIR, else ./runs, as an absolute path (a later change of directory moves nothing)."""
    return Path(os.environ.get(RUNS_DIR_ENV) or DEFAULT_RUNS_DIR).absolute()


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-_.``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.")[:80] or "run"


_name_counter = itertools.count(1)


def new_job(corpus: Corpus, settings: RunSettings, owner: str = "local", name: Optional[str] = None,
            root: Optional[Path] = None, **options) -> "TrainingJob":
    """A queued job whose model folder is a fresh ``<runs dir>/<owner>/<name>-<time>`` folder."""
    base = safe_name(name or f"{settings.arch}-{settings.preset}-{settings.tokenizer}")
    parent = Path(root or runs_dir()) / safe_name(owner)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    while True:
        folder = parent / f"{base}-{stamp}-{next(_name_counter)}"
        if not folder.exists():
            break
    return TrainingJob(corpus, settings, folder, name=name or base, owner=owner, **options)


class ThinnedSeries:
    """Keeps at most ``max_points`` evenly spaced points (the stride doubles when full) + the newest."""

    def __init__(self, max_points: int = 400) -> None:
        self.max_points = max(4, max_points)
        self.stride, self.count = 1, 0
        self.kept: list[dict] = []
        self.last: Optional[dict] = None

    def append(self, point: dict) -> None:
        if self.count % self.stride == 0:
            self.kept.append(point)
            if len(self.kept) > self.max_points:
                self.kept, self.stride = self.kept[::2], self.stride * 2
        self.count += 1
        self.last = point

    def points(self) -> list[dict]:
        if self.last is not None and (not self.kept or self.kept[-1] is not self.last):
            return [*self.kept, self.last]
        return list(self.kept)


@dataclass(frozen=True)
class JobSnapshot:
    """What a page needs to draw a job, copied under the job's lock."""
    id: str
    name: str
    owner: str
    status: str                      # queued | running | finished | stopped | failed
    message: str                     # what is happening, or how it ended (the error for failed)
    settings: RunSettings
    step: int
    total_steps: Optional[int]
    progress: float                  # 0..1 of the budget
    elapsed: float                   # training seconds, resumes included
    eta_s: Optional[float]           # seconds left at the current pace (None: unknown)
    tokens_per_s: Optional[float]
    chars_per_token: float
    parameters: Optional[int]
    device: str
    train: list[dict]                # thinned TrainProgress points (step, elapsed, train_loss, ...)
    evals: list[dict]                # EvalResult points (step, elapsed, val_loss, val_bpc, ...)
    best: Optional[dict]             # the best EvalResult point so far
    sample: str                      # the latest preview sample
    sample_step: Optional[int]
    end: Optional[TrainingEnded]
    has_model: bool                  # a model folder was written (the job's bundle is set)
    event_interval_s: Optional[float]  # recent wall seconds between progress events (None: unknown)
    version: int                     # grows with every change: redraw only when it moved

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _point(event: TrainProgress | EvalResult | dict) -> dict:
    values = event if isinstance(event, dict) else vars(event)
    keys = ("kind", "step", "epoch", "elapsed", "train_loss", "tokens_per_s", "progress", "lr")
    point = {k: values[k] for k in keys if k in values}
    if point.get("kind") == "eval":
        point.update(val_loss=values["val_loss"], val_bpc=values["val_bpc"], is_best=values["is_best"])
    return point


class TrainingJob:
    """One training run in a daemon thread. Thread-safe: every public method may be called anytime."""

    def __init__(self, corpus: Corpus, settings: RunSettings, out_dir: str | Path, *,
                 name: Optional[str] = None, owner: str = "local", preview_chars: int = 200,
                 max_chart_points: int = 400, clock: Callable[[], float] = time.monotonic) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.corpus, self.settings = corpus, settings
        self.out_dir = Path(out_dir)
        self.name = name or self.out_dir.name
        self.owner = owner
        self.preview_chars = preview_chars
        self.created = time.time()
        self._max_chart_points = max_chart_points
        self._clock = clock
        self._lock = threading.Lock()
        self._stop_event = threading.Event()
        self._stop_note: Optional[str] = None
        self._thread: Optional[threading.Thread] = None
        self._done_callbacks: list[Callable[["TrainingJob"], None]] = []
        self._resume = False
        self._status, self._message = QUEUED, "waiting to start"
        self._bundle: Optional[Bundle] = None
        self._run: Optional[PreparedRun] = None
        # the most other jobs of this process that trained at the same time as this one (the registry
        # counts them; None: never run by a registry), so that timings can say whether they compare
        self.most_others_running: Optional[int] = None
        self._folder_lock: Optional[FolderLock] = None   # held from reserve() until the run ends
        self._reset_progress()

    @classmethod
    def for_folder(cls, out_dir: str | Path, corpus: Corpus, owner: str, train: Optional[TrainConfig] = None,
                   name: Optional[str] = None, **options) -> "TrainingJob":
        """A job that resumes the run saved in ``out_dir`` (a run of an earlier session, or one the
        server was killed in), with its curve so far; ``train``: the budget to continue to."""
        from .runs import settings_for_resume

        out_dir = Path(out_dir)
        settings = settings_for_resume(out_dir, train=train)
        job = cls(corpus, settings, out_dir, name=name or out_dir.name, owner=owner, **options)
        if has_checkpoint(out_dir / CHECKPOINT_DIR):
            for point in read_state(out_dir / CHECKPOINT_DIR)["history"]:
                job._record(_point(point))
            if train is not None:
                job._check_budget(train)
        job._resume = True
        job._status, job._message = QUEUED, "waiting to resume"
        return job

    def _reset_progress(self) -> None:
        self._train = ThinnedSeries(self._max_chart_points)
        self._evals = ThinnedSeries(max(1000, self._max_chart_points))
        self._best: Optional[dict] = None
        self._last: Optional[dict] = None
        self._sample = ""
        self._sample_step: Optional[int] = None
        self._end: Optional[TrainingEnded] = None
        self._total_steps: Optional[int] = None
        self._chars_per_token = 1.0
        self._parameters: Optional[int] = None
        self._device = ""
        self._pace_start: Optional[tuple[float, float]] = None   # (clock, progress) when steps began
        self._last_clock: Optional[float] = None                 # clock of the newest event
        self._event_clocks: list[float] = []                      # clocks of the last few events
        self._version = getattr(self, "_version", 0) + 1

    # --- state ---------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self._status

    @property
    def active(self) -> bool:
        return self._status in ACTIVE

    @property
    def bundle(self) -> Optional[Bundle]:
        """The trained model (best weights), once the job has written its model folder."""
        return self._bundle

    @property
    def message(self) -> str:
        return self._message

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            last = self._last or {}
            progress = float(last.get("progress", 0.0))
            return JobSnapshot(
                id=self.id, name=self.name, owner=self.owner, status=self._status,
                message=self._message, settings=self.settings, step=int(last.get("step", 0)),
                total_steps=self._total_steps, progress=progress,
                elapsed=float(last.get("elapsed", 0.0)), eta_s=self._eta(progress),
                tokens_per_s=self._tokens_per_s(), chars_per_token=self._chars_per_token,
                parameters=self._parameters, device=self._device, train=self._train.points(),
                evals=self._evals.points(), best=self._best, sample=self._sample,
                sample_step=self._sample_step, end=self._end, has_model=self._bundle is not None,
                event_interval_s=self._event_interval(), version=self._version)

    def _eta(self, progress: float) -> Optional[float]:
        """Seconds left at the pace since this session's start, as of the newest event (so that a
        snapshot only changes when training moved: unchanged polls redraw nothing)."""
        if self._status != RUNNING or self._pace_start is None or self._last_clock is None or progress >= 1:
            return None
        started, progress0 = self._pace_start
        done, spent = progress - progress0, self._last_clock - started
        if done <= 0 or spent <= 0:
            return None
        return spent * (1 - progress) / done

    def _event_interval(self) -> Optional[float]:
        clocks = self._event_clocks
        return (clocks[-1] - clocks[0]) / (len(clocks) - 1) if len(clocks) >= 3 else None

    def _tokens_per_s(self) -> Optional[float]:
        for point in (self._train.last, self._last):
            if point and isinstance(point.get("tokens_per_s"), float) and math.isfinite(point["tokens_per_s"]):
                return point["tokens_per_s"]
        return None

    def _set(self, status: Optional[str] = None, message: Optional[str] = None) -> None:
        with self._lock:
            if status is not None:
                self._status = status
            if message is not None:
                self._message = message
            self._version += 1

    # --- control -------------------------------------------------------------------------------
    def note_others_running(self, count: int) -> None:
        """``count`` other jobs train at the same time as this one now (the registry calls this)."""
        self.most_others_running = max(self.most_others_running or 0, count)

    def add_done_callback(self, callback: Callable[["TrainingJob"], None]) -> None:
        self._done_callbacks.append(callback)

    def reserve(self) -> None:
        """Take the job's folder while it waits (the registry calls this on submit): the folder is
        locked, so nothing else writes it, and a new run's status says it waits; a server that
        dies meanwhile leaves it listed as interrupted, never lost."""
        if self._folder_lock is not None and self._folder_lock.held:
            return
        fresh = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.out_dir, exc) from exc
        lock = FolderLock(self.out_dir).acquire()
        try:
            if fresh or not self._resume:
                claim(self.out_dir, set(RUN_FILES))
                write_waiting(self.out_dir, self.name, self.corpus.name, self.settings.arch, self.settings.tokenizer)
        except BaseException:
            lock.release()
            raise
        self._folder_lock = lock

    def release_folder(self) -> None:
        """Give the folder back (a job cancelled while it waited leaves no folder behind)."""
        lock, self._folder_lock = self._folder_lock, None
        if lock is None:
            return
        if not self._resume and not has_checkpoint(self.out_dir / CHECKPOINT_DIR):
            remove_own_files(self.out_dir, inspect_folder(self.out_dir))
            lock.release()
            for name in (MANIFEST_FILE,):
                (self.out_dir / name).unlink(missing_ok=True)
            try:
                self.out_dir.rmdir()
            except OSError:
                pass
            return
        lock.release()

    def start(self) -> None:
        """Start the thread (the registry calls this); a job stopped while queued stays stopped."""
        with self._lock:
            if self._status != QUEUED or self._thread is not None:
                return
            if self._stop_event.is_set():
                return
            self._status, self._message = RUNNING, "preparing: fitting the tokenizer and encoding the text"
            self._version += 1
            self._thread = threading.Thread(target=self._main, name=f"train-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, note: Optional[str] = None) -> None:
        """Ask the job to stop at the next step; a queued job is cancelled at once."""
        cancelled = False
        with self._lock:
            if self._status not in ACTIVE:
                return
            self._stop_note = note
            self._stop_event.set()
            if self._status == QUEUED and self._thread is None:
                self._status = STOPPED
                self._message = note or "cancelled before it started"
                self._version += 1
                cancelled = True
            else:
                self._message = "stopping after the current step..."
                self._version += 1
        if cancelled:
            self.release_folder()
            self._notify_done()

    @property
    def stop_requested(self) -> bool:
        return self._stop_event.is_set()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread; True when the job is no longer active."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.active

    def can_resume(self) -> bool:
        return not self.active and has_checkpoint(self.out_dir / CHECKPOINT_DIR)

    def prepare_resume(self, train: Optional[TrainConfig] = None) -> None:
        """Queue this finished job again to continue its model folder (``train``: a new budget)."""
        with self._lock:
            if self._status in ACTIVE:
                raise ConfigError(f"{self.name} is still {self._status}; stop it first")
            if not has_checkpoint(self.out_dir / CHECKPOINT_DIR):
                raise ConfigError(f"nothing to resume: {self.name} stopped before its first evaluation "
                                  "and saved no checkpoint; start a new training instead")
            if train is not None:
                self._check_budget(train)
                self.settings = replace(self.settings, train=train)
            self._resume = True
            self._stop_event = threading.Event()
            self._stop_note = None
            self._thread = None
            self._status, self._message = QUEUED, "waiting to resume"
            self._version += 1

    def _check_budget(self, train: TrainConfig) -> None:
        last = self._last or {}
        steps, elapsed, epoch = last.get("step", 0), last.get("elapsed", 0.0), last.get("epoch", 0.0)
        if train.max_steps is not None and train.max_steps <= steps:
            raise ConfigError(f"this run already did {steps} steps; raise the step budget above {steps} "
                              "to continue it")
        if train.max_minutes is not None and train.max_minutes * 60 <= elapsed:
            raise ConfigError(f"this run already trained {elapsed / 60:.1f} min; raise the time budget "
                              "above that to continue it")
        if train.epochs is not None and train.epochs <= epoch:
            raise ConfigError(f"this run already trained {epoch:.2f} epochs; raise the epoch budget "
                              "above that to continue it")

    # --- the thread ----------------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._train_and_save()
        except TextgenError as exc:
            self._set(FAILED, str(exc))
        except Exception as exc:  # a bug in the engine: keep the app alive and say so
            log.exception("training job %s failed", self.name)
            self._set(FAILED, f"unexpected error ({type(exc).__name__}: {exc}); please report it")
        finally:
            self._run = None
            self._notify_done()

    def _train_and_save(self) -> None:
        lock, self._folder_lock = self._folder_lock, None
        try:
            run = prepare_run(self.corpus, self.settings, self.out_dir, resume=self._resume, name=self.name,
                              lock=lock, timeline_chars=self.preview_chars)
        except BaseException as exc:
            if not self._resume:   # the reserved folder says why it never started
                write_failed(self.out_dir, str(exc) if isinstance(exc, TextgenError) else type(exc).__name__)
            if lock is not None:
                lock.release()
            raise
        try:
            self._train_prepared(run)
        finally:
            run.release()

    def _train_prepared(self, run: PreparedRun) -> None:
        trainer = run.trainer
        with self._lock:
            if self._resume:
                self._reset_progress()
                for point in trainer.history.points:
                    self._record(_point(point))
            self._total_steps = trainer.total_steps
            self._chars_per_token = trainer.chars_per_token
            self._parameters = run.model.num_parameters()
            self._device = hardware_name(trainer.device, trainer.threads)
            self._message = "resuming" if self._resume else "training"
            self._pace_start = (self._clock(), float((self._last or {}).get("progress", 0.0)))
            self._version += 1
        self._run = run
        trainer.callbacks.append(self._on_event)
        try:
            result = execute(run, self._stop_event, before_finish=self._explain_stop)
        except ConfigError:
            end = trainer.history.end
            if end is not None and end.reason == "stopped" and end.best_step is None:
                self._set(STOPPED, f"{self._stop_note or 'stopped'} before the first evaluation; nothing was saved")
                return
            raise
        end = result.history.end
        assert end is not None   # execute returns a finished run
        with self._lock:
            self._bundle = result.bundle
            self._status = STOPPED if end.reason == "stopped" else FINISHED
            self._message = end.message
            self._version += 1

    def _explain_stop(self, history: History) -> History:
        """A stop that nobody asked for on the page says why it happened, in the folder too (run.json,
        the card, status.json), instead of "stopped by request"."""
        end = history.end
        self._set(message="saving the model folder")
        if end is not None and end.reason == "stopped" and self._stop_note:
            history.end = replace(end, message=end.message.replace("stopped by request", self._stop_note, 1))
        return history

    def _record(self, point: dict) -> None:
        """Add one event point to the series (the caller holds the lock)."""
        self._last, self._last_clock = point, self._clock()
        if point["kind"] == "eval":
            self._evals.append(point)
            if self._best is None or point["val_loss"] < self._best["val_loss"]:
                self._best = point
        else:
            self._train.append(point)
        self._version += 1

    def _on_event(self, event) -> None:
        """Trainer callback, in the training thread: keep it short."""
        if isinstance(event, TrainingEnded):
            with self._lock:
                self._end = event
                self._version += 1
            return
        with self._lock:
            self._record(_point(event))
            if isinstance(event, TrainProgress):
                assert self._last_clock is not None   # _record just set it
                self._event_clocks = [*self._event_clocks[-5:], self._last_clock]
        run = self._run
        sample = run.recorder.last_sample if run is not None and run.recorder is not None else None
        if isinstance(event, EvalResult) and sample is not None and sample[0] == event.step:
            with self._lock:   # the run's timeline drew it (temperature 0.8, seed 1) before this callback
                self._sample, self._sample_step = sample[1], sample[0]
                self._version += 1

    def _notify_done(self) -> None:
        for callback in list(self._done_callbacks):
            try:
                callback(self)
            except Exception:
                log.exception("job done callback failed")



# --- a run read back from its folder -------------------------------------------------------------
def snapshot_from_folder(record) -> JobSnapshot:
    """A run of a workspace read from disk (a ``workspace.RunRecord``: finished, stopped, failed,
    interrupted, or one of an earlier session) as a snapshot, drawn like a live job: its curve from its
    history (its last checkpoint's while it runs or after it was interrupted), its training settings
    from run.json or the checkpoint, its latest sample from its timeline. Damaged points are left out."""
    from .workspace import INTERRUPTED, WAITING, run_history

    def numbers(point: dict, *keys: str) -> bool:
        return all(isinstance(point.get(k), (int, float)) and not isinstance(point.get(k), bool) for k in keys)

    train, evals = ThinnedSeries(400), ThinnedSeries(1000)
    best: Optional[dict] = None
    last: dict = {}
    for raw in run_history(record.path):
        kind = raw.get("kind") if isinstance(raw, dict) else None
        if kind == "train" and numbers(raw, "step", "train_loss"):
            train.append(_point(raw))
        elif kind == "eval" and numbers(raw, "step", "val_loss", "val_bpc") and "is_best" in raw:
            evals.append(_point(raw))
            best = evals.last if best is None or raw["val_loss"] < best["val_loss"] else best
        else:
            continue
        last = raw
    info = record.info
    config = info.get("train_config")
    if not isinstance(config, dict) and has_checkpoint(record.path / CHECKPOINT_DIR):
        try:
            config = read_state(record.path / CHECKPOINT_DIR).get("train_config")
        except (TextgenError, OSError):
            config = None
    try:
        known = TrainConfig.__dataclass_fields__
        train_config = TrainConfig(**{k: v for k, v in (config or {}).items() if k in known})
    except TypeError:
        train_config = TrainConfig()
    chars_per_token = info.get("chars_per_token")
    if not chars_per_token and best is not None and best["val_bpc"] > 0:   # bpc = loss / chars per token / ln 2
        chars_per_token = best["val_loss"] / (best["val_bpc"] * math.log(2))
    end = None
    if info.get("stop_reason"):
        end = TrainingEnded(step=info.get("steps", record.step), reason=info["stop_reason"],
                            message=info.get("stop_message", ""), best_step=info.get("best_step"),
                            best_val_loss=info.get("best_val_loss"), best_val_bpc=info.get("best_val_bpc"),
                            elapsed=info.get("elapsed_s", 0.0))
    elif record.reason and not record.active and record.status != INTERRUPTED:
        end = TrainingEnded(step=record.step, reason=record.reason, message=record.message, best_step=None,
                            best_val_loss=None, best_val_bpc=None, elapsed=record.elapsed_s or 0.0)
    timeline = read_timeline(record.path)
    sample = timeline[-1] if timeline else {}
    elapsed = record.elapsed_s if record.elapsed_s is not None else last.get("elapsed", 0.0)
    rate = next((p["tokens_per_s"] for p in (train.last, last) if p and numbers(p, "tokens_per_s")), None)
    return JobSnapshot(
        id=record.name, name=record.display_name, owner=record.path.parent.name,
        status=QUEUED if record.status == WAITING else record.status, message=record.message,
        settings=RunSettings(tokenizer=record.tokenizer or "char", arch=record.arch or "gru", train=train_config),
        step=record.step, total_steps=train_config.max_steps,
        progress=float(last["progress"]) if numbers(last, "progress") else 0.0,
        elapsed=float(elapsed) if numbers({"e": elapsed}, "e") else 0.0, eta_s=None, tokens_per_s=rate,
        chars_per_token=float(chars_per_token or 1.0), parameters=record.parameters,
        device=str(info.get("hardware") or ""), train=train.points(), evals=evals.points(), best=best,
        sample=str(sample.get("text", "")), sample_step=sample.get("step"), end=end, has_model=record.has_model,
        event_interval_s=None, version=train.count + evals.count + record.step)
