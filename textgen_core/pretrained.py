"""Pretrained models: a Hub repo id each, with a bundled copy as the offline default.

The bundled copies are package data, in ``textgen_core/pretrained_models/`` (installed with the
package); its ``catalog.json`` is a list of {"name", "repo_id", "folder", "description"}.
``TEXTGEN_PRETRAINED_DIR`` points elsewhere and ``TEXTGEN_HUB_OWNER`` swaps the owner of every
default repo id, so a fork can publish its own copies without editing code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import files, hub
from .errors import HubError, ModelFolderError

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained_models"   # package data
PRETRAINED_ENV = "TEXTGEN_PRETRAINED_DIR"
CATALOG_FILE = "catalog.json"


@dataclass(frozen=True)
class PretrainedEntry:
    name: str          # short name used in the app and on the command line
    repo_id: str       # where it lives on the Hub
    folder: Path       # the bundled copy
    description: str = ""


def pretrained_dir() -> Path:
    return Path(os.environ.get(PRETRAINED_ENV) or PRETRAINED_DIR)


def catalog(directory: Optional[Path] = None) -> list[PretrainedEntry]:
    """The known pretrained models whose bundled folder holds weights (an empty list when none do)."""
    directory = directory or pretrained_dir()
    path = directory / CATALOG_FILE
    if not path.is_file():
        return []
    entries = files.read_json(path, files.MAX_CONFIG_BYTES, expect=list)
    owner = os.environ.get("TEXTGEN_HUB_OWNER")
    result = []
    for entry in entries:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("name", "repo_id", "folder"))
                and hub.is_repo_id(entry["repo_id"])):
            raise ModelFolderError(f"{path}: every entry must hold a \"name\", a \"folder\" and a \"repo_id\" "
                                   f"of the form owner/name (this one: {str(entry)[:120]})")
        repo_id = entry["repo_id"]
        if owner:
            repo_id = f"{owner}/{repo_id.split('/', 1)[1]}"
        folder = (directory / entry["folder"]).resolve()
        if folder.parent != directory.resolve():
            raise ModelFolderError(f"{path}: folder '{entry['folder']}' must be directly inside {directory}")
        if (folder / hub.WEIGHTS_FILE).is_file():
            description = entry.get("description")
            result.append(PretrainedEntry(entry["name"], repo_id, folder,
                                          description if isinstance(description, str) else ""))
    return result


def find(name: str, directory: Optional[Path] = None) -> Optional[PretrainedEntry]:
    return next((e for e in catalog(directory) if name in (e.name, e.repo_id)), None)


def load_pretrained(entry: PretrainedEntry, prefer_hub: bool = True, device: str = "cpu",
                    revision: Optional[str] = None, cache_dir: Optional[str] = None) -> tuple[hub.Bundle, str]:
    """The model from the Hub (cache first) or, when the Hub fails, the bundled copy.

    Returns the bundle and a sentence saying where it came from.
    """
    if prefer_hub:
        try:
            bundle = hub.load_folder(hub.download(entry.repo_id, revision, cache_dir), device)
            bundle.source = entry.repo_id
            return bundle, f"loaded {entry.repo_id} from the Hugging Face Hub"
        except (HubError, ModelFolderError) as exc:
            note = f"{exc}; using the bundled copy in {entry.folder.parent.name}/{entry.folder.name}"
    else:
        note = f"loaded the bundled copy in {entry.folder.parent.name}/{entry.folder.name}"
    bundle = hub.load_folder(entry.folder, device)
    bundle.source = entry.name
    return bundle, note


def resolve(source: str | Path, device: str = "cpu", revision: Optional[str] = None,
            cache_dir: Optional[str] = None, folders: bool = True) -> tuple[hub.Bundle, str]:
    """The one way to turn what a user typed into a model, for the API, the CLI and the app.

    ``source`` is a model folder (when it exists, and ``folders``: a shared app server passes
    False, so that no session reads folders of the server's disk by path), a pretrained name or its
    repo id (the Hub's copy first, the bundled copy when the Hub fails), or any other Hub repo id
    ``owner/name``. Returns the bundle and a sentence saying which copy was loaded.
    """
    text = str(source).strip() if source is not None else ""
    if not text:
        raise ModelFolderError(f"no model given: {hub.NO_SOURCE}")
    if not folders and not hub.is_repo_id(text) and find(text) is None:
        raise ModelFolderError(f"'{text[:200]}' is not a Hub repo id of the form owner/name nor a pretrained "
                               "model's name")
    path = Path(text).expanduser()
    if folders and path.exists():
        bundle = hub.load_folder(path, device)
        bundle.source = text
        return bundle, f"loaded the model folder {path}"
    entry = find(text)
    if entry is not None:
        return load_pretrained(entry, device=device, revision=revision, cache_dir=cache_dir)
    if hub.is_repo_id(text):
        bundle = hub.load_folder(hub.download(text, revision, cache_dir), device)
        bundle.source = text
        return bundle, f"loaded {text} from the Hugging Face Hub"
    raise ModelFolderError(f"'{text[:200]}' is neither a model folder nor a Hub repo id of the form owner/name, "
                           f"and no pretrained model has that name; {hub.NO_SOURCE}")
