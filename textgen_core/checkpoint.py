"""Resume checkpoints in safetensors + JSON only, each file written atomically.

A checkpoint folder holds ``resume.safetensors`` (model weights, optimizer tensors, RNG states)
and ``resume.json`` (step, history, optimizer scalars, best score). Every file goes to a temporary
name first and is renamed into place, so a process killed mid-save leaves the previous one intact;
the temporary files such a kill leaves behind are removed by the next save of the same file.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from .errors import ModelFolderError

RESUME_TENSORS = "resume.safetensors"
RESUME_STATE = "resume.json"
BEST_TENSORS = "best.safetensors"
STALE_TMP_AGE_S = 60.0  # a temporary file untouched this long belongs to no save in progress


def temp_pattern(path: Path) -> re.Pattern:
    """The names ``atomic_write`` gives its temporary files for ``path``: mkstemp's ``.<name>.<8 random
    characters>.tmp``."""
    return re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")


def remove_stale_temps(path: Path, older_than_s: float = STALE_TMP_AGE_S) -> list[Path]:
    """Delete the temporary files that interrupted saves of ``path`` left beside it; returns them.

    Only names of ``temp_pattern(path)`` are touched, and only when older than ``older_than_s``, so
    that a save of the same file still running elsewhere keeps its temporary file.
    """
    pattern, removed = temp_pattern(path), []
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


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any saving thread
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, fsync it, then rename it over ``path``; then remove the temporary
    files that earlier, interrupted saves of ``path`` left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    remove_stale_temps(path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """safetensors needs contiguous, unshared CPU tensors: clone them on the way out."""
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelFolderError(f"{path} is missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ModelFolderError(f"{path} is not a readable safetensors file ({exc})") from exc


def optimizer_to_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON-able scalars."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars["state"].setdefault(str(index), {})[name] = value
    return tensors, scalars


def optimizer_from_flat(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in scalars["state"].items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": scalars["param_groups"]}


def write_resume(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Tensors first, then the JSON that refers to them: a crash between leaves the old JSON."""
    save_tensors(folder / RESUME_TENSORS, tensors)
    atomic_write_text(folder / RESUME_STATE, json.dumps(state))


def read_resume(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state_path = folder / RESUME_STATE
    if not state_path.is_file():
        raise ModelFolderError(f"nothing to resume in {folder}: {RESUME_STATE} is missing")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{state_path} is not valid JSON ({exc})") from exc
    return load_tensors(folder / RESUME_TENSORS), state
