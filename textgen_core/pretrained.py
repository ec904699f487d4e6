"""Pretrained models: a Hub repo id each, with the copy in ``pretrained/`` as the offline default.

The catalog is ``pretrained/catalog.json`` (a list of {"name", "repo_id", "folder", "description"});
``TEXTGEN_PRETRAINED_DIR`` points elsewhere and ``TEXTGEN_HUB_OWNER`` swaps the owner of every
default repo id, so a fork can publish its own copies without editing code.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import hub
from .errors import HubError, ModelFolderError

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
CATALOG_FILE = "catalog.json"


@dataclass(frozen=True)
class PretrainedEntry:
    name: str          # short name used in the app and on the command line
    repo_id: str       # where it lives on the Hub
    folder: Path       # the bundled copy
    description: str = ""


def pretrained_dir() -> Path:
    return Path(os.environ.get("TEXTGEN_PRETRAINED_DIR", PRETRAINED_DIR))


def catalog(directory: Optional[Path] = None) -> list[PretrainedEntry]:
    """The known pretrained models whose bundled folder holds weights (an empty list when none do)."""
    directory = directory or pretrained_dir()
    path = directory / CATALOG_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelFolderError(f"{path} is not valid JSON ({exc})") from exc
    owner = os.environ.get("TEXTGEN_HUB_OWNER")
    result = []
    for entry in entries:
        repo_id = entry["repo_id"]
        if owner:
            repo_id = f"{owner}/{repo_id.split('/', 1)[1]}"
        folder = (directory / entry["folder"]).resolve()
        if folder.parent != directory.resolve():
            raise ModelFolderError(f"{path}: folder '{entry['folder']}' must be directly inside {directory}")
        if (folder / hub.WEIGHTS_FILE).is_file():
            result.append(PretrainedEntry(entry["name"], repo_id, folder, entry.get("description", "")))
    return result


def find(name: str, directory: Optional[Path] = None) -> Optional[PretrainedEntry]:
    return next((e for e in catalog(directory) if name in (e.name, e.repo_id)), None)


def load_pretrained(entry: PretrainedEntry, prefer_hub: bool = True,
                    device: str = "cpu") -> tuple[hub.Bundle, str]:
    """The model from the Hub (cache first) or, when the Hub fails, the bundled copy.

    Returns the bundle and a sentence saying where it came from.
    """
    if prefer_hub:
        try:
            bundle = hub.load_folder(hub.download(entry.repo_id), device)
            bundle.source = entry.repo_id
            return bundle, f"loaded {entry.repo_id} from the Hugging Face Hub"
        except (HubError, ModelFolderError) as exc:
            note = f"{exc}; using the bundled copy in {entry.folder.parent.name}/{entry.folder.name}"
    else:
        note = f"loaded the bundled copy in {entry.folder.parent.name}/{entry.folder.name}"
    bundle = hub.load_folder(entry.folder, device)
    bundle.source = entry.name
    return bundle, note
