"""Per-session state: the user's workspace (its id kept in the page's address as ``?w=``), the corpus,
the choices saved in the workspace for the next visit, the pages' runs. Every page calls init()."""
from __future__ import annotations

from typing import Any, Optional

import streamlit as st
import torch

from textgen_core import TOKENIZER_KINDS, Corpus, TextgenError
from textgen_core.jobs import TrainingJob, runs_dir
from textgen_core.registry import get_registry
from textgen_core.workspace import Workspace

from .sampling import saved_results

WORKSPACE_PARAM = "w"         # the query parameter that carries the workspace id
DEFAULTS = {
    "corpus": None,           # textgen_core.Corpus the user chose
    "corpus_key": None,       # identifies the upload, so a rerun does not decode it again
    "train_job": None,        # the Train page's current run (a TrainingJob, or a ui.runs.SavedRun)
    "compare_jobs": [],       # the Compare page's runs, in the order of its columns
    "recipe_jobs": [],        # the Recipes page's runs: those of the last recipe started
    "recipe_name": None,      # ... and that recipe's name
    "hub_bundles": {},        # repo id -> Bundle loaded on the Models page
    "generated": None,        # the Generate page's last result
    "compare_samples": None,  # the Compare page's last samples
}

# Vocabulary size widgets per tokenizer: (session key, default).
VOCAB_KEYS = {"word": ("vocab_word", 10_000), "sentencepiece": ("vocab_sp", 2_000)}
# Widget choices kept in the workspace, each with a check of a saved value before it is used again.
REMEMBERED = {
    "tokenizer": lambda v: v in TOKENIZER_KINDS,
    "vocab_word": lambda v: isinstance(v, int) and not isinstance(v, bool) and 50 <= v <= 100_000,
    "vocab_sp": lambda v: isinstance(v, int) and not isinstance(v, bool) and 50 <= v <= 100_000,
    "val_fraction": lambda v: isinstance(v, float) and 0.05 <= v <= 0.5,
    "gen_model": lambda v: isinstance(v, str),
}


def init():
    """Find the session's workspace once (from the address, else a new one) and set defaults; on every
    run put the workspace id back into the address (a page switch drops it), send the heartbeat that
    keeps the workspace's jobs alive, and find the pages' runs again. Pages call it too (AppTest runs a
    page alone)."""
    state = st.session_state
    if "workspace" not in state:
        workspace, is_new = Workspace.for_app(runs_dir(), st.query_params.get(WORKSPACE_PARAM))
        state.workspace, state.owner = workspace, workspace.id
        state._remembered = {} if is_new else workspace.state()
        if not is_new:
            restore(workspace, state._remembered)
    if st.query_params.get(WORKSPACE_PARAM) != state.owner:
        st.query_params[WORKSPACE_PARAM] = state.owner
    for key, value in DEFAULTS.items():
        if key not in state:
            state[key] = value.copy() if isinstance(value, (list, dict)) else value
    get_registry().touch(state.owner)
    from .runs import attach  # ui.runs builds on this module

    attach()   # the pages' runs as the workspace saved them: a reload finds its jobs again
    return state


def restore(workspace: Workspace, saved: dict) -> None:
    """A returning visit: the saved corpus, choices and last generation come back."""
    state = st.session_state
    key = saved.get("corpus")
    if isinstance(key, str):
        try:
            state.corpus, state.corpus_key = workspace.load_corpus(key), ("saved", key)
        except TextgenError:
            pass   # deleted by hand: the visit starts without a corpus
    for name, valid in REMEMBERED.items():
        if name in saved and valid(saved[name]):
            state[name] = saved[name]
    last = workspace.generations(limit=1)
    if last and isinstance(last[0].get("model"), str) and saved_results(last[0]):
        state.generated = {"model": last[0]["model"], "results": saved_results(last[0]),
                           "stopped": last[0].get("stopped") is True, "file": last[0]["file"]}


def workspace() -> Workspace:
    return st.session_state.workspace


def address() -> dict:
    """The query parameters that keep a link (``st.page_link``, ``st.switch_page``) in this workspace."""
    return {WORKSPACE_PARAM: st.session_state.owner}


def remember(**values: Any) -> None:
    """Save these choices in the workspace (only those that changed: a tab that changed nothing never
    overwrites what another tab saved)."""
    known = st.session_state.setdefault("_remembered", {})
    changed = {k: v for k, v in values.items() if known.get(k, object()) != v}
    if changed:
        workspace().update_state(**changed)
        known.update(changed)


def initial(key: str, default: Any) -> Any:
    """A widget's default, or None when the session already holds its value (restored from the
    workspace): a widget given both warns, and the session's value wins anyway."""
    return None if key in st.session_state else default


def use_corpus(corpus: Corpus, key: tuple) -> None:
    """Make ``corpus`` the session's and the workspace's current corpus (saved there once)."""
    state = st.session_state
    state.corpus, state.corpus_key = corpus, key
    remember(corpus=workspace().save_corpus(corpus))


def corpus() -> Optional[Corpus]:
    return st.session_state.get("corpus")


def active_jobs() -> list[TrainingJob]:
    """The workspace's training and waiting jobs (started in any tab of it), oldest first."""
    return get_registry().active_jobs(st.session_state.owner)


def tokenizer_settings() -> tuple[str, Optional[int], float]:
    """(kind, vocab size or None, validation fraction) as chosen on the Corpus page."""
    state = st.session_state
    kind = state.get("tokenizer", "char")
    vocab = state.get(VOCAB_KEYS[kind][0], VOCAB_KEYS[kind][1]) if kind in VOCAB_KEYS else None
    return kind, (int(vocab) if vocab else None), float(state.get("val_fraction", 0.1))


def vocab_estimate(corpus: Optional[Corpus], vocab: Optional[int]) -> int:
    """The vocabulary size a tokenizer will have (its cap, or a char vocabulary), near enough to judge
    a model's size before the tokenizer is fitted."""
    return vocab or (corpus.stats.distinct_chars + 1 if corpus is not None else 2)


def device_options() -> list[str]:
    return ["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"]


def device_label(device: str) -> str:
    if device == "cuda":
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def fmt_seconds(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
