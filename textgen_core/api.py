"""The short Python API: load a model, generate or stream text, score a text."""
from __future__ import annotations

from typing import Iterator, Optional

from .errors import ConfigError
from .evaluation import bits_per_char, total_nats
from .hub import Bundle, load
from .runs import chars_per_token, encode_corpus
from .sampling import SamplingOptions, stream_text


def _options(length: int, temperature: float, top_k: Optional[int], top_p: Optional[float],
             num_samples: int, seed: Optional[int]) -> SamplingOptions:
    return SamplingOptions(length=length, temperature=temperature, top_k=top_k, top_p=top_p,
                           num_samples=num_samples, seed=seed).validated()


def generate(bundle: Bundle, prompt: str = "", length: int = 200, temperature: float = 0.8,
             top_k: Optional[int] = None, top_p: Optional[float] = None, num_samples: int = 1,
             seed: Optional[int] = None) -> list[str]:
    """``num_samples`` texts, each the prompt followed by ``length`` generated tokens."""
    options = _options(length, temperature, top_k, top_p, num_samples, seed)
    texts = [prompt] * num_samples
    for pieces in stream_text(bundle.model, bundle.tokenizer, prompt, options):
        texts = [text + piece for text, piece in zip(texts, pieces)]
    return texts


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


def evaluate(bundle: Bundle, text: str, seq_len: int = 256) -> dict[str, float]:
    """Loss on ``text``: {"loss": nats per token, "bpc": bits per character, "tokens", "chars"}."""
    ids = encode_corpus(bundle.tokenizer, text)
    if len(ids) < 2:
        raise ConfigError("the text is too short to evaluate: it needs at least two tokens")
    nats, count = total_nats(bundle.model, ids, seq_len)
    loss = nats / count
    return {"loss": loss, "bpc": bits_per_char(loss, chars_per_token(bundle.tokenizer, ids)),
            "tokens": count, "chars": len(text)}


__all__ = ["Bundle", "evaluate", "generate", "load", "stream"]
