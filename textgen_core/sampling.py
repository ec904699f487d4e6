"""Sampling: the prompt is read once, then one token at a time with the model's state carried.

Logit filters are tiny pure functions; ``sample_ids`` yields token ids for a batch of samples and
``stream_text`` turns them into text pieces as they come.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from .errors import ConfigError
from .models import LanguageModel
from .tokenizers import Tokenizer

MAX_LENGTH = 100_000   # tokens per sample; longer requests are refused, never silently cut
MAX_SAMPLES = 256

# Toggling oneDNN off for sampling makes torch warn about an unrelated Intel-GPU TF32 setting.
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")


@dataclass
class SamplingOptions:
    length: int = 200                 # new tokens per sample
    temperature: float = 0.8          # 0 means greedy (always the most likely token)
    top_k: Optional[int] = None       # keep only the k most likely tokens (None: all)
    top_p: Optional[float] = None     # keep the smallest set whose probability reaches p (None or 1: all)
    num_samples: int = 1              # samples drawn together in one batch
    seed: Optional[int] = None        # same seed, same text; None draws a fresh one

    def validated(self) -> "SamplingOptions":
        if not isinstance(self.length, int) or not 0 <= self.length <= MAX_LENGTH:
            raise ConfigError(f"length must be a whole number from 0 to {MAX_LENGTH} (got {self.length!r})")
        if not 0 <= self.temperature <= 100:
            raise ConfigError(f"temperature must be from 0 to 100 (got {self.temperature!r})")
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise ConfigError(f"top-k must be a whole number of at least 1 (got {self.top_k!r})")
        if self.top_p is not None and not 0 <= self.top_p <= 1:
            raise ConfigError(f"top-p must be from 0 to 1 (got {self.top_p!r})")
        if not isinstance(self.num_samples, int) or not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ConfigError(f"number of samples must be from 1 to {MAX_SAMPLES} (got {self.num_samples!r})")
        if self.seed is not None and not -2**63 <= self.seed < 2**64:
            raise ConfigError(f"seed must fit in 64 bits (got {self.seed!r})")
        return self


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Logits outside the k largest per row set to -inf. (B, V) -> (B, V)."""
    k = min(k, logits.shape[-1])
    threshold = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < threshold, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the most likely tokens until their probability reaches p (at least one)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # drop a token when the tokens before it already reach p; the first token always stays
    drop = (probs.cumsum(dim=-1) - probs) >= p
    drop[..., 0] = False
    return logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def next_token_probs(logits: torch.Tensor, temperature, top_k: Optional[int], top_p) -> torch.Tensor:
    """(B, V) logits -> (B, V) probabilities after temperature, top-k and top-p (``None``: no filter).

    ``temperature`` and ``top_p`` may be floats or 0-dim tensors (a recorded CUDA graph reads tensors).
    """
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.softmax(logits, dim=-1)


def active_top_p(options: SamplingOptions) -> Optional[float]:
    """top-p when it filters anything (below 1), else None."""
    return options.top_p if options.top_p is not None and options.top_p < 1 else None


def pick_next(logits: torch.Tensor, options: SamplingOptions,
              generator: torch.Generator) -> torch.Tensor:
    """(B, V) logits -> (B,) next ids under temperature, top-k and top-p."""
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, options.temperature, options.top_k, active_top_p(options))
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# oneDNN makes one LSTM step for a few samples several times slower on the CPU (3.6x at batch 1),
# but is about 25% faster from batch 48 up (BENCHMARKS.md); GRUs run the same either way.
ONEDNN_OFF_MAX_BATCH = 32


def _cpu_rnn_fast_path(model: LanguageModel, batch: int = 1) -> contextlib.AbstractContextManager:
    """Plain kernels instead of oneDNN for small batches on the CPU, where they are faster."""
    if model.device.type == "cpu" and batch <= ONEDNN_OFF_MAX_BATCH:
        return torch.backends.mkldnn.flags(enabled=False)
    return contextlib.nullcontext()


# On the CPU a step for a handful of samples is a few matrix-vector products: splitting them over
# threads costs more than it saves, and on a busy machine the threads wait for each other
# (BENCHMARKS.md: one thread is as fast at batch 1 on an idle machine, faster up to batch 4, and
# several times faster while other processes load the CPU; from batch 16 up, more threads win).
SINGLE_THREAD_MAX_BATCH = 4


def _has_hooks(model: torch.nn.Module) -> bool:
    from torch.nn.modules import module as module_globals

    if getattr(module_globals, "_global_forward_hooks", None) or \
            getattr(module_globals, "_global_forward_pre_hooks", None):
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def plain_rnn_in_eval(model: LanguageModel, device_type: str) -> bool:
    """A GRU/LSTM language model of the project's own class, in eval mode on ``device_type``, with no
    hooks: its steps may run outside ``nn.Module.__call__`` (a kernel-call step, a recorded graph)."""
    from .models.rnn import RNNLanguageModel

    return (type(model) is RNNLanguageModel and not model.training and model.device.type == device_type
            and not _has_hooks(model))


def _rnn_step(model: LanguageModel):
    """For a plain GRU/LSTM model in eval mode on the CPU: the forward pass as its three kernel calls.

    ``RNNLanguageModel.forward`` in eval mode is embedding -> torch.gru / torch.lstm -> linear (the
    dropouts are the identity); at batch 1 the Python of nn.Module calls and nn.LSTM.forward's checks
    cost about a third of a step. This calls the same ops with the same arguments, so the logits are
    bit for bit the module's (a test checks it). None when anything differs from that exact shape
    (another class, training mode, hooks that would otherwise fire, a non-CPU device).
    """
    if not plain_rnn_in_eval(model, "cpu"):
        return None
    embed, rnn, head = model.embed, model.rnn, model.head
    if type(embed) is not torch.nn.Embedding or type(head) is not torch.nn.Linear or \
            type(rnn) not in (torch.nn.GRU, torch.nn.LSTM) or rnn.bidirectional or not rnn.batch_first or \
            getattr(rnn, "proj_size", 0):
        return None
    kernel = torch.lstm if type(rnn) is torch.nn.LSTM else torch.gru
    F = torch.nn.functional
    rnn._update_flat_weights()  # what nn.LSTM/GRU.forward does first (weights do not change while sampling)

    def step(ids: torch.Tensor, state):
        x = F.embedding(ids, embed.weight, embed.padding_idx, embed.max_norm, embed.norm_type,
                        embed.scale_grad_by_freq, embed.sparse)
        out, *new_state = kernel(x, state, rnn._flat_weights, rnn.bias, rnn.num_layers, float(rnn.dropout),
                                 False, False, True)
        return F.linear(out, head.weight, head.bias), (tuple(new_state) if len(new_state) == 2 else new_state[0])

    return step


def _one_thread(forward, batch: int):
    """``forward``, or on the CPU for tiny batches a wrapper that runs each call on one thread.

    The thread count is set back after every call, so code between steps (the caller's, or a
    training thread started meanwhile) never sees the change.
    """
    if batch > SINGLE_THREAD_MAX_BATCH or torch.get_num_threads() == 1:
        return forward

    def one_thread(ids: torch.Tensor, state=None):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return forward(ids, state)
        finally:
            torch.set_num_threads(threads)

    return one_thread


@torch.inference_mode()
def sample_ids(model: LanguageModel, prompt_ids: list[int], options: SamplingOptions,
               banned_ids: tuple[int, ...] = ()) -> Iterator[torch.Tensor]:
    """Yield (num_samples,) next-token ids, ``options.length`` times (on the model's device, or on
    the CPU where a GPU samples in recorded chunks: ``graphed_sampling``).

    The prompt is read in one forward pass; afterwards each step feeds only the newest token.
    ``banned_ids`` (e.g. the unknown token) are never produced.
    """
    from . import graphed_sampling

    options.validated()
    if not prompt_ids:
        raise ConfigError("the prompt encodes to no tokens")
    device = model.device
    generator = torch.Generator(device=device)
    if options.seed is None:
        generator.seed()
    else:
        generator.manual_seed(options.seed % 2**64)
    was_training = model.training
    model.eval()
    try:
        with _cpu_rnn_fast_path(model, options.num_samples):
            forward = step_forward = model
            if device.type == "cpu":
                forward = _one_thread(model, options.num_samples)
                step_forward = _one_thread(_rnn_step(model) or model, options.num_samples)
            ids = torch.tensor([prompt_ids] * options.num_samples, device=device)   # (B, P)
            logits, state = forward(ids)
            banned = None   # (V,) bool mask, built once
            if banned_ids and len(banned_ids) < logits.shape[-1]:
                banned = torch.zeros(logits.shape[-1], dtype=torch.bool, device=device)
                banned[list(banned_ids)] = True
            if device.type == "cuda":  # chunks of steps replayed as CUDA graphs where the model allows
                chunked = graphed_sampling.acquire(model, options.num_samples, options.temperature == 0,
                                                   options.top_k, active_top_p(options) is not None,
                                                   banned is not None)
                if chunked is not None:
                    try:
                        yield from chunked.generate(logits[:, -1, :], state, options.length, options.temperature,
                                                    active_top_p(options), banned, generator)
                    finally:
                        chunked.lock.release()
                    return
            for step in range(options.length):
                last = logits[:, -1, :]
                if banned is not None:
                    last = last.masked_fill(banned, float("-inf"))
                next_ids = pick_next(last, options, generator)                      # (B,)
                yield next_ids
                if step + 1 < options.length:  # the last token needs no forward pass
                    logits, state = step_forward(next_ids[:, None], state)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give back what this attempt took, so the next one can run
        raise ConfigError(f"out of memory while sampling {options.num_samples} sample(s) from a "
                          f"{len(prompt_ids)}-token prompt on {device.type}; ask for fewer samples or "
                          "a shorter prompt, or sample on the CPU") from exc
    finally:
        model.train(was_training)


def start_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts after a newline (or the first token) instead."""
    if prompt:
        ids = tokenizer.encode(prompt)
        if ids:
            return ids
    newline = tokenizer.encode("\n")
    return newline if newline and tokenizer.unk_id not in newline else [0]


class _IncrementalDecoder:
    """Decodes ids one at a time, holding back pieces that end inside a multi-byte character."""

    def __init__(self, tokenizer: Tokenizer, max_pending: int = 8) -> None:
        self.tokenizer, self.max_pending, self.pending = tokenizer, max_pending, []

    def push(self, token_id: int) -> str:
        self.pending.append(token_id)
        text = self.tokenizer.decode(self.pending)
        if text.endswith("\ufffd") and len(self.pending) < self.max_pending:
            return ""
        self.pending = []
        return text

    def flush(self) -> str:
        text = self.tokenizer.decode(self.pending) if self.pending else ""
        self.pending = []
        return text


def stream_text(model: LanguageModel, tokenizer: Tokenizer, prompt: str,
                options: SamplingOptions) -> Iterator[list[str]]:
    """Yield, per step, the new text of every sample (a list of num_samples strings)."""
    banned = tokenizer.never_generate
    decoders = [_IncrementalDecoder(tokenizer) for _ in range(options.num_samples)]
    for next_ids in sample_ids(model, start_ids(tokenizer, prompt), options, banned):
        yield [decoder.push(i) for decoder, i in zip(decoders, next_ids.tolist())]
    tails = [decoder.flush() for decoder in decoders]
    if any(tails):
        yield tails
