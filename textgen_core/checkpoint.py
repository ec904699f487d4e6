"""Resume checkpoints in safetensors + JSON only, each file written atomically.

A checkpoint folder holds ``resume.safetensors`` (model weights, optimizer tensors, RNG states)
and ``resume.json`` (step, history, optimizer scalars, best score). Every file goes to a temporary
name first and is renamed into place, so a process killed mid-save leaves the previous one intact;
the temporary files such a kill leaves behind are removed by the next save of the same file.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ModelFolderError
from .files import (STALE_TMP_AGE_S, atomic_write, atomic_write_text, remove_stale_temps,  # noqa: F401
                    temp_pattern)

RESUME_TENSORS = "resume.safetensors"
RESUME_STATE = "resume.json"
BEST_TENSORS = "best.safetensors"


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
