"""The short Python API: load a model, generate or stream text, score a text."""
from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from .errors import ConfigError
from .evaluation import bits_per_char, total_nats
from .hub import Bundle
from .memory import eval_floats
from .models import ModelConfig
from .pretrained import resolve
from .runs import chars_per_token, encode_corpus
from .sampling import SamplingOptions, stream_text


def load(source: str | Path, revision: Optional[str] = None, device: str = "cpu",
         cache_dir: Optional[str] = None) -> Bundle:
    """A model folder, a pretrained name (the Hub's copy, else the bundled one) or a Hub repo id
    ``owner/name``; ``pretrained.resolve`` also says which copy was loaded."""
    return resolve(source, device, revision, cache_dir)[0]


def _options(length: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
             num_samples: int, seed: Optional[int]) -> SamplingOptions:
    """The options, checked (types too: a seed of 1.5, True or "3" is refused) before any work."""
    return SamplingOptions(length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                           num_samples=num_samples, seed=seed).validated()


def generate(bundle: Bundle, prompt: str = "", length: int = 200, temperature: float = 0.8,
             top_k: Optional[int] = None, top_p: Optional[float] = None, num_samples: int = 1,
             seed: Optional[int] = None) -> list[str]:
    """``num_samples`` texts, each the prompt followed by ``length`` generated tokens."""
    options = _options(length, temperature, top_k, top_p, num_samples, seed)
    parts: list[list[str]] = [[prompt] for _ in range(num_samples)]   # joined once: no quadratic copying
    for pieces in stream_text(bundle.model, bundle.tokenizer, prompt, options):
        for sample, piece in zip(parts, pieces):
            if piece:
                sample.append(piece)
    return ["".join(sample) for sample in parts]


def stream(bundle: Bundle, prompt: str = "", length: int = 200, temperature: float = 0.8,
           top_k: Optional[int] = None, top_p: Optional[float] = None,
           seed: Optional[int] = None) -> Iterator[str]:
    """One sample as it is generated: the prompt first, then each new piece of text."""
    options = _options(length, temperature, top_k, top_p, 1, seed)
    if prompt:
        yield prompt
    for pieces in stream_text(bundle.model, bundle.tokenizer, prompt, options):
        if pieces[0]:
            yield pieces[0]


EVAL_MEMORY_BYTES = 512_000_000   # what a scoring pass may hold beyond the weights


def _eval_shape(config: ModelConfig, seq_len: int) -> tuple[int, int]:
    """(streams, chunk) for scoring within EVAL_MEMORY_BYTES: fewer parallel streams first, then
    shorter chunks (the state is carried across chunks, so the loss stays the same up to rounding)."""
    streams, chunk = 64, seq_len
    while streams > 1 and 4 * eval_floats(config, streams, chunk) > EVAL_MEMORY_BYTES:
        streams //= 2
    while chunk > 1 and 4 * eval_floats(config, streams, chunk) > EVAL_MEMORY_BYTES:
        chunk //= 2
    return streams, chunk


def evaluate(bundle: Bundle, text: str, seq_len: int = 256) -> dict[str, float]:
    """Loss on ``text``: {"loss": nats per token, "bpc": bits per character, "tokens", "chars"}.

    A loss that is not a finite number (a model whose weights are broken) raises ConfigError.
    """
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or not 1 <= seq_len <= 65536:
        raise ConfigError(f"seq_len must be a whole number from 1 to 65536 (got {seq_len!r})")
    ids = encode_corpus(bundle.tokenizer, text)
    if len(ids) < 2:
        raise ConfigError("the text is too short to evaluate: it needs at least two tokens")
    streams, chunk = _eval_shape(bundle.model.config, seq_len)
    nats, count = total_nats(bundle.model, ids, chunk, streams)
    loss = nats / count
    if not math.isfinite(loss):
        raise ConfigError(f"the model's loss on this text is not a finite number ({loss}): its weights are "
                          "broken; retrain it or load another model")
    return {"loss": loss, "bpc": bits_per_char(loss, chars_per_token(bundle.tokenizer, ids)),
            "tokens": count, "chars": len(text)}


__all__ = ["Bundle", "evaluate", "generate", "load", "stream"]
