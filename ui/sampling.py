"""Streaming generated text into page placeholders."""
from __future__ import annotations

import math
import time
from typing import Sequence

from textgen_core import Bundle, SamplingOptions
from textgen_core.sampling import stream_text

from .text import number

REFRESH_S = 0.1  # redraw streamed text at most ten times a second


def show_text(placeholder, text: str) -> None:
    placeholder.code(text or " ", language=None, wrap_lines=True)


def stream_into(placeholders: Sequence, bundle: Bundle, prompt: str, options: SamplingOptions) -> list[str]:
    """Generate ``options.num_samples`` texts into one placeholder each, as they come; returns them."""
    texts = [prompt] * options.num_samples
    shown = time.monotonic()
    for pieces in stream_text(bundle.model, bundle.tokenizer, prompt, options):
        texts = [text + piece for text, piece in zip(texts, pieces)]
        if time.monotonic() - shown > REFRESH_S:
            for placeholder, text in zip(placeholders, texts):
                show_text(placeholder, text)
            shown = time.monotonic()
    for placeholder, text in zip(placeholders, texts):
        show_text(placeholder, text)
    return texts


def tokens_for_chars(bundle: Bundle, chars: int) -> int:
    """How many tokens make about ``chars`` characters for this model's tokenizer."""
    info = bundle.info if isinstance(bundle.info, dict) else {}
    per_token = number(info.get("chars_per_token"))
    per_token = per_token if per_token is not None and per_token >= 1e-3 else 1.0  # a broken run.json: 1
    return max(1, math.ceil(chars / per_token))
