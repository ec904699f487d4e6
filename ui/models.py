"""The models a session can use: its workspace's runs, the pretrained folders, those loaded from the Hub."""
from __future__ import annotations

import datetime as dt
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

from textgen_core import Bundle, TextgenError, pretrained
from textgen_core.hub import CONFIG_FILE, WEIGHTS_FILE, load_folder, published_files, read_card
from textgen_core.pretrained import resolve
from textgen_core.recipes import SHARED_DATA

from .state import workspace
from .text import escape_markdown, fmt_number, number

PRETRAINED_ENV = "TEXTGEN_PRETRAINED_DIR"
DEFAULT_PRETRAINED_DIR = pretrained.PRETRAINED_DIR   # the bundled models, package data of textgen_core


def pretrained_dir() -> Path:
    return Path(os.environ.get(PRETRAINED_ENV) or DEFAULT_PRETRAINED_DIR)


def pretrained_folders() -> list[Path]:
    root = pretrained_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and (p / CONFIG_FILE).is_file() and (p / WEIGHTS_FILE).is_file())


def data_dir() -> Path:
    """The folder of sample corpora (the pretrained models' training texts), when there is one."""
    return Path(os.environ.get("TEXTGEN_DATA_DIR") or SHARED_DATA)


def builtin_corpora() -> dict[str, Path]:
    """Texts at hand without an upload: ``*.txt`` in the data folder and among the bundled models."""
    found: dict[str, Path] = {}
    for root in (data_dir(), pretrained_dir()):
        if root.is_dir():
            found.update({p.stem: p for p in sorted(root.glob("*.txt")) if p.stem not in found})
    return found


@st.cache_resource(show_spinner="Loading the pretrained model...", max_entries=8)
def _load_folder(path: str, mtime: float) -> Bundle:
    return load_folder(path)  # shared read-only by every session: sampling never changes it


def load_pretrained(folder: Path) -> Bundle:
    return _load_folder(str(folder), (folder / WEIGHTS_FILE).stat().st_mtime)


def bundled_models() -> list[pretrained.PretrainedEntry]:
    """The catalog's pretrained models with a bundled copy (none when the catalog is broken)."""
    try:
        return pretrained.catalog(pretrained_dir())
    except TextgenError:
        return []


@st.cache_resource(show_spinner="Loading the model...", max_entries=8)
def _load_run(path: str, mtime: float) -> Bundle:
    return load_folder(path)  # read-only: sampling never changes it; a resumed run has a new mtime


def load_run(folder: Path) -> Bundle:
    """A workspace run's model (its best weights), loaded once per version of its weights file."""
    return _load_run(str(folder), (folder / WEIGHTS_FILE).stat().st_mtime)


def trained_label(name: str, created: str) -> str:
    """How a workspace run is listed in model pickers: its name and when it was started."""
    try:
        when = dt.datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        when = "?"
    return f"{name} · trained here at {when}"


@st.cache_resource(show_spinner="Loading the pretrained model (Hugging Face Hub first)...", max_entries=8)
def _load_catalog_model(name: str, repo_id: str, folder: str, mtime: float) -> tuple[Bundle, str]:
    entry = pretrained.PretrainedEntry(name, repo_id, Path(folder))
    return pretrained.load_pretrained(entry)  # the Hub's copy, or the bundled one within seconds


def load_catalog_model(entry: pretrained.PretrainedEntry) -> tuple[Bundle, str]:
    """The catalog model from the Hub (its cache first) or its bundled copy, and where it came from."""
    return _load_catalog_model(entry.name, entry.repo_id, str(entry.folder),
                               (entry.folder / WEIGHTS_FILE).stat().st_mtime)


@dataclass
class ModelEntry:
    label: str                      # unique, shown in pickers
    origin: str                     # "trained here" | "pretrained" | "Hub"
    folder: Optional[Path]          # its model folder on this machine
    load: Callable[[], Bundle]      # may raise TextgenError
    description: str = ""           # what it is (pretrained models)
    source_note: Callable[[], str] = lambda: ""  # where the loaded copy came from (after load)


def available_models() -> dict[str, ModelEntry]:
    """label -> entry: the workspace's runs with a model that are not training (newest first), Hub
    loads, the pretrained models."""
    entries: dict[str, ModelEntry] = {}

    def add(label: str, origin: str, folder: Optional[Path], load: Callable[[], Bundle], **extra) -> None:
        base, n = label, 2
        while label in entries:
            label, n = f"{base} ({n})", n + 1
        entries[label] = ModelEntry(label, origin, folder, load, **extra)

    for record in workspace().runs():
        if record.has_model and not record.active:
            add(trained_label(record.display_name, record.created), "trained here", record.path,
                lambda f=record.path: load_run(f))
    for repo_id, bundle in st.session_state.get("hub_bundles", {}).items():
        add(f"{repo_id} · Hub", "Hub", bundle.path, lambda b=bundle: b)
    try:
        listed = pretrained.catalog(pretrained_dir())
    except TextgenError:
        listed = []  # a broken catalog.json: the folders are still listed below, loaded as they are
    for entry in listed:
        add(f"{entry.name} · pretrained", "pretrained", entry.folder,
            lambda e=entry: load_catalog_model(e)[0], description=entry.description,
            source_note=lambda e=entry: load_catalog_model(e)[1])
    in_catalog = {entry.folder for entry in listed}
    for folder in pretrained_folders():
        if folder.resolve() not in in_catalog:
            add(f"{folder.name} · pretrained", "pretrained", folder, lambda f=folder: load_pretrained(f))
    return entries


def hub_load_form(key: str, select_key: Optional[str] = None) -> None:
    """A repo-id form that loads a Hub model into the session (``select_key``: a model picker to
    point at it). The load runs in a callback, before the page, so model lists already show it."""
    state = st.session_state

    def load() -> None:
        repo_id = (state.get(f"{key}_repo") or "").strip()
        try:
            bundle, note = resolve(repo_id, folders=False)   # tg.load's resolver, without server paths
            state.hub_bundles[repo_id] = bundle
            state[f"{key}_result"] = ("success", f"Loaded {repo_id}: {note}.")
            if select_key:
                state[select_key] = f"{repo_id} · Hub"
        except TextgenError as exc:
            state[f"{key}_result"] = ("error", str(exc))

    with st.form(key):
        st.text_input("Repo id", placeholder="owner/name", key=f"{key}_repo",
                      help="A model repo on the Hugging Face Hub, made by this project or in its format.")
        st.form_submit_button("Load", icon=":material/cloud_download:", on_click=load)
    kind, message = state.pop(f"{key}_result", (None, None))
    if kind == "success":
        st.success(escape_markdown(message), icon=":material/cloud_done:")
    elif kind == "error":
        st.error(escape_markdown(message), icon=":material/cloud_off:")


def zip_model_folder(folder: Path) -> bytes:
    """A zip of the model's own files (weights, config, tokenizer, history, card), not checkpoint/."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in published_files(folder):   # what a push uploads: regular files of the folder only
            archive.write(path, f"{Path(folder).name}/{path.name}")
    return buffer.getvalue()


def run_info(bundle: Bundle) -> dict:
    """The bundle's run.json, or an empty dict when it is not a JSON object."""
    return bundle.info if isinstance(bundle.info, dict) else {}


def card_rows(bundle: Bundle) -> list[tuple[str, str]]:
    """The model card's main facts as (field, plain text) rows. Values from run.json are shown only
    when they have the right type: a hand-edited or broken file leaves a row out or shows "?"."""
    info, config = run_info(bundle), bundle.model.config
    rows = []
    corpus = info.get("corpus")
    if isinstance(corpus, dict) and corpus:
        chars = fmt_number(corpus.get("chars"), ",", "?")
        rows.append(("corpus", f"{_text(corpus.get('name'))} ({chars} characters)"))
    rows.append(("tokenizer", f"{bundle.tokenizer.kind}, {bundle.tokenizer.vocab_size:,} tokens"))
    sizes = f"embedding {config.embedding}, hidden {config.hidden}, layers {config.layers}"
    if config.arch in ("cnn", "attention"):
        sizes += f", context {config.context}"
    rows.append(("architecture", f"{config.arch.upper()}: {sizes}, dropout {config.dropout}"))
    rows.append(("parameters", f"{bundle.model.num_parameters():,}"))
    if number(info.get("best_val_loss")) is not None:
        rows.append(("best validation loss", f"{info['best_val_loss']:.4f} nats/token at step "
                                             f"{fmt_number(info.get('best_step'), ',', '?')}"))
    if number(info.get("best_val_bpc")) is not None:
        rows.append(("best validation bits per char", f"{info['best_val_bpc']:.4f}"))
    if number(info.get("steps")) is not None:
        rows.append(("training", f"{fmt_number(info['steps'], ',')} steps in "
                                 f"{fmt_number(info.get('elapsed_s'), '.0f', '?')} s on {_text(info.get('hardware'))}"))
    if isinstance(info.get("stop_message"), str) and info["stop_message"]:
        rows.append(("stopped because", info["stop_message"]))
    return rows


def model_summary(bundle: Bundle) -> str:
    """One Markdown line: architecture, tokenizer, parameters and, when run.json has it, the best bits per char."""
    bpc = number(run_info(bundle).get("best_val_bpc"))
    best = f" · best validation {bpc:.3f} bits/char" if bpc else ""
    return (f"{bundle.model.config.arch.upper()} · {escape_markdown(bundle.tokenizer.kind)} tokenizer · "
            f"{bundle.model.num_parameters():,} parameters{best}")


def _text(value: object) -> str:
    return value if isinstance(value, str) and value.strip() else "?"


def card_markdown(bundle: Bundle) -> Optional[str]:
    """The README.md model card without its YAML front matter, if the folder has one."""
    text = read_card(bundle.path) if bundle.path is not None else None   # bounded, regular files only
    if text is None:
        return None
    if text.startswith("---"):
        end = text.find("\n---", 3)
        text = text[end + 4:] if end != -1 else text
    return text.strip()
