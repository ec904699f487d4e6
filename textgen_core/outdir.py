"""A training run's output folder: which of its files this project wrote, and who is writing it now.

Two small files make a folder safe to write:
- ``.textgen-files.json`` lists the names the project claimed in the folder before writing them.
  Anything else in the folder is the user's: a run refuses a folder that holds such files unless
  told to overwrite, and even then deletes none of them (files of the project's names are replaced).
- ``.textgen.lock`` is held with an exclusive ``flock`` for the whole run and names the process.
  A second run into the same folder is refused; the kernel drops the lock when its process dies,
  so the lock of a killed run is stale at once and the next run takes it.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import ConfigError, UnsafeFileError
from .files import MAX_CONFIG_BYTES, read_json, temp_pattern, write_failure, write_json

MANIFEST_FILE = ".textgen-files.json"
LOCK_FILE = ".textgen.lock"
CHECKPOINT_DIR = "checkpoint"
# Every name a run writes into its folder ("tokenizer.json": the tokenizer's name in older folders).
RUN_FILES = ("config.json", "model.safetensors", "textgen_tokenizer.json", "tokenizer.json", "tokenizer.model",
             "history.jsonl", "run.json", "README.md", "status.json", "samples.jsonl", CHECKPOINT_DIR)
BOOKKEEPING = (MANIFEST_FILE, LOCK_FILE, ".textgen-rank-failure.json")


def read_claimed(folder: Path) -> Optional[set[str]]:
    """The names the project claimed in ``folder``; None when it has no manifest (or a broken one)."""
    try:
        manifest = read_json(folder / MANIFEST_FILE, MAX_CONFIG_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnsafeFileError):
        return None
    names = manifest.get("files")
    if not isinstance(names, list):
        return None
    return {n for n in names if isinstance(n, str) and n in RUN_FILES}


def claim(folder: Path, names: set[str]) -> None:
    """Record ``names`` as the project's in the folder's manifest (before they are written)."""
    claimed = (read_claimed(folder) or set()) | set(names)
    write_json(folder / MANIFEST_FILE, {"files": sorted(claimed)})


def _is_bookkeeping(name: str, claimed: set[str]) -> bool:
    """The manifest, the lock, and the temporary files of interrupted saves of the project's files."""
    if name in BOOKKEEPING:
        return True
    return any(temp_pattern(Path(own)).fullmatch(name) for own in (*claimed, *BOOKKEEPING))


def _legacy_run(folder: Path, entries: list[str]) -> bool:
    """A run folder written before manifests: only the project's names, a config and a checkpoint."""
    return (bool(entries) and all(name in RUN_FILES for name in entries) and "config.json" in entries
            and (folder / CHECKPOINT_DIR / "resume.json").is_file())


@dataclass
class FolderContents:
    """What is in an output folder, from the project's point of view."""
    exists: bool
    ours: set[str]          # entries the project wrote (claimed, or a legacy run's)
    foreign: list[str]      # entries the project did not write: never deleted
    has_checkpoint: bool    # a resumable run is here

    @property
    def empty(self) -> bool:
        return not self.ours and not self.foreign


def inspect_folder(folder: Path) -> FolderContents:
    if not folder.exists():
        return FolderContents(False, set(), [], False)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file, not a folder; choose a folder for the model")
    entries = sorted(os.listdir(folder))
    claimed = read_claimed(folder)
    if claimed is None and _legacy_run(folder, entries):
        claimed = set(entries)
    claimed = claimed or set()
    ours = {name for name in entries if name in claimed}
    foreign = [name for name in entries if name not in claimed and not _is_bookkeeping(name, claimed)]
    has_checkpoint = CHECKPOINT_DIR in ours and (folder / CHECKPOINT_DIR).is_dir() and any(
        (folder / CHECKPOINT_DIR).iterdir())
    return FolderContents(True, ours, foreign, has_checkpoint)


def remove_own_files(folder: Path, contents: FolderContents, keep: frozenset[str] = frozenset()) -> None:
    """Delete the project's files (but those in ``keep``) and the leftovers of interrupted saves; the
    user's stay."""
    claimed = read_claimed(folder) or set(contents.ours)
    for name in os.listdir(folder):
        path = folder / name
        if name in keep:
            continue
        if name in contents.ours or (name not in BOOKKEEPING and _is_bookkeeping(name, claimed)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def remove_temp_files(folder: Path) -> None:
    """Delete what interrupted saves left in the folder (the caller holds its lock)."""
    claimed = read_claimed(folder) or set()
    for name in os.listdir(folder):
        if name not in BOOKKEEPING and _is_bookkeeping(name, claimed):
            (folder / name).unlink(missing_ok=True)


class FolderLock:
    """An exclusive lock on an output folder, held from preparing a run to writing its last file."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise write_failure(self.path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise ConfigError(f"{self.folder} is being written by another training ({holder}); wait for "
                                  "it to finish or choose another output folder") from None
            # The holder before us may have removed the file between our open and our lock: then
            # the lock is on a file nobody else will see, so take the new one instead.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                         f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        except OSError as exc:  # a full disk or a file-size limit: nothing else could be written either
            self.release()
            raise write_failure(self.path, exc) from exc
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: the next run makes a new one
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def lock_is_held(folder: Path) -> bool:
    """Whether a run holds ``folder``'s lock now (a process that died holds none). The probe takes
    the lock for an instant when it is free, and creates no file."""
    try:
        fd = os.open(Path(folder) / LOCK_FILE, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)   # closing drops a lock this probe took
    return False
