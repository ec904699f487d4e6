"""Surprisal: how surprised the model is by each token of a text, and what it expected instead.

    result = surprisal(bundle, text)        # one record per token
    result[7].piece, result[7].bits, result[7].top    # "e", 0.41, (("e", 0.75), ("a", 0.09), ...)

Token i is predicted from tokens 0..i-1, exactly as ``evaluate`` scores a text, so the summed
surprisal is ``evaluate``'s total loss. The first token has no prediction (``nats`` is None): the
model has read nothing yet, and ``evaluate`` does not score it either.

The text is read once, chunk by chunk with the state carried, so memory stays bounded. Texts over
SINGLE_STREAM_TOKENS are read as parallel streams (a batch of streams is two to three times as fast as
one long sequence on a 2-core CPU: BENCHMARKS.md). Each stream starts ``stream_warmup`` tokens early and
scores only after that; its state there is then compared with the state the stream before it ends
with at the same position. For a CNN or attention model the warm-up covers the whole receptive field,
so the two agree by construction. A GRU or LSTM reads RNN_WARMUP_TOKENS, after which a model that
forgets its start state agrees to rounding (the bundled char models: every token within 1e-5 nats of
one stream); one that does not (the bundled word GRU remembers its start for thousands of tokens) has
those streams read again from the true state. Either way the result is the one-pass result.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional, cast

import torch
import torch.nn.functional as F

from ..data import encode_ids, stream_positions
from ..errors import ConfigError
from ..evaluation import warmup_tokens
from ..hub import Bundle
from ..memory import eval_floats
from ..models import LanguageModel
from ..models.base import map_state, state_leaves
from ..tokenizers import Tokenizer
from .spans import token_bounds

TOP_K = 5
MAX_TOP_K = 50
MAX_TEXT_CHARS = 2_000_000        # results hold about 60 bytes a token; longer texts are refused
SINGLE_STREAM_TOKENS = 16_384     # up to this many predictions: one stream, exactly evaluate's reading
MAX_STREAMS = 16
STREAM_TOKENS = 4_096             # at least this many scored tokens per stream
RNN_WARMUP_TOKENS = 512           # see the module docstring
STATE_TOLERANCE = 1e-4            # a warmed-up state this close to the true one continues it
SURPRISAL_MEMORY_BYTES = 256_000_000   # one chunk's logits and activations, beyond the weights
MAX_CHUNK_TOKENS = 256            # per stream and call; longer calls are no faster (BENCHMARKS.md)


@dataclass(frozen=True)
class TokenRecord:
    index: int
    token_id: int
    piece: str                         # the token's text, as it stands in ``Surprisal.text``
    offset: int                        # its first character's offset in that text
    nats: Optional[float]              # -ln p(token | the tokens before it); None for the first token
    top: tuple[tuple[str, float], ...]  # the k most likely tokens at this position, with probabilities

    @property
    def bits(self) -> Optional[float]:
        return None if self.nats is None else self.nats / math.log(2)


@dataclass
class Surprisal:
    """Per-token surprisal of one text under one model, held as columns (about 60 bytes a token);
    ``result[i]`` and iteration give ``TokenRecord``s."""
    text: str                  # the text the offsets index (the input, see spans.token_bounds)
    ids: torch.Tensor          # (N,) int64 token ids
    bounds: torch.Tensor       # (N + 1,) int64: token i is text[bounds[i]:bounds[i + 1]]
    nats: torch.Tensor         # (N,) float32; nats[0] is NaN (the first token has no prediction)
    top_ids: torch.Tensor      # (N, k) int64 most likely ids, most likely first; row 0 is -1
    top_probs: torch.Tensor    # (N, k) float32 their probabilities at temperature 1; row 0 is 0
    tokenizer: Tokenizer
    model_name: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> TokenRecord:
        if not -len(self) <= index < len(self):
            raise IndexError(f"token {index} of {len(self)}")
        index %= len(self)
        start, end = int(self.bounds[index]), int(self.bounds[index + 1])
        nats = None if index == 0 else float(self.nats[index])
        top = () if index == 0 else tuple(
            (self.token_text(i), float(p)) for i, p in zip(self.top_ids[index].tolist(), self.top_probs[index]))
        return TokenRecord(index, int(self.ids[index]), self.text[start:end], start, nats, top)

    def __iter__(self) -> Iterator[TokenRecord]:
        return (self[i] for i in range(len(self)))

    def token_text(self, token_id: int) -> str:
        """A vocabulary entry shown on its own (a byte of a multi-byte character as e.g. <0xE4>)."""
        return self.tokenizer.token_strings([token_id])[0]

    @property
    def k(self) -> int:
        return self.top_ids.shape[1]

    @property
    def total_nats(self) -> float:
        """Summed surprisal of every predicted token (``evaluate``'s loss x tokens)."""
        return float(self.nats[1:].double().sum())

    @property
    def total_bits(self) -> float:
        return self.total_nats / math.log(2)

    @property
    def predicted_chars(self) -> int:
        """Characters of the predicted tokens: the text after its first token."""
        return len(self.text) - int(self.bounds[1])

    @property
    def bits_per_char(self) -> float:
        return self.total_bits / max(1, self.predicted_chars)

    @property
    def bits(self) -> torch.Tensor:
        """(N,) float32 bits per token (NaN for the first)."""
        return self.nats / math.log(2)

    def char_bits(self) -> torch.Tensor:
        """(len(text),) float32: each token's bits spread evenly over its characters (NaN on the
        first token's), so that models with different tokenizers compare character by character."""
        lengths = self.bounds[1:] - self.bounds[:-1]                        # (N,)
        per_char = self.bits / lengths.clamp(min=1)
        return torch.repeat_interleave(per_char, lengths)


def _check_text(text: str) -> None:
    if not isinstance(text, str):
        raise ConfigError(f"the text to score must be text (got {type(text).__name__})")
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(f"the text has {len(text):,} characters, more than the {MAX_TEXT_CHARS:,} one "
                          "surprisal pass may score; score a part of it")


def surprisal(bundle: Bundle, text: str, k: int = TOP_K) -> Surprisal:
    """Per-token surprisal of ``text`` with the ``k`` most likely tokens at every position."""
    _check_text(text)
    vocab = bundle.model.config.vocab_size
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_TOP_K:
        raise ConfigError(f"k (how many likely tokens to keep) must be a whole number from 1 to {MAX_TOP_K} "
                          f"(got {k!r})")
    ids = encode_ids(bundle.tokenizer, text).long()                      # (N,)
    if len(ids) < 2:
        raise ConfigError("the text is too short to score: it needs at least two tokens")
    shown, bounds = token_bounds(bundle.tokenizer, text, ids.tolist())
    nats, top_ids, top_probs = score_ids(bundle.model, ids, min(k, vocab))
    if not math.isfinite(float(nats.double().sum())):
        raise ConfigError("the model's surprisal on this text is not a finite number: its weights are broken; "
                          "retrain it or load another model")
    # row 0 (the first token) has no prediction
    nats = torch.cat([torch.full((1,), float("nan")), nats])
    top_ids = torch.cat([torch.full((1, top_ids.shape[1]), -1, dtype=torch.int64), top_ids])
    top_probs = torch.cat([torch.zeros(1, top_probs.shape[1]), top_probs])
    return Surprisal(shown, ids, bounds, nats, top_ids, top_probs, bundle.tokenizer, bundle.name)


def stream_warmup(model: LanguageModel) -> int:
    """Tokens a stream reads before it scores: ``warmup_tokens`` with RNN_WARMUP_TOKENS for a GRU or LSTM."""
    return warmup_tokens(model, RNN_WARMUP_TOKENS)


def stream_layout(predictions: int, warmup: int) -> tuple[int, int]:
    """(streams S, segment L): stream b reads inputs [b*L, b*L + L + W) and scores all of them (b = 0)
    or the last L (b > 0), so the scored parts tile [0, S*L + W) without overlap."""
    # the warm-ups together read at most a quarter more than the text itself
    streams = min(MAX_STREAMS, predictions // STREAM_TOKENS, predictions // (4 * max(1, warmup)) + 1)
    if predictions <= SINGLE_STREAM_TOKENS or streams < 2:
        return 1, predictions
    return streams, math.ceil((predictions - warmup) / streams)


def chunk_tokens(model: LanguageModel, streams: int) -> int:
    """Steps per call: at most MAX_CHUNK_TOKENS, halved until a chunk fits SURPRISAL_MEMORY_BYTES."""
    chunk = MAX_CHUNK_TOKENS
    while chunk > 1 and 4 * eval_floats(model.config, streams, chunk) > SURPRISAL_MEMORY_BYTES:
        chunk //= 2
    return chunk


def batch_dims(model: LanguageModel) -> list[int]:
    """For each tensor of the model's state, its batch dimension (the one in which a state for one
    stream and a state for two differ)."""
    try:
        one, two = model.init_state(1, "meta"), model.init_state(2, "meta")
    except (TypeError, RuntimeError, NotImplementedError):
        one, two = model.init_state(1), model.init_state(2)
    return [next(d for d, (a, b) in enumerate(zip(x.shape, y.shape)) if a != b)
            for x, y in zip(state_leaves(one), state_leaves(two))]


def state_row(state: Any, dims: list[int], row: int) -> Any:
    """Stream ``row`` of a batched state, in the state's own structure (the batch dimension kept)."""
    dims_left = iter(dims)
    return map_state(lambda tensor: tensor.narrow(next(dims_left), row, 1), state)


def state_gap(a: Any, b: Any) -> float:
    """The largest difference between two states of the same shape (inf when the shapes differ)."""
    pairs = list(zip(state_leaves(a), state_leaves(b)))
    if any(x.shape != y.shape for x, y in pairs):
        return math.inf
    return max((float((x.float() - y.float()).abs().max()) for x, y in pairs if x.numel()), default=0.0)


def forward_for(model: LanguageModel):
    """The model's forward; for a GRU or LSTM on the CPU, each call on one thread (the thread count is
    set back after every call, so other threads of the process never see the change). With passive
    OpenMP waiting, which the app and the CLI choose, waking a second thread at every time step costs
    more than it brings: an LSTM 256x2 scores 100,000 characters in 16 streams 1.1-1.2x faster on
    one thread than on two in the benchmark, up to 1.8x in other runs (BENCHMARKS.md). CNN and
    attention models are faster on all threads (about 1.5x)."""
    if model.device.type != "cpu" or model.config.arch not in ("gru", "lstm") or torch.get_num_threads() == 1:
        return model

    def one_thread(ids: torch.Tensor, state: Any = None):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return model(ids, state)
        finally:
            torch.set_num_threads(threads)

    return one_thread


def read(model: LanguageModel, inputs: torch.Tensor, targets: torch.Tensor, k: int, chunk: int,
         state: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Read (S, T) inputs chunk by chunk from ``state``: nats (S, T), top ids and probabilities
    (S, T, k), on the CPU, and the state after the last input."""
    streams, width = inputs.shape
    nats = torch.empty(streams, width)
    top_ids = torch.empty(streams, width, k, dtype=torch.int64)
    top_probs = torch.empty(streams, width, k)
    forward = forward_for(model)
    for start in range(0, width, chunk):
        logits, state = forward(inputs[:, start:start + chunk], state)      # (S, C, V)
        logits = logits.float()
        chunk_targets = targets[:, start:start + chunk]
        # the same per-token loss evaluate sums
        nats[:, start:start + chunk] = F.cross_entropy(
            logits.flatten(0, 1), chunk_targets.flatten(), reduction="none").view(streams, -1).cpu()
        # softmax at temperature 1 of the k largest logits only: exp(logit - logsumexp)
        best, best_ids = torch.topk(logits, k, dim=-1)                      # (S, C, k)
        top_probs[:, start:start + chunk] = (best - torch.logsumexp(logits, -1, keepdim=True)).exp().cpu()
        top_ids[:, start:start + chunk] = best_ids.cpu()
    return nats, top_ids, top_probs, state


@torch.inference_mode()
def score_ids(model: LanguageModel, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each j < N - 1, the prediction of ids[j + 1] from ids[:j + 1]: (nats (N-1,), top ids
    (N-1, k), top probabilities (N-1, k)), on the CPU: the results of one pass over the text.

    Read as parallel streams (``stream_layout``), each stream's state after its warm-up is checked
    against the state the stream before it ends with, at the same position. Where they differ by more
    than STATE_TOLERANCE (a model that has not forgotten its start state), that stream is read again
    from its predecessor's state, so every stream continues the one before it.
    """
    device = model.device
    predictions = len(ids) - 1
    warmup = stream_warmup(model)
    streams = stream_layout(predictions, warmup)[0]
    warmup = warmup if streams > 1 else 0
    index, scored = stream_positions(predictions, streams, warmup)       # (S, segment + warmup) each
    inputs, targets = ids[index].to(device), ids[index + 1].to(device)
    chunk = chunk_tokens(model, streams)
    was_training = model.training
    model.eval()
    try:
        warm = read(model, inputs[:, :warmup], targets[:, :warmup], k, chunk) if warmup else None
        rest = read(model, inputs[:, warmup:], targets[:, warmup:], k, chunk, warm[3] if warm else None)
        parts = [torch.cat([w, r], 1) for w, r in zip(warm[:3], rest[:3])] if warm else list(rest[:3])
        nats, top_ids, top_probs = parts
        if streams > 1:
            dims, ends = batch_dims(model), rest[3]
            previous = state_row(ends, dims, 0)                          # where stream 0 stops
            for b in range(1, streams):
                # several streams: each read a warm-up first (warmup_tokens: above 0 for the models built here)
                if state_gap(state_row(cast(tuple, warm)[3], dims, b), previous) > STATE_TOLERANCE:
                    again = read(model, inputs[b:b + 1, warmup:], targets[b:b + 1, warmup:], k,
                                 chunk_tokens(model, 1), previous)
                    for whole, part in zip((nats, top_ids, top_probs), again[:3]):
                        whole[b, warmup:] = part[0]
                    previous = again[3]
                else:
                    previous = state_row(ends, dims, b)
    finally:
        model.train(was_training)
    order = index[scored]                                                # positions, each once, ascending
    assert torch.equal(order, torch.arange(predictions)), "stream layout must tile the text"
    return nats[scored], top_ids[scored], top_probs[scored]
