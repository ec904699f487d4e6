"""Streaming generated text into page placeholders."""
from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from typing import Optional

from textgen_core import Bundle, SamplingOptions
from textgen_core.sampling import stream_text

from .text import fmt_text, number

REFRESH_S = 0.1  # redraw streamed text at most ten times a second


def show_text(placeholder, text: str) -> None:
    placeholder.code(text or " ", language=None, wrap_lines=True)


def stream_into(placeholders: Sequence, bundle: Bundle, prompt: str, options: SamplingOptions,
                so_far: Optional[list[str]] = None) -> list[str]:
    """Generate ``options.num_samples`` texts into one placeholder each, as they come; returns them.

    ``so_far`` is kept equal to the texts made so far: a rerun (a Stop button, any widget) ends the
    script inside a redraw, and the next run finds there what was generated until then.
    """
    texts = [prompt] * options.num_samples
    so_far = [] if so_far is None else so_far
    so_far[:] = texts
    shown = time.monotonic()
    pieces_of = stream_text(bundle.model, bundle.tokenizer, prompt, options)
    try:
        for pieces in pieces_of:
            texts = [text + piece for text, piece in zip(texts, pieces)]
            so_far[:] = texts
            if time.monotonic() - shown > REFRESH_S:
                for placeholder, text in zip(placeholders, texts):
                    show_text(placeholder, text)
                shown = time.monotonic()
    finally:
        pieces_of.close()   # an interrupted run leaves the sampler's settings (one thread, oneDNN) at once
    for placeholder, text in zip(placeholders, texts):
        show_text(placeholder, text)
    return texts


def saved_results(record: dict) -> list[tuple[float, list[str]]]:
    """A saved generation's (temperature, texts) pairs; what a damaged file holds otherwise is left out."""
    results = record.get("results") if isinstance(record, dict) else None
    return [(float(entry[0]), [t for t in entry[1] if isinstance(t, str)]) for entry in results or []
            if isinstance(entry, (list, tuple)) and len(entry) == 2 and number(entry[0]) is not None
            and isinstance(entry[1], list)] if isinstance(results, list) else []


def generation_title(record: dict) -> str:
    """A saved generation's model and time, as Markdown (the model's name escaped)."""
    try:
        when = dt.datetime.fromisoformat(str(record.get("created"))).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        when = "?"
    stopped = " · stopped before the end" if record.get("stopped") is True else ""
    return f"**{fmt_text(record.get('model'), '?')}** · {when}{stopped}"


def tokens_for_chars(bundle: Bundle, chars: int) -> int:
    """How many tokens make about ``chars`` characters for this model's tokenizer."""
    info = bundle.info if isinstance(bundle.info, dict) else {}
    per_token = number(info.get("chars_per_token"))
    per_token = per_token if per_token is not None and per_token >= 1e-3 else 1.0  # a broken run.json: 1
    return max(1, math.ceil(chars / per_token))
