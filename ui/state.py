"""Per-session state: who this browser session is, its corpus, its jobs. Every page calls init()."""
from __future__ import annotations

import uuid
from typing import Optional

import streamlit as st
import torch

from textgen_core import Corpus
from textgen_core.jobs import TrainingJob
from textgen_core.registry import get_registry

DEFAULTS = {
    "corpus": None,           # textgen_core.Corpus the user chose
    "corpus_key": None,       # identifies the upload, so a rerun does not decode it again
    "train_job": None,        # the Train page's current job
    "compare_jobs": [],       # the Compare page's jobs, in the order of its columns
    "recipe_jobs": [],        # the Recipes page's jobs: the runs of the last recipe started
    "hub_bundles": {},        # repo id -> Bundle loaded on the Models page
    "generated": None,        # the Generate page's last result
    "compare_samples": None,  # the Compare page's last samples
}


# Vocabulary size widgets per tokenizer: (session key, default).
VOCAB_KEYS = {"word": ("vocab_word", 10_000), "sentencepiece": ("vocab_sp", 2_000)}


def init():
    """Set defaults once per session and send the heartbeat that keeps this session's jobs alive."""
    state = st.session_state
    if "owner" not in state:
        state.owner = uuid.uuid4().hex[:12]
    for key, value in DEFAULTS.items():
        if key not in state:
            state[key] = value.copy() if isinstance(value, (list, dict)) else value
    get_registry().touch(state.owner)
    return state


def corpus() -> Optional[Corpus]:
    return st.session_state.get("corpus")


def session_jobs() -> list[TrainingJob]:
    """This session's jobs, newest first: the Train, Compare and Recipes pages'."""
    state = st.session_state
    jobs = list(state.get("compare_jobs", [])) + list(state.get("recipe_jobs", []))
    if state.get("train_job") is not None:
        jobs.append(state.train_job)
    history = state.setdefault("past_jobs", [])
    for job in jobs:
        if job not in history:
            history.append(job)
    del history[:-12]  # bound what a long session keeps in memory
    return sorted(history, key=lambda j: j.created, reverse=True)


def active_jobs() -> list[TrainingJob]:
    return [j for j in session_jobs() if j.active]


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
