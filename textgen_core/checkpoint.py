"""Resume checkpoints in safetensors + JSON only, each written as one atomic unit.

A checkpoint folder holds one complete unit and a pointer to it:

    checkpoint/latest.json                  {"unit": "step-000000120-3fa2c1", "step": 120}
    checkpoint/step-000000120-3fa2c1/
        resume.safetensors                  model weights, optimizer tensors, RNG states
        resume.json                         step, history, optimizer scalars, best score, the run's identity
        best.safetensors                    the best-validation weights so far

A new unit is written beside the old one, flushed to disk, and only then does ``latest.json`` (one
atomic rename) point at it; then the old unit is removed. A process killed, or a disk that fills
up, at any moment leaves the previous unit whole and pointed at: never the best weights of step 20
beside a state saying step 10. Folders written before units (the three files directly in
``checkpoint/``) still resume.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from .errors import ModelFolderError, TextgenError, UnsafeFileError, WriteError
from .files import (  # noqa: F401
    MAX_CONFIG_BYTES,
    MAX_STATE_BYTES,
    STALE_TMP_AGE_S,
    atomic_write,
    atomic_write_text,
    dumps,
    fsync_folder,
    inside,
    read_json,
    remove_stale_temps,
    temp_pattern,
    write_failure,
    write_json,
)

RESUME_TENSORS = "resume.safetensors"
RESUME_STATE = "resume.json"
BEST_TENSORS = "best.safetensors"
LATEST_FILE = "latest.json"
UNIT_NAME = re.compile(r"step-\d{9}-[0-9a-f]{6}")
ANY_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")   # what an interrupted atomic write leaves


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


# --- units -----------------------------------------------------------------------------------
def _write_file(path: Path, write) -> None:
    """Write a file of a unit in progress and flush it to disk (the unit itself is the atomic step)."""
    write(str(path))
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _current_unit(folder: Path) -> Optional[Path]:
    """The unit ``latest.json`` points at (None: no pointer)."""
    pointer = folder / LATEST_FILE
    if not pointer.exists():
        return None
    try:
        latest = read_json(pointer, MAX_CONFIG_BYTES)
    except (OSError, UnsafeFileError) as exc:
        raise ModelFolderError(f"{pointer} is damaged ({exc}); the checkpoint cannot be resumed: start the "
                               "run again (--overwrite)") from exc
    name = latest.get("unit")
    if not isinstance(name, str) or not UNIT_NAME.fullmatch(name) or not (folder / name).is_dir():
        raise ModelFolderError(f"{pointer} points at no complete checkpoint ({name!r}); start the run again "
                               "(--overwrite)")
    return inside(folder, name)


def has_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds a checkpoint to resume (a unit, or the files of the older layout)."""
    return (folder / LATEST_FILE).is_file() or (folder / RESUME_STATE).is_file()


def remove_stale_units(folder: Path, keep: Optional[Path] = None) -> None:
    """Delete the units ``latest.json`` does not point at (older ones, and half-written ones a killed
    process or a full disk left) and leftover temporary files. The caller holds the folder's lock."""
    keep = keep or (_current_unit(folder) if (folder / LATEST_FILE).exists() else None)
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if UNIT_NAME.fullmatch(entry.name) and entry.is_dir() and (keep is None or entry.name != keep.name):
            shutil.rmtree(entry, ignore_errors=True)
        elif ANY_TEMP.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)


def write_resume(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any],
                 best: Optional[dict[str, torch.Tensor]] = None, best_changed: bool = True) -> None:
    """Write a new checkpoint unit for ``state["step"]`` and point ``latest.json`` at it.

    ``best`` (the best weights) is written when ``best_changed``; otherwise the previous unit's file
    is linked into the new one. On failure (a full disk) the previous unit stays current and a
    WriteError says so.
    """
    folder = Path(folder)
    previous = _current_unit(folder) if (folder / LATEST_FILE).exists() else None
    unit = folder / f"step-{int(state.get('step', 0)):09d}-{secrets.token_hex(3)}"
    try:
        unit.mkdir(parents=True)
        cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        _write_file(unit / RESUME_TENSORS, lambda path: save_file(cpu, path))
        if best is not None:
            _write_best(unit, best, None if best_changed else previous)
        _write_file(unit / RESUME_STATE, lambda path: Path(path).write_text(dumps(state), encoding="utf-8"))
        fsync_folder(unit)
    except TextgenError:
        shutil.rmtree(unit, ignore_errors=True)
        raise
    except Exception as exc:  # OSError, or safetensors' own error type for a failed write
        shutil.rmtree(unit, ignore_errors=True)
        kept = f"; the checkpoint of step {_unit_step(previous)} is kept" if previous else ""
        raise WriteError(f"{write_failure(unit, exc)}{kept}") from exc
    write_json(folder / LATEST_FILE, {"unit": unit.name, "step": int(state.get("step", 0))})
    fsync_folder(folder)
    remove_stale_units(folder, keep=unit)


def _write_best(unit: Path, best: dict[str, torch.Tensor], previous: Optional[Path]) -> None:
    source = previous / BEST_TENSORS if previous is not None else None
    if source is not None and source.is_file():
        try:
            os.link(source, unit / BEST_TENSORS)  # unchanged: the same bytes, no second copy
            return
        except OSError:
            shutil.copyfile(source, unit / BEST_TENSORS)
            return
    cpu = {k: v.detach().to("cpu").contiguous().clone() for k, v in best.items()}
    _write_file(unit / BEST_TENSORS, lambda path: save_file(cpu, path))


def _unit_step(unit: Optional[Path]) -> Optional[int]:
    return int(unit.name.split("-")[1]) if unit is not None else None


# What resume.json must hold, and of which types (bool is not a number here).
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "step": (int,), "elapsed": (int, float), "optimizer": (dict,), "history": (list,),
    "best_step": (int, type(None)), "best_val_loss": (int, float, type(None)),
}


def _check_state(state: dict, path: Path) -> dict:
    for name, types in STATE_FIELDS.items():
        if name not in state:
            raise ModelFolderError(f"{path} is incomplete: it has no '{name}'; the checkpoint is damaged: "
                                   "start the run again (--overwrite)")
        value = state[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ModelFolderError(f"{path}: '{name}' has the wrong type ({type(value).__name__}); the "
                                   "checkpoint is damaged: start the run again (--overwrite)")
    optimizer = state["optimizer"]
    if not isinstance(optimizer.get("param_groups"), list) or not isinstance(optimizer.get("state"), dict):
        raise ModelFolderError(f"{path}: the optimizer state is incomplete; the checkpoint is damaged: start "
                               "the run again (--overwrite)")
    if state["step"] < 0 or (state["best_step"] is None) != (state["best_val_loss"] is None):
        raise ModelFolderError(f"{path} contradicts itself (step {state['step']}, best step "
                               f"{state['best_step']}); start the run again (--overwrite)")
    if not all(isinstance(point, dict) for point in state["history"]):
        raise ModelFolderError(f"{path}: its history is damaged; start the run again (--overwrite)")
    return state


def read_state(folder: Path) -> dict[str, Any]:
    """The checked ``resume.json`` of the current checkpoint unit (no tensors are read)."""
    folder = Path(folder)
    state_path = inside(_current_unit(folder) or folder, RESUME_STATE)
    if not state_path.is_file():
        raise ModelFolderError(f"nothing to resume in {folder}: {RESUME_STATE} is missing")
    try:
        return _check_state(read_json(state_path, MAX_STATE_BYTES), state_path)
    except UnsafeFileError as exc:
        raise ModelFolderError(f"{exc}; the checkpoint is damaged: start the run again (--overwrite)") from exc


def read_resume(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], Optional[dict[str, torch.Tensor]]]:
    """(tensors, state, best weights or None) of the current checkpoint unit, every file checked."""
    folder = Path(folder)
    unit = _current_unit(folder) or folder   # the older layout keeps the files in the folder itself
    state = read_state(folder)
    tensors = load_tensors(inside(unit, RESUME_TENSORS))
    best = load_tensors(inside(unit, BEST_TENSORS)) if state["best_step"] is not None else None
    return tensors, state, best
