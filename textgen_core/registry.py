"""The process-wide job registry: which training jobs run, which wait, and which are abandoned.

It caps the jobs that run at once (each owner runs one job at a time; the owner's further jobs wait
in a queue), and stops jobs whose owner has sent no heartbeat for a while, so that a closed browser
tab does not leave training running. It imports no UI code; the app calls ``registry.touch(owner)``
whenever the owner's page runs or polls.
"""
from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Optional

from .errors import ConfigError
from .jobs import QUEUED, RUNNING, TrainingJob
from .training import TrainConfig

log = logging.getLogger(__name__)

MAX_RUNNING_ENV = "TEXTGEN_MAX_JOBS"       # jobs that may train at once in this process
STALE_AFTER_ENV = "TEXTGEN_JOB_TIMEOUT_S"  # seconds without a heartbeat before a job is stopped
DEFAULT_MAX_RUNNING = 2
DEFAULT_MAX_PER_OWNER = 5
DEFAULT_STALE_AFTER_S = 1800.0   # a closed tab's job trains on for half an hour


class JobRegistry:
    """Process-wide bookkeeping of active jobs: a cap, a per-owner queue, and a reaper.

    - at most ``max_running`` jobs train at once; each owner trains one job at a time and its
      further jobs wait (up to ``max_per_owner`` running + waiting);
    - a job whose owner has not called ``touch(owner)`` for ``stale_after_s`` seconds is stopped
      (its best weights so far are still saved), so closed tabs free their slot.
    """

    def __init__(self, max_running: int = DEFAULT_MAX_RUNNING, max_per_owner: int = DEFAULT_MAX_PER_OWNER,
                 stale_after_s: float = DEFAULT_STALE_AFTER_S, reap_every_s: Optional[float] = 15.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_running < 1 or max_per_owner < 1 or stale_after_s <= 0:
            raise ConfigError("the job registry needs max_running, max_per_owner and stale_after_s above 0")
        self.max_running, self.max_per_owner = max_running, max_per_owner
        self.stale_after_s, self.reap_every_s, self.clock = stale_after_s, reap_every_s, clock
        self._lock = threading.RLock()
        self._jobs: list[TrainingJob] = []          # queued and running, oldest first
        self._last_seen: dict[str, float] = {}
        self._reaper: Optional[threading.Thread] = None
        self._closed = threading.Event()

    # --- queries -------------------------------------------------------------------------------
    def active_jobs(self, owner: Optional[str] = None) -> list[TrainingJob]:
        with self._lock:
            return [j for j in self._jobs if owner is None or j.owner == owner]

    def running_count(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs if j.status == RUNNING)

    # --- heartbeat and reaping -----------------------------------------------------------------
    def touch(self, owner: str) -> None:
        """The owner's page is alive: call on every page run and every poll."""
        with self._lock:
            self._last_seen[owner] = self.clock()

    def reap(self) -> list[TrainingJob]:
        """Stop the jobs of owners silent for longer than ``stale_after_s``; returns them."""
        now = self.clock()
        with self._lock:
            stale_owners = {o for o, seen in self._last_seen.items() if now - seen > self.stale_after_s}
            stale = [j for j in self._jobs if j.owner in stale_owners and not j.stop_requested]
            for owner in stale_owners:
                if not any(j.owner == owner for j in self._jobs):
                    del self._last_seen[owner]
        minutes = self.stale_after_s / 60
        for job in stale:
            log.info("stopping abandoned training job %s of %s", job.name, job.owner)
            job.stop(f"stopped: no page open for {minutes:g} min,")
        return stale

    def _reap_loop(self) -> None:
        while not self._closed.wait(self.reap_every_s):
            try:
                self.reap()
            except Exception:
                log.exception("job reaper failed")

    def _ensure_reaper(self) -> None:
        if self.reap_every_s and self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_loop, name="job-reaper", daemon=True)
            self._reaper.start()

    def close(self) -> None:
        """Stop the reaper and every active job (tests, shutdown)."""
        self._closed.set()
        for job in self.active_jobs():
            job.stop("stopped: the app is shutting down")

    # --- submitting ----------------------------------------------------------------------------
    def _check_room(self, owner: str, count: int) -> None:
        mine = [j for j in self._jobs if j.owner == owner]
        if len(mine) + count > self.max_per_owner:
            raise ConfigError(f"you have {len(mine)} trainings running or waiting and at most "
                              f"{self.max_per_owner} are allowed; stop one or wait for it to finish")
        running = sum(1 for j in self._jobs if j.status == RUNNING)
        if not mine and running >= self.max_running:
            raise ConfigError(f"the machine is busy: {running} trainings are already running and at most "
                              f"{self.max_running} run at once here; try again when one has finished")

    def submit(self, *jobs: TrainingJob) -> None:
        """Start the jobs, or queue them behind the owner's running job; all or none.

        Raises ConfigError (with a message for the user) when there is no room.
        """
        if not jobs:
            return
        owners = {j.owner for j in jobs}
        if len(owners) != 1:
            raise ConfigError("jobs submitted together must belong to one owner")
        self.reap()
        with self._lock:
            self._check_room(jobs[0].owner, len(jobs))
            for job in jobs:
                if job.status != QUEUED:
                    raise ConfigError(f"{job.name} is {job.status}; only new or resumable jobs can start")
            self._last_seen[jobs[0].owner] = self.clock()
            reserved = []
            try:
                for job in jobs:   # each job's folder is taken while it waits: all or none
                    job.reserve()
                    reserved.append(job)
            except BaseException:
                for job in reserved:
                    job.release_folder()
                raise
            for job in jobs:
                job.add_done_callback(self._job_done)
                self._jobs.append(job)
            self._schedule()
        self._ensure_reaper()

    def resume(self, job: TrainingJob, train: Optional[TrainConfig] = None) -> None:
        """Continue a finished or stopped job's model folder (``train``: its new budget)."""
        self.reap()
        with self._lock:
            self._check_room(job.owner, 1)
            job.prepare_resume(train)
            job.reserve()
            self._last_seen[job.owner] = self.clock()
            if self._job_done not in job._done_callbacks:
                job.add_done_callback(self._job_done)
            self._jobs.append(job)
            self._schedule()
        self._ensure_reaper()

    def _schedule(self) -> None:
        """Start waiting jobs, oldest first, while there is room (the caller holds the lock)."""
        busy = {j.owner for j in self._jobs if j.status == RUNNING}
        running = sum(1 for j in self._jobs if j.status == RUNNING)
        for job in self._jobs:
            if running >= self.max_running:
                break
            if job.status == QUEUED and job.owner not in busy:
                job.start()
                if job.status == RUNNING:
                    busy.add(job.owner)
                    running += 1
        training = [j for j in self._jobs if j.status == RUNNING]
        for job in training:   # jobs start only here: each one's count of others is exact
            job.note_others_running(len(training) - 1)

    def _job_done(self, job: TrainingJob) -> None:
        with self._lock:
            if job in self._jobs:
                self._jobs.remove(job)
            self._schedule()


_registry: Optional[JobRegistry] = None
_registry_warnings: tuple[str, ...] = ()
_registry_lock = threading.Lock()


def _env_number(name: str, default: float, whole: bool) -> tuple[float, Optional[str]]:
    """The environment variable ``name`` as a number above 0 (a whole one when ``whole``), or
    ``default`` and a message saying what is wrong with it when it is set to anything else."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default, None
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        rule = "a whole number of at least 1" if whole else "a number of seconds above 0"
        return default, f"{name} must be {rule} (got {raw!r}); using the default, {default:g}"
    return value, None


def env_limits() -> tuple[int, float, list[str]]:
    """(trainings at once, seconds before an unfollowed job stops, what is wrong with the variables)
    from TEXTGEN_MAX_JOBS and TEXTGEN_JOB_TIMEOUT_S; a bad value falls back to its default."""
    max_running, bad_max = _env_number(MAX_RUNNING_ENV, DEFAULT_MAX_RUNNING, whole=True)
    stale, bad_stale = _env_number(STALE_AFTER_ENV, DEFAULT_STALE_AFTER_S, whole=False)
    return int(max_running), float(stale), [m for m in (bad_max, bad_stale) if m]


def get_registry() -> JobRegistry:
    """The process-wide registry (limits from TEXTGEN_MAX_JOBS and TEXTGEN_JOB_TIMEOUT_S; a bad
    value is logged, listed by ``registry_warnings`` and replaced by its default)."""
    global _registry, _registry_warnings
    with _registry_lock:
        if _registry is None:
            max_running, stale, warnings = env_limits()
            for warning in warnings:
                log.warning(warning)
            _registry, _registry_warnings = JobRegistry(max_running=max_running, stale_after_s=stale), tuple(warnings)
        return _registry


def registry_warnings() -> tuple[str, ...]:
    """What was wrong with the environment variables when the process-wide registry was made."""
    get_registry()
    return _registry_warnings
