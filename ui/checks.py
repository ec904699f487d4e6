"""Settings checked before anything starts. Number fields have no widget bounds (a browser would
silently keep the old value of a field out of its bounds); instead each value goes through the
engine's own validator here, and a refused one blocks the button with the engine's message."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from textgen_core import TextgenError

from .text import escape_markdown

Fields = Mapping[str, tuple[str, Any]]  # engine setting -> (the field's label, its value)


def field_problems(check: Callable[..., Any], fields: Fields) -> list[str]:
    """Each field checked on its own, ``check(**{setting: value})`` (raising TextgenError when the
    engine refuses it), so that every bad field is named, not only the first."""
    problems = []
    for setting, (label, value) in fields.items():
        try:
            check(**{setting: value})
        except TextgenError as exc:
            problems.append(f"**{escape_markdown(label)}**: {escape_markdown(exc)}")
    return problems


def refusal(check: Callable[[], Any]) -> list[str]:
    """The engine's message when ``check()`` refuses the settings together (sizes that do not fit the
    memory, hidden not divisible by heads...), as a one-item list; else an empty list."""
    try:
        check()
    except TextgenError as exc:
        return [escape_markdown(exc)]
    return []


def show_problems(problems: list[str], action: str) -> None:
    """One error listing every problem; ``action`` is what they block ("start", "generate")."""
    if problems:
        st.error(f"Change {'this setting' if len(problems) == 1 else 'these settings'} to {action}:\n"
                 + "\n".join(f"- {p}" for p in problems), icon=":material/block:")
