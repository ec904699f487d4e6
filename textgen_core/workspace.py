"""A workspace: one user's runs, corpora and saved generations in one folder, found again from disk.

    runs/<workspace id>/                 (the app: one per user, the id kept in the page's address)
        workspace.json                   the small index: display names of runs, the user's choices
        corpora/<sha>.txt, <sha>.json    each corpus saved once as UTF-8; its original name is shown,
                                         never used as a path
        generations/<stamp>.json         saved generations
        <run folder>/                    model folders, named by the project; each holds status.json

Any folder of model folders is a workspace too: ``python -m textgen_core runs list --workspace runs``
lists what the command line trained there. A run's status is read from its ``status.json`` (written
atomically by the run itself), its results from ``run.json``, and whether it still runs from its
folder's lock: a run that says "running" while nobody holds its lock was killed, and is listed as
*interrupted* at the step of its last checkpoint.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeGuard

from . import checkpoint
from .corpus import Corpus
from .errors import ConfigError, ModelFolderError, TextgenError
from .files import MAX_CONFIG_BYTES, MAX_CORPUS_BYTES, read_bytes, read_json, size_text, write_json
from .outdir import CHECKPOINT_DIR, LOCK_FILE, inspect_folder, lock_is_held, remove_own_files
from .status import FAILED, FINISHED, RUNNING, STATUS_FILE, STOPPED, WAITING, read_status  # noqa: F401

WORKSPACE_ID = re.compile(r"[0-9a-f]{32}")      # 128 bits from secrets.token_hex(16)
INDEX_FILE = "workspace.json"
CORPORA_DIR = "corpora"
GENERATIONS_DIR = "generations"
RESERVED = (CORPORA_DIR, GENERATIONS_DIR)
QUOTA_ENV = "TEXTGEN_WORKSPACE_QUOTA_MB"
DEFAULT_QUOTA_MB = 2000
_INDEX_LOCK = ".workspace.lock"

INTERRUPTED = "interrupted"   # never written: found, when a run says it runs and holds no lock
BUDGET_REASONS = ("max_steps", "epochs", "time")


def new_workspace_id() -> str:
    return secrets.token_hex(16)


def valid_workspace_id(text: Any) -> TypeGuard[str]:
    """Whether ``text`` has the form of a workspace id (checked before it touches the disk)."""
    return isinstance(text, str) and bool(WORKSPACE_ID.fullmatch(text))


def quota_bytes() -> tuple[int, Optional[str]]:
    """The workspace quota from TEXTGEN_WORKSPACE_QUOTA_MB, and what is wrong with the variable."""
    raw = os.environ.get(QUOTA_ENV, "").strip()
    if not raw:
        return DEFAULT_QUOTA_MB * 1_000_000, None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        return DEFAULT_QUOTA_MB * 1_000_000, (f"{QUOTA_ENV} must be a number of megabytes above 0 (got "
                                              f"{raw!r}); using the default, {DEFAULT_QUOTA_MB}")
    return int(value * 1_000_000), None


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# --- a run, as read from its folder ------------------------------------------------------------------
@dataclass
class RunRecord:
    """One run of a workspace, read from disk: never more than its small files."""
    name: str                          # the folder's name (made by the project)
    path: Path
    display_name: str                  # the index's name for it (rename), else run.json's, else the folder's
    status: str                        # waiting | running | finished | stopped | failed | interrupted
    reason: Optional[str]              # the trainer's end reason (max_steps, early_stopping, stopped, ...)
    message: str                       # how it ended, or what it is doing
    step: int                          # the last step it recorded (for interrupted: its checkpoint's)
    created: str
    updated: str
    corpus: str = ""
    arch: str = ""
    tokenizer: str = ""
    parameters: Optional[int] = None
    best_val_loss: Optional[float] = None
    best_val_bpc: Optional[float] = None
    elapsed_s: Optional[float] = None
    has_model: bool = False            # model.safetensors is there: it can be sampled
    resumable: bool = False            # a checkpoint is there and nothing holds the folder
    info: dict = field(default_factory=dict, repr=False)   # run.json, checked

    @property
    def label(self) -> str:
        """The status in words, as the Runs page and ``runs list`` show it."""
        if self.status == FINISHED:
            return "stopped early" if self.reason == "early_stopping" else "budget reached"
        if self.status == STOPPED:
            by_user = not self.message or "by request" in self.message or "by the user" in self.message
            return "stopped by the user" if by_user else "stopped"
        return self.status

    @property
    def active(self) -> bool:
        return self.status in (WAITING, RUNNING)


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read_run(folder: Path, display_names: Optional[dict] = None) -> Optional[RunRecord]:
    """The run in ``folder``, or None when the folder holds no run of this project."""
    from .hub import read_run_info

    contents = inspect_folder(folder)
    if not contents.ours:
        return None
    status = read_status(folder)
    try:
        info = read_run_info(folder)
    except ModelFolderError:
        info = {}
    state = status.get("status") or (FINISHED if info.get("stop_reason") else INTERRUPTED)
    reason = status.get("reason") if isinstance(status.get("reason"), str) else info.get("stop_reason")
    message = status.get("message") if isinstance(status.get("message"), str) else info.get("stop_message", "")
    step = int(_number(status.get("step")) or info.get("steps") or 0)
    has_checkpoint = checkpoint.has_checkpoint(folder / CHECKPOINT_DIR)
    held = lock_is_held(folder)
    if state in (WAITING, RUNNING) and not held:     # its process is gone: killed, or the server stopped
        state = INTERRUPTED
        step = _checkpoint_step(folder) or 0
        message = (f"interrupted at step {step}: the training process ended without finishing; resume it "
                   "from its last checkpoint" if has_checkpoint else
                   "interrupted before its first checkpoint; start it again")
    corpus, tokenizer = info.get("corpus") or {}, info.get("tokenizer") or {}
    model = info.get("model") or status.get("model") or {}
    names = display_names or {}
    return RunRecord(
        name=folder.name, path=folder,
        display_name=names.get(folder.name) or info.get("name") or status.get("name") or folder.name,
        status=state, reason=reason, message=message or "", step=step,
        created=str(status.get("created") or info.get("created") or ""),
        updated=str(status.get("updated") or info.get("created") or ""),
        corpus=str(corpus.get("name") or status.get("corpus") or ""),
        arch=str(model.get("arch") or ""), tokenizer=str(tokenizer.get("type") or status.get("tokenizer") or ""),
        parameters=info.get("parameters") or status.get("parameters"),
        best_val_loss=_number(info.get("best_val_loss", status.get("best_val_loss"))),
        best_val_bpc=_number(info.get("best_val_bpc", status.get("best_val_bpc"))),
        elapsed_s=_number(info.get("elapsed_s", status.get("elapsed_s"))),
        has_model=(folder / "model.safetensors").is_file(),
        resumable=has_checkpoint and not held and state not in (WAITING, RUNNING), info=info)


def run_history(folder: Path) -> list[dict]:
    """A run's reports so far: its history.jsonl once written, else its last checkpoint's."""
    from .hub import read_history

    if (Path(folder) / "history.jsonl").is_file():
        return read_history(folder)
    try:
        return list(checkpoint.read_state(Path(folder) / CHECKPOINT_DIR)["history"])
    except (TextgenError, OSError):
        return []


def _checkpoint_step(folder: Path) -> Optional[int]:
    try:
        return int(checkpoint.read_state(folder / CHECKPOINT_DIR)["step"])
    except (TextgenError, OSError, KeyError, TypeError, ValueError):
        return None


# --- the workspace ----------------------------------------------------------------------------------
class Workspace:
    """A folder of runs (and, for the app, of corpora and generations) with a small index."""

    def __init__(self, root: str | Path, workspace_id: Optional[str] = None) -> None:
        self.root = Path(root)
        self.id = workspace_id or self.root.name

    # --- finding one ---------------------------------------------------------------------------------
    @classmethod
    def for_app(cls, base: str | Path, requested: Optional[str]) -> tuple["Workspace", bool]:
        """The workspace ``requested`` in the page's address when it exists under ``base``, else a new
        one (a missing, malformed or unknown id never reaches the disk and never errors). Returns the
        workspace and whether it is new."""
        base = Path(base)
        if valid_workspace_id(requested) and (base / requested / INDEX_FILE).is_file():
            return cls(base / requested, requested), False
        workspace_id = new_workspace_id()
        workspace = cls(base / workspace_id, workspace_id)
        workspace.create()
        return workspace, True

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.root / INDEX_FILE).is_file():
            write_json(self.root / INDEX_FILE, {"id": self.id, "created": now_text(), "names": {}, "state": {}})

    # --- the index -------------------------------------------------------------------------------------
    def index(self) -> dict:
        try:
            value = read_json(self.root / INDEX_FILE, MAX_CONFIG_BYTES)
        except (OSError, TextgenError):
            value = {}
        names = value.get("names") if isinstance(value.get("names"), dict) else {}
        state = value.get("state") if isinstance(value.get("state"), dict) else {}
        return {**value, "names": {k: v for k, v in names.items() if isinstance(v, str)}, "state": state}

    @contextmanager
    def _editing(self) -> Iterator[dict]:
        """The index, read and written back under a lock (two tabs may change it at once)."""
        self.create()
        with open(self.root / _INDEX_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = self.index()
            yield index
            write_json(self.root / INDEX_FILE, index)

    def state(self) -> dict:
        """The user's choices saved for the next visit (corpus, tokenizer, chosen model, ...)."""
        return dict(self.index()["state"])

    def update_state(self, **values: Any) -> None:
        with self._editing() as index:
            index["state"].update(values)

    # --- runs ------------------------------------------------------------------------------------------
    def run_folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [entry for entry in self.root.iterdir() if entry.is_dir() and not entry.is_symlink()
                and entry.name not in RESERVED and not entry.name.startswith(".")]

    def runs(self) -> list[RunRecord]:
        """Every run of the workspace, newest first."""
        names = self.index()["names"]
        records = [record for folder in self.run_folders() if (record := read_run(folder, names)) is not None]
        return sorted(records, key=lambda r: (r.created, r.name), reverse=True)

    def run(self, name: str) -> RunRecord:
        """The run named ``name`` (its folder's name or its display name)."""
        folder = self._folder(name)
        record = read_run(folder, self.index()["names"]) if folder is not None else None
        if record is None:
            raise ConfigError(f"no run '{name}' in {self.root}; `python -m textgen_core runs list --workspace "
                              f"{self.root}` lists them")
        return record

    def _folder(self, name: str) -> Optional[Path]:
        if isinstance(name, str) and name and "/" not in name and name not in (".", "..") \
                and (self.root / name).is_dir() and name not in RESERVED:
            return self.root / name
        by_display = [f for f, shown in self.index()["names"].items() if shown == name]
        return self.root / by_display[0] if len(by_display) == 1 and (self.root / by_display[0]).is_dir() else None

    def rename_run(self, name: str, display_name: str) -> None:
        record = self.run(name)
        display_name = " ".join(str(display_name).split())[:120]
        if not display_name:
            raise ConfigError("a run's name cannot be empty")
        with self._editing() as index:
            index["names"][record.name] = display_name

    def delete_run(self, name: str) -> None:
        """Delete a run's folder (the project's files in it; anything else stays). A run that is
        training is refused: stop it first."""
        folder = self._folder(name)
        if folder is not None and lock_is_held(folder):   # checked first: a job just started has no record yet
            shown = self.index()["names"].get(folder.name, folder.name)
            raise ConfigError(f"{shown} is training; stop it first, then delete it")
        record = self.run(name)
        remove_own_files(record.path, inspect_folder(record.path))
        for leftover in (LOCK_FILE, ".textgen-files.json"):
            (record.path / leftover).unlink(missing_ok=True)
        try:
            record.path.rmdir()
        except OSError:
            pass   # it holds files the project did not write: they stay
        with self._editing() as index:
            index["names"].pop(record.name, None)

    # --- disk use ------------------------------------------------------------------------------------
    def disk_usage(self) -> int:
        total = 0
        stack = [self.root]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:   # a training run's temporary file, renamed or removed meanwhile
                    continue
        return total

    def run_sizes(self) -> list[tuple[str, int]]:
        """(display name, bytes) of each run, largest first."""
        names = self.index()["names"]
        sizes = [(names.get(f.name, f.name), Workspace(f).disk_usage()) for f in self.run_folders()]
        return sorted(sizes, key=lambda item: -item[1])

    def check_quota(self) -> None:
        """Refuse (ConfigError) a new run when the workspace has used its quota, naming what to delete."""
        quota, _ = quota_bytes()
        used = self.disk_usage()
        if used < quota:
            return
        largest = ", ".join(f"{name} ({size_text(size)})" for name, size in self.run_sizes()[:3])
        raise ConfigError(f"this workspace uses {size_text(used)} of its {size_text(quota)}; delete runs you no "
                          f"longer need on the Runs page first" + (f" (the largest: {largest})" if largest else ""))

    # --- corpora ---------------------------------------------------------------------------------------
    def save_corpus(self, corpus: Corpus) -> str:
        """Save the corpus once (as UTF-8, by its fingerprint); returns its key."""
        key = corpus.sha256[:32]
        folder = self.root / CORPORA_DIR
        if not (folder / f"{key}.json").is_file():
            from .files import atomic_write_text
            atomic_write_text(folder / f"{key}.txt", corpus.text)
            write_json(folder / f"{key}.json", {"name": corpus.name, "encoding": corpus.encoding,
                                                "chars": len(corpus.text), "sha256": corpus.sha256,
                                                "added": now_text()})
        return key

    def corpora(self) -> list[dict]:
        """The saved corpora's descriptions ({"key", "name", "chars", ...}), newest first."""
        folder, found = self.root / CORPORA_DIR, []
        for meta in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                value = read_json(meta, MAX_CONFIG_BYTES)
            except (OSError, TextgenError):
                continue
            if isinstance(value.get("name"), str) and isinstance(value.get("sha256"), str):
                found.append({**value, "key": meta.stem})
        return sorted(found, key=lambda item: str(item.get("added", "")), reverse=True)

    def load_corpus(self, key: str) -> Corpus:
        """A saved corpus by its key (or its full SHA-256)."""
        key = str(key)[:32]
        if not re.fullmatch(r"[0-9a-f]{32}", key):
            raise ConfigError(f"'{key}' is not a corpus of this workspace")
        folder = self.root / CORPORA_DIR
        try:
            meta = read_json(folder / f"{key}.json", MAX_CONFIG_BYTES)
            text = read_bytes(folder / f"{key}.txt", MAX_CORPUS_BYTES).decode("utf-8")
        except (FileNotFoundError, UnicodeDecodeError, TextgenError) as exc:
            raise ConfigError(f"the corpus {key} is not (or no longer) in this workspace") from exc
        return Corpus(text=text, encoding=str(meta.get("encoding") or "utf-8"), name=str(meta.get("name") or key))

    # --- generations -------------------------------------------------------------------------------------
    def save_generation(self, record: dict) -> Path:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")   # microseconds: newest first by name
        path = self.root / GENERATIONS_DIR / f"{stamp}-{secrets.token_hex(3)}.json"
        write_json(path, {"created": now_text(), **record})
        return path

    def generations(self, limit: int = 50) -> list[dict]:
        folder = self.root / GENERATIONS_DIR
        found = []
        for path in sorted(folder.glob("*.json"), reverse=True)[:limit] if folder.is_dir() else []:
            try:
                found.append({**read_json(path, MAX_CONFIG_BYTES), "file": path.name})
            except (OSError, TextgenError):
                continue
        return found


def new_run_folder(workspace: Workspace, label: str) -> Path:
    """A fresh folder name for a run: the project's label and the time, never a user's file name."""
    from .jobs import safe_name

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = safe_name(label)[:60]
    for n in range(1, 10_000):
        folder = workspace.root / f"{base}-{stamp}-{n}"
        if not folder.exists():
            return folder
    raise ConfigError("could not find a free folder name for the run")

