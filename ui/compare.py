"""The Compare page's logic: each configuration's settings, names and checks, the evaluation interval
that draws every curve with enough points, and whether the timings compare."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import streamlit as st

from textgen_core import TrainConfig
from textgen_core.models import ModelConfig

from .checks import field_problems

EVAL_POINTS = 12          # evaluations a curve gets by default: enough to see it fall and turn up
DEFAULT_STEPS = 600       # each configuration's default budget: 12 points at an evaluation every 50 steps


@dataclass
class Column:
    """One configuration of the comparison."""
    arch: str
    tokenizer: str
    preset: str
    hidden: int
    lr: float
    dropout: float

    @property
    def preset_hidden(self) -> int:
        return ModelConfig.from_preset(self.arch, self.preset, 2).hidden


def eval_every_for(budget_steps: float) -> int:
    """The evaluation interval that gives a budget of ``budget_steps`` about EVAL_POINTS points."""
    return max(1, int(budget_steps) // EVAL_POINTS)


def evaluations(budget_steps: float, eval_every: int) -> int:
    """Points on a curve: every ``eval_every`` steps, and one at the end when it falls between."""
    steps = int(budget_steps)
    if steps < 1 or eval_every < 1:
        return 0
    return steps // eval_every + (1 if steps % eval_every else 0)


AUTO_EVAL_KEY = "_cmp_eval_every_auto"   # the interval follow_budget set last


def follow_budget(steps_per_s: Optional[float]) -> None:
    """on_change of the budget fields: evaluate-every follows the budget (for minutes, at the proposed
    model's speed, ``steps_per_s``), unless the user has chosen another interval."""
    state = st.session_state
    if state.get("cmp_eval_every") != state.get(AUTO_EVAL_KEY, eval_every_for(DEFAULT_STEPS)):
        return
    if state.get("cmp_budget_kind", "steps") == "steps":
        every = eval_every_for(state.get("cmp_steps", DEFAULT_STEPS))
    elif steps_per_s:
        every = eval_every_for(state.get("cmp_minutes", 1.0) * 60 * steps_per_s)
    else:
        return
    state["cmp_eval_every"] = state[AUTO_EVAL_KEY] = every


def points_text(budget_kind: str, budget: float, eval_every: int, steps_per_s: Optional[float]) -> str:
    """How many points each curve will have."""
    if budget_kind == "steps":
        return f"{evaluations(budget, eval_every)} evaluations per configuration."
    if not steps_per_s:
        return "The number of evaluations depends on each model's speed."
    steps = budget * 60 * steps_per_s
    return (f"About {evaluations(steps, eval_every)} evaluations per configuration at the proposed model's "
            f"{steps_per_s:.0f} steps a second; slower models get fewer.")


def names(columns: Sequence[Column]) -> list[str]:
    """Each column's run name: architecture, size, tokenizer, then what sets it apart (a hidden size
    other than its preset's, a learning rate or dropout the columns do not share)."""
    varied_lr = len({c.lr for c in columns}) > 1
    varied_dropout = len({c.dropout for c in columns}) > 1
    result: list[str] = []
    for column in columns:
        name = f"{column.arch}-{column.preset}-{column.tokenizer}"
        if column.hidden != column.preset_hidden:
            name += f"-h{column.hidden}"
        if varied_lr:
            name += f"-lr{column.lr:g}"
        if varied_dropout:
            name += f"-d{column.dropout:g}"
        result.append(name if name not in result else f"{name}-{len(result) + 1}")
    return result


def column_problems(columns: Sequence[Column], vocab_sizes: Sequence[int]) -> list[str]:
    """Every bad per-column field, named with its configuration and the engine's message."""
    problems = []
    for number, (column, vocab) in enumerate(zip(columns, vocab_sizes), start=1):
        problems += field_problems(lambda **value: TrainConfig(**value).validated(),
                                   {"lr": (f"Learning rate (configuration {number})", column.lr)})
        problems += field_problems(
            lambda c=column, v=vocab, **value: ModelConfig.from_preset(c.arch, c.preset, v, **value),
            {"hidden": (f"Hidden (configuration {number})", column.hidden),
             "dropout": (f"Dropout (configuration {number})", column.dropout)})
    return problems


def timing_caption(others: Sequence[Optional[int]], finished: bool) -> str:
    """Whether the runs' timings compare: ``others`` holds, per run, the most other trainings of this
    server that ran at the same time as it (None: not known, e.g. a run read from disk)."""
    known = [n for n in others if n is not None]
    if not known:
        return ("Timings: whether other trainings shared the machine is not known for these runs (they ran "
                "in an earlier server session).")
    most = max(known)
    so_far = "" if finished else " so far"
    if most > 0:
        return (f"Timings not comparable{so_far}: other trainings ran at the same time (up to {most}), "
                "so some runs had less of the machine.")
    unknown = len(known) < len(others)
    return f"Timings comparable{so_far}: each ran alone" + (" (where known)." if unknown else ".")
