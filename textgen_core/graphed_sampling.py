"""Chunked sampling for GRU/LSTM models on a GPU: a chunk of steps recorded once as a CUDA graph.

An eager sampling step at batch 1 is about fifteen tiny kernels (embedding, the RNN, the head,
temperature, filters, softmax, the draw, state copies), and on a GPU the CPU cost of launching them
dominates: about 1-2k tokens/s. Here ``chunk`` consecutive steps are recorded once into a CUDA graph
that reads and writes fixed ("static") buffers, and each replay runs them all with one launch; the host
waits for the GPU once per chunk, to read the chunk's ids.

The draw is the exponential race that ``torch.multinomial`` uses for one sample: the argmax of
``probs / noise`` with noise ~ Exp(1). The noise for a whole chunk is drawn from the caller's seeded
generator before each replay, so a seed fixes the text. Graphs are cached per model, batch and filter
shape (a new temperature or top-p value needs no new recording) and dropped with the model.
``TEXTGEN_CUDA_GRAPHS=0`` turns the recording off: the same chunked steps then run eagerly, as they
do where a recording fails.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Optional, cast

import torch

from .models import LanguageModel
from .sampling import next_token_probs, not_finite_error, plain_rnn_in_eval

CHUNK_STEPS = 32              # tokens per replay (fewer when a chunk's noise would be large)
NOISE_BUDGET = 1 << 22        # floats of noise per chunk (16 MB): chunk * batch * vocab at most this
GRAPHS_PER_MODEL = 4          # recorded graphs kept per model (least recently used dropped)


def graphs_enabled() -> bool:
    return os.environ.get("TEXTGEN_CUDA_GRAPHS", "1") != "0" and torch.cuda.is_available()


def _copy_state(target, source) -> None:
    if isinstance(target, torch.Tensor):
        target.copy_(source)
    else:
        for t, s in zip(target, source):
            t.copy_(s)


class ChunkedSampler:
    """Static buffers and the ``chunk`` steps that read and write them, recorded as a graph on a GPU.

    One step: pick the next ids from ``logits`` with this step's ``noise`` slice, write them to
    ``out``, feed them to the model and leave its new logits and state in the same buffers.
    """

    def __init__(self, model: LanguageModel, batch: int, greedy: bool, top_k: Optional[int],
                 use_top_p: bool, use_banned: bool) -> None:
        vocab = model.config.vocab_size
        device = model.device
        self.model_ref = weakref.ref(model)   # the cache must not keep a deleted model alive
        self.greedy, self.top_k, self.use_top_p, self.use_banned = greedy, top_k, use_top_p, use_banned
        self.chunk = max(1, min(CHUNK_STEPS, NOISE_BUDGET // (batch * vocab)))
        self.logits = torch.zeros(batch, vocab, device=device)                  # (B, V) last logits
        self.state = model.init_state(batch, device)                            # as the model carries it
        self.noise = torch.ones(self.chunk, batch, vocab, device=device)        # (K, B, V) Exp(1) draws
        self.out = torch.zeros(self.chunk, batch, dtype=torch.long, device=device)   # (K, B) the ids
        self.temperature = torch.ones((), device=device)
        self.top_p = torch.ones((), device=device)
        self.banned = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.finite = torch.ones((), dtype=torch.bool, device=device)          # every logit seen finite
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.record_failed = False            # then the same steps run eagerly
        self.lock = threading.Lock()          # buffers belong to one generation at a time

    def _pick(self, logits: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.use_banned:
            logits = logits.masked_fill(self.banned, float("-inf"))
        if self.greedy:
            return logits.argmax(dim=-1)
        probs = next_token_probs(logits, self.temperature, self.top_k, self.top_p if self.use_top_p else None)
        return (probs / noise).argmax(dim=-1)        # the exponential race: one multinomial draw per row

    def run_chunk(self) -> None:
        """The recorded work; called directly, it runs the same steps eagerly."""
        model = cast(LanguageModel, self.model_ref())   # alive: its generation holds it
        for k in range(self.chunk):
            self.finite.logical_and_(torch.isfinite(self.logits).all())         # NaN logits: broken weights
            next_ids = self._pick(self.logits, self.noise[k])                   # (B,)
            self.out[k].copy_(next_ids)
            logits, state = model(next_ids[:, None], self.state)                # (B, 1, V)
            self.logits.copy_(logits[:, -1])
            _copy_state(self.state, state)

    def record(self) -> None:
        """Record ``run_chunk`` as a CUDA graph. A warm-up run first lets cuDNN and cuBLAS set up their
        workspaces outside the recording; the buffers it changed are put back afterwards."""
        saved = [t.clone() for t in self._buffers()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.run_chunk()
        torch.cuda.current_stream().wait_stream(side)
        for buffer, value in zip(self._buffers(), saved):
            buffer.copy_(value)
        graph = torch.cuda.CUDAGraph()
        # thread_local: work that other threads (a training job) launch meanwhile is not recorded
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.run_chunk()
        self.graph = graph

    def _buffers(self) -> list[torch.Tensor]:
        state = [self.state] if isinstance(self.state, torch.Tensor) else list(self.state)
        return [self.logits, self.out, *state]

    def generate(self, logits: torch.Tensor, state, length: int, temperature: float, top_p: Optional[float],
                 banned: Optional[torch.Tensor], generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Yield ``length`` (B,) id tensors (on the CPU), starting from the prompt's last logits
        (B, V) and state; one host sync per chunk. NaN or infinite logits raise ConfigError."""
        self.logits.copy_(logits)
        self.finite.fill_(True)
        _copy_state(self.state, state)
        self.temperature.fill_(temperature if temperature > 0 else 1.0)
        self.top_p.fill_(top_p if top_p is not None else 1.0)
        if banned is not None:
            self.banned.copy_(banned)
        remaining = length
        while remaining > 0:
            if not self.greedy:
                self.noise.exponential_(generator=generator)
            if self.graph is not None:
                self.graph.replay()
            else:
                self.run_chunk()
            ids = self.out.cpu()                     # (K, B): waits for the chunk, once
            if not bool(self.finite):
                raise not_finite_error()
            yield from ids[:remaining]
            remaining -= len(ids)


# model -> {graph key: ChunkedSampler}; entries vanish with their model
_SAMPLERS: "weakref.WeakKeyDictionary[LanguageModel, OrderedDict]" = weakref.WeakKeyDictionary()
_SAMPLERS_LOCK = threading.Lock()


def supports_chunks(model: LanguageModel) -> bool:
    """A plain GRU/LSTM model in eval mode on a GPU with no hooks: its steps can be recorded."""
    return plain_rnn_in_eval(model, "cuda")


def acquire(model: LanguageModel, batch: int, greedy: bool, top_k: Optional[int], use_top_p: bool,
            use_banned: bool) -> Optional[ChunkedSampler]:
    """A sampler for these shapes, recorded where graphs are enabled and locked for the caller (who
    releases ``sampler.lock``), or None when the model does not qualify or another generation is
    using that sampler right now."""
    if not supports_chunks(model):
        return None
    top_k = None if top_k is None else min(top_k, model.config.vocab_size)
    weights = tuple(p.data_ptr() for p in model.parameters())   # moved or replaced weights: a new graph
    record = graphs_enabled()
    key = (batch, greedy, top_k, use_top_p, use_banned, weights, record)
    with _SAMPLERS_LOCK:
        cache = _SAMPLERS.setdefault(model, OrderedDict())
        sampler = cache.get(key)
        if sampler is None:
            sampler = ChunkedSampler(model, batch, greedy, top_k, use_top_p, use_banned)
            cache[key] = sampler
            while len(cache) > GRAPHS_PER_MODEL:
                cache.popitem(last=False)
        cache.move_to_end(key)
    if not sampler.lock.acquire(blocking=False):
        return None
    if record and sampler.graph is None and not sampler.record_failed:
        try:
            sampler.record()
        except RuntimeError:  # e.g. an op that cannot be recorded: the chunks run eagerly instead
            sampler.record_failed = True
    return sampler
