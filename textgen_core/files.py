"""Reading and writing the project's files safely: regular files only, size caps, strict JSON,
atomic writes, and no symlink that leads out of a model folder.

Every file the engine reads from a folder or a user's path goes through ``read_bytes`` (or the
helpers on top of it): a FIFO, a device such as /dev/zero or a socket is refused instead of
blocking or filling memory, and a file above its cap is refused with its size. Every JSON file
the engine writes goes through ``write_json``: strict JSON (``allow_nan=False``; NaN and
infinities become ``null``), written to a temporary name and renamed into place.

This module imports neither torch nor anything of the engine but its errors, so that every layer
(tokenizers, corpus, checkpoints, model folders) can use it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from .errors import TextgenError, UnsafeFileError, WriteError

# Caps on what one file may hold before it is refused (bytes).
MAX_CONFIG_BYTES = 1 << 20        # config.json, run.json, catalog.json, tokenizer settings
MAX_TOKENIZER_BYTES = 64 << 20    # textgen_tokenizer.json / tokenizer.model (a 100k-word vocabulary is ~2 MB)
MAX_STATE_BYTES = 256 << 20       # checkpoint/resume.json (holds the run's history)
MAX_HISTORY_BYTES = 16 << 20      # history.jsonl: only its last 16 MB are read
MAX_CARD_BYTES = 4 << 20          # README.md
MAX_CORPUS_BYTES = 1 << 30        # a training text
STALE_TMP_AGE_S = 60.0            # a temporary file untouched this long belongs to no save in progress


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def size_text(n_bytes: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= size:
            return f"{n_bytes / size:.1f} {unit}"
    return f"{int(n_bytes)} bytes"


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """An open descriptor of the regular file ``path`` and its status; a FIFO is opened non-blocking,
    so that refusing it never waits for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnsafeFileError(f"{path} is {_kind(info.st_mode)}, not a regular file; only regular "
                              "files are read")
    os.set_blocking(fd, True)
    return fd, info


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_bytes(path: str | Path, max_bytes: int, tail: bool = False) -> bytes:
    """The bytes of the regular file at ``path`` (symlinks to regular files are followed).

    Raises FileNotFoundError when it does not exist, UnsafeFileError when it is a FIFO, a device,
    a socket or a folder (checked without blocking: a FIFO is opened non-blocking), or larger than
    ``max_bytes``; with ``tail`` a larger file gives its last ``max_bytes`` bytes instead.
    """
    path = Path(path)
    fd, info = _open_regular(path)
    try:
        if info.st_size > max_bytes:
            if not tail:
                raise UnsafeFileError(f"{path} is {size_text(info.st_size)}, more than the "
                                      f"{size_text(max_bytes)} such a file may hold")
            os.lseek(fd, info.st_size - max_bytes, os.SEEK_SET)
        data = _read_up_to(fd, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # the file grew while it was read
        if not tail:
            raise UnsafeFileError(f"{path} is more than the {size_text(max_bytes)} such a file may hold")
        data = data[-max_bytes:]
    return data


def read_prefix(path: str | Path, n_bytes: int) -> tuple[bytes, int]:
    """(at most the first ``n_bytes`` bytes, the whole size) of the regular file at ``path``:
    a file's header without reading the rest. Refuses what ``read_bytes`` refuses, the same way."""
    fd, info = _open_regular(Path(path))
    try:
        return _read_up_to(fd, min(n_bytes, info.st_size)), info.st_size
    finally:
        os.close(fd)


def _no_constants(name: str) -> None:
    return None  # NaN, Infinity and -Infinity read as null: strict JSON has no such numbers


def parse_json(text: str, origin: str) -> Any:
    """``json.loads`` that turns NaN/Infinity into None and every failure into UnsafeFileError."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise UnsafeFileError(f"{origin} is nested too deeply to be a file this project wrote") from None
    except ValueError as exc:
        raise UnsafeFileError(f"{origin} is not valid JSON ({exc})") from None


def read_json(path: str | Path, max_bytes: int = MAX_CONFIG_BYTES, expect: type = dict) -> Any:
    """The JSON value in the regular file ``path``, which must be a ``expect`` (dict by default)."""
    path = Path(path)
    try:
        text = read_bytes(path, max_bytes).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFileError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    value = parse_json(text, str(path))
    if not isinstance(value, expect):
        raise UnsafeFileError(f"{path} must hold a JSON {'object' if expect is dict else expect.__name__}, "
                              f"not {type(value).__name__}")
    return value


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (recursively), for strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value: Any, **options) -> str:
    """Strict JSON text of ``value``: NaN and infinities become null, never bare ``NaN``."""
    return json.dumps(json_safe(value), allow_nan=False, **options)


# --- paths inside a folder --------------------------------------------------------------------
def _allowed_roots(folder: Path) -> list[Path]:
    """Where files of ``folder`` may really live: the folder itself, and for a Hugging Face cache
    snapshot (``models--owner--name/snapshots/<hash>``) the repo's ``blobs`` folder, which the
    snapshot's files link to."""
    real = folder.resolve()
    roots = [real]
    if real.parent.name == "snapshots" and real.parent.parent.name.startswith("models--"):
        roots.append(real.parent.parent / "blobs")
    return roots


def inside(folder: str | Path, name: str) -> Path:
    """``folder / name``, refused (UnsafeFileError) when a symlink takes it out of the folder."""
    folder = Path(folder)
    path = folder / name
    real = path.resolve()
    if not any(real == root or root in real.parents for root in _allowed_roots(folder)):
        raise UnsafeFileError(f"{path} is a symlink that leads out of {folder} (to {real}); "
                              "model folders must hold their own files")
    return path


# --- writing ------------------------------------------------------------------------------------
def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any saving thread
    os.umask(mask)
    return mask


_UMASK = _read_umask()
_ERRNO_WORDS: dict[Optional[int], str] = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the folder is on a read-only file system", errno.EACCES: "permission denied",
    errno.EPERM: "permission denied", errno.EFBIG: "the file is larger than this system allows"}


def write_failure(path: Path, exc: BaseException) -> WriteError:
    """A WriteError saying in words why ``path`` could not be written."""
    number = getattr(exc, "errno", None)
    if number is None:  # e.g. safetensors' own error type, which carries the OS error in its text
        found = re.search(r"(?:code: |os error )(\d+)", str(exc))
        number = int(found.group(1)) if found else None
    reason = _ERRNO_WORDS.get(number) or (getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]
                                          if str(exc) else type(exc).__name__)
    return WriteError(f"could not write {path}: {reason}")


def temp_pattern(path: Path) -> re.Pattern:
    """The names ``atomic_write`` gives its temporary files for ``path``: mkstemp's ``.<name>.<8 random
    characters>.tmp``."""
    return re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")


def remove_stale_temps(path: Path, older_than_s: float = STALE_TMP_AGE_S) -> list[Path]:
    """Delete the temporary files that interrupted saves of ``path`` left beside it; returns them.

    Only names of ``temp_pattern(path)`` are touched, and only when older than ``older_than_s``, so
    that a save of the same file still running elsewhere keeps its temporary file.
    """
    pattern = temp_pattern(path)
    removed: list[Path] = []
    cutoff = time.time() - older_than_s
    try:
        candidates = [p for p in path.parent.iterdir() if pattern.fullmatch(p.name)]
    except OSError:
        return removed
    for candidate in candidates:
        try:
            if candidate.is_file() and not candidate.is_symlink() and candidate.stat().st_mtime < cutoff:
                candidate.unlink()
                removed.append(candidate)
        except OSError:  # gone meanwhile, or not ours to delete: the save goes on
            pass
    return removed


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename it over ``path``; then remove the temporary
    files that earlier, interrupted saves of ``path`` left. A failure leaves ``path`` as it was and
    raises WriteError (full disk, read-only folder) naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise write_failure(path, exc) from exc
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except TextgenError:
        raise
    except Exception as exc:  # OSError, or a writer's own error type (safetensors) wrapping one
        raise write_failure(path, exc) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    remove_stale_temps(path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, value: Any, indent: Optional[int] = 2) -> None:
    """``value`` as strict JSON (NaN as null), written atomically."""
    atomic_write_text(path, dumps(value, indent=indent, ensure_ascii=False))


def write_jsonl(path: Path, rows: list) -> None:
    """One strict JSON object per line, written atomically."""
    atomic_write_text(path, "".join(dumps(row, ensure_ascii=False) + "\n" for row in rows))


def fsync_folder(folder: Path) -> None:
    """Make renames inside ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
