"""Settings proposed for the session's corpus and device, as the starting values of a page's widgets.

A page calls ``follow`` before it draws its widgets. The widgets take their values from the session
(``st.session_state[key]``), so that a new proposal can change them: when the corpus or the device
changes, every widget that still shows the previous proposal's value takes the new one, and a widget
the user changed keeps the user's value."""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Optional

import streamlit as st

from textgen_core import Corpus, TrainConfig
from textgen_core.defaults import Proposal, defaults_for, propose_settings
from textgen_core.models import ModelConfig


def propose(corpus: Optional[Corpus], device: str) -> Proposal:
    """The proposal for ``corpus`` on ``device``; without a corpus, the device's defaults."""
    if corpus is not None:
        return propose_settings(corpus.stats.chars, device)
    settings, reason = defaults_for(device)
    return Proposal(settings, [reason], float("nan"))


def key_of(corpus: Optional[Corpus], device: str) -> Hashable:
    """What the proposal depends on: the upload (its session key) and the device."""
    return (st.session_state.get("corpus_key") if corpus is not None else None, device)


def steps_per_s(proposal: Proposal, corpus_chars: int) -> Optional[float]:
    """The steps a second the proposal assumes for its model (measured; see defaults.cpu_steps_per_s),
    None without a corpus."""
    if not corpus_chars or proposal.steps_per_s != proposal.steps_per_s:   # nan: no corpus
        return None
    return proposal.steps_per_s


def train_widgets(proposal: Proposal, corpus_chars: int, val_fraction: float) -> dict[str, Any]:
    """The Train page's widget keys and the values the proposal gives them. The three budgets say the
    same: its minutes, and the steps and epochs they mean for this corpus."""
    values = proposal.settings
    sized = ModelConfig.from_preset(values["arch"], values["preset"], 2, hidden=values.get("hidden"),
                                    layers=values.get("layers"))
    tokens_per_step = values["batch_size"] * values["seq_len"]
    rate = steps_per_s(proposal, corpus_chars)
    steps = int(round(rate * 60 * values["max_minutes"], -1)) if rate else 1000
    train_tokens = max(1.0, corpus_chars * (1 - val_fraction))
    widgets = dict(
        arch=values["arch"], explicit_sizes="hidden" in values, preset=values["preset"],
        embedding=sized.embedding, hidden=sized.hidden, layers=sized.layers,
        dropout=float(values.get("dropout", 0.1)), lr=float(values["lr"]),
        weight_decay=float(values.get("weight_decay", TrainConfig.weight_decay)),
        batch=int(values["batch_size"]), seq_len=int(values["seq_len"]), eval_every=int(values["eval_every"]),
        carry_state=bool(values.get("carry_state", TrainConfig.carry_state)),
        patience=int(values.get("patience") or 0), budget_kind="minutes",
        budget_minutes=float(values["max_minutes"]), budget_steps=max(10, steps),
        budget_epochs=float(max(0.5, round(steps * tokens_per_step / train_tokens, 1))) if corpus_chars else 1.0,
        precision=values.get("precision", "auto"))
    return widgets


def follow(store: str, key: Hashable, values: Mapping[str, Any]) -> None:
    """Set the session's widget values to a proposal when its ``key`` is new: a widget with no value
    yet, or still showing the previous proposal's value, takes the new one (``store`` names the
    session entry that remembers the proposal in use)."""
    state = st.session_state
    previous = state.get(store)
    if previous is not None and previous["key"] == key:
        return
    before = previous["values"] if previous is not None else {}
    for widget, value in values.items():
        if widget not in state or (widget in before and state[widget] == before[widget]):
            state[widget] = value
    state[store] = {"key": key, "values": dict(values)}
