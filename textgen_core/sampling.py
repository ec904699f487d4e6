"""Sampling: the prompt is read once, then one token at a time with the model's state carried.

Logit filters are tiny pure functions; ``sample_ids`` yields token ids for a batch of samples (step by
step; ``sample_id_chunks``: as the sampler makes them, several steps at a time) and ``stream_text``
turns them into text pieces as they come.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, TypeGuard

import torch

from . import native_step
from .devices import onednn_off
from .errors import ConfigError
from .models import LanguageModel
from .tokenizers import Tokenizer

if TYPE_CHECKING:
    from .models.rnn import RNNLanguageModel

MAX_LENGTH = 100_000   # tokens per sample; longer requests are refused, never silently cut
MAX_SAMPLES = 256
# All samples of a request together: their text is held in memory (about 1-200 MB at this limit).
MAX_TOTAL_TOKENS = 2_000_000
MAX_PROMPT_CHARS = 100_000          # longer prompts are refused (the app's prompt box uses this limit)
MAX_PROMPT_TOKENS = 4 * MAX_PROMPT_CHARS   # a byte-fallback tokenizer makes at most 4 tokens a character
# 0 means greedy. Between 0 and this, sampling is greedy in all but name (a logit gap of 0.1 becomes
# e^-100), and tiny values overflow logits / T to inf, whose softmax is NaN.
MIN_TEMPERATURE = 1e-3
# Memory one request may take beyond the model's weights: the samples' states and per-step work.
# A prompt pass takes at most PROMPT_PASS_BYTES of it; longer prompts are read in chunks at batch 1.
SAMPLING_MEMORY_LIMIT = 1_500_000_000
PROMPT_PASS_BYTES = 256_000_000
PROMPT_CHUNK_TOKENS = 1024

# torch.backends.mkldnn.flags (the benchmarks and tests compare with it) warns about an unrelated
# Intel-GPU TF32 setting; devices.onednn_off does not.
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")


def _is_whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass
class SamplingOptions:
    length: int = 200                 # new tokens per sample
    temperature: float = 0.8          # 0 means greedy (always the most likely token)
    top_k: Optional[int] = None       # keep only the k most likely tokens (None: all)
    top_p: Optional[float] = None     # keep the smallest set whose probability reaches p (None or 1: all)
    num_samples: int = 1              # samples drawn together in one batch
    seed: Optional[int] = None        # same seed, same text; None draws a fresh one

    def validated(self) -> "SamplingOptions":
        if not _is_whole(self.length) or not 0 <= self.length <= MAX_LENGTH:
            raise ConfigError(f"length must be a whole number from 0 to {MAX_LENGTH} (got {self.length!r})")
        if not _is_number(self.temperature) or not (self.temperature == 0 or
                                                    MIN_TEMPERATURE <= self.temperature <= 100):
            raise ConfigError(f"temperature must be 0 (greedy) or a number from {MIN_TEMPERATURE:g} to 100 "
                              f"(got {self.temperature!r})")
        if self.top_k is not None and (not _is_whole(self.top_k) or self.top_k < 1):
            raise ConfigError(f"top-k must be a whole number of at least 1 (got {self.top_k!r})")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 <= self.top_p <= 1):
            raise ConfigError(f"top-p must be from 0 to 1 (got {self.top_p!r})")
        if not _is_whole(self.num_samples) or not 1 <= self.num_samples <= MAX_SAMPLES:
            raise ConfigError(f"number of samples must be from 1 to {MAX_SAMPLES} (got {self.num_samples!r})")
        if self.num_samples * self.length > MAX_TOTAL_TOKENS:
            raise ConfigError(f"{self.num_samples} samples of {self.length} tokens are "
                              f"{self.num_samples * self.length:,} tokens, more than the {MAX_TOTAL_TOKENS:,} "
                              "one request may generate; ask for fewer samples or shorter ones")
        if self.seed is not None and (not _is_whole(self.seed) or not -2**63 <= self.seed < 2**64):
            raise ConfigError(f"seed must be a whole number that fits in 64 bits (got {self.seed!r})")
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


def pick_next(logits: torch.Tensor, options: SamplingOptions, generator: torch.Generator,
              noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, V) logits -> (B,) next ids under temperature, top-k and top-p.

    On the CPU the draw is ``fused_step.draw``: the ids ``torch.multinomial`` draws, in 4 ops instead
    of about 14; ``noise`` is its (B, V) buffer (made here when not given)."""
    if options.temperature == 0:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, options.temperature, options.top_k, active_top_p(options))
    if probs.device.type == "cpu" and probs.dtype == torch.float32:
        from .fused_step import draw

        return draw(probs, generator, torch.empty_like(probs) if noise is None else noise)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# oneDNN makes one LSTM step for a few samples several times slower on the CPU (3.6x at batch 1),
# but is about 25% faster from batch 48 up (BENCHMARKS.md); GRUs run the same either way (torch's
# GRU has no oneDNN kernel), so only an LSTM's calls turn the process-wide switch.
ONEDNN_OFF_MAX_BATCH = 32


def _onednn_off_helps(model: LanguageModel, batch: int) -> bool:
    return model.device.type == "cpu" and model.config.arch == "lstm" and batch <= ONEDNN_OFF_MAX_BATCH


def _cpu_rnn_fast_path(model: LanguageModel, batch: int = 1) -> contextlib.AbstractContextManager:
    """Plain kernels instead of oneDNN for an LSTM's small batches on the CPU, where they are faster."""
    return onednn_off() if _onednn_off_helps(model, batch) else contextlib.nullcontext()


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


def plain_rnn_in_eval(model: LanguageModel, device_type: str) -> TypeGuard[RNNLanguageModel]:
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


def _on_one_thread(call, *args):
    """``call(*args)`` with torch on one thread, the thread count set back afterwards, so code between
    calls (the caller's, or a training thread started meanwhile) never sees the change."""
    threads = torch.get_num_threads()
    if threads == 1:
        return call(*args)
    torch.set_num_threads(1)
    try:
        return call(*args)
    finally:
        torch.set_num_threads(threads)


def _one_thread(forward, batch: int):
    """``forward``, or on the CPU for tiny batches a wrapper that runs each call on one thread.

    The thread count is set back after every call, so code between steps (the caller's, or a
    training thread started meanwhile) never sees the change.
    """
    if batch > SINGLE_THREAD_MAX_BATCH or torch.get_num_threads() == 1:
        return forward

    def one_thread(ids: torch.Tensor, state=None):
        return _on_one_thread(forward, ids, state)

    return one_thread


def not_finite_error() -> ConfigError:
    return ConfigError("the model's output is not a finite number (NaN or infinite) while sampling: its "
                       "weights are broken; retrain it or load another model")


def check_finite(logits: torch.Tensor) -> None:
    """Raise a clear error when any of the (B, V) logits is NaN or infinite (softmax would be NaN).

    One sum is the check: it is NaN or infinite when any entry is (or when finite entries are so
    large that they overflow, which softmax / temperature would not survive either). It costs about
    3 us a step on the CPU, a quarter of ``isfinite(...).all()``.
    """
    if not math.isfinite(logits.sum().item()):
        raise not_finite_error()


def _tensors(state) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in _tensors(part)]
    return []


def _float_bytes(model: LanguageModel) -> int:
    return next(model.parameters()).element_size()


def state_bytes(model: LanguageModel) -> int:
    """Bytes of the state one sample carries while generating (an attention cache at its fullest)."""
    cfg = model.config
    if cfg.arch == "attention":  # keys and values of the last context - 1 positions, per block
        return 2 * cfg.layers * (cfg.context - 1) * cfg.hidden * _float_bytes(model)
    try:
        state = model.init_state(1, "meta")
    except (TypeError, RuntimeError, NotImplementedError):
        state = model.init_state(1)
    return sum(t.numel() * t.element_size() for t in _tensors(state))


def sampling_memory_bytes(model: LanguageModel, num_samples: int) -> int:
    """Memory beyond the weights that generating ``num_samples`` samples needs: each sample's state
    twice (a step builds the new state before the old one goes), about 16 floats per vocabulary entry
    for a step's logits, filters and draw, and one prompt pass (at most PROMPT_PASS_BYTES)."""
    per_sample = 2 * state_bytes(model) + 16 * 4 * model.config.vocab_size
    return num_samples * per_sample + PROMPT_PASS_BYTES


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.1f} MB"


def check_sampling_memory(model: LanguageModel, num_samples: int) -> None:
    """Refuse, with how many samples would fit, a request over SAMPLING_MEMORY_LIMIT."""
    need = sampling_memory_bytes(model, num_samples)
    if need <= SAMPLING_MEMORY_LIMIT:
        return
    each = (need - PROMPT_PASS_BYTES) / num_samples
    fits = int((SAMPLING_MEMORY_LIMIT - PROMPT_PASS_BYTES) // each)
    advice = f"ask for at most {fits} samples" if fits else "this model is too large to sample from here"
    raise ConfigError(f"{num_samples} sample(s) from this model need about {_size(need)} of memory "
                      f"({_size(each)} each for its state and next-token work), more than the "
                      f"{_size(SAMPLING_MEMORY_LIMIT)} one request may use; {advice}")


def _check_prompt_ids(prompt_ids: list[int]) -> None:
    if not prompt_ids:
        raise ConfigError("the prompt encodes to no tokens")
    if len(prompt_ids) > MAX_PROMPT_TOKENS:
        raise ConfigError(f"the prompt is {len(prompt_ids):,} tokens long, more than the {MAX_PROMPT_TOKENS:,} "
                          "a prompt may have; shorten it")


def _row_floats(model: LanguageModel, tokens: int) -> int:
    """Floats a prompt pass holds at its peak per sample and token: the logits, a few layers'
    activations and, for attention, a row of every head's attention matrix (tokens + cache wide)."""
    cfg = model.config
    floats = cfg.vocab_size + 16 * cfg.hidden
    if cfg.arch == "attention":
        floats += 3 * cfg.heads * (tokens + cfg.context)
    return floats


def _pass_bytes(model: LanguageModel, batch: int, tokens: int) -> int:
    return 4 * batch * tokens * _row_floats(model, tokens)


def _chunk_tokens(model: LanguageModel) -> int:
    """The longest piece (at most PROMPT_CHUNK_TOKENS) a batch-1 pass reads within PROMPT_PASS_BYTES."""
    tokens = PROMPT_CHUNK_TOKENS
    while tokens > 1 and _pass_bytes(model, 1, tokens) > PROMPT_PASS_BYTES:
        tokens //= 2
    return tokens


def _repeat_like(state, one, two, batch: int):
    """``state`` (for one sample) repeated ``batch`` times along each tensor's batch dimension: the one
    dimension in which ``init_state(1)`` (``one``) and ``init_state(2)`` (``two``) differ. None where
    the structures do not match."""
    if isinstance(state, torch.Tensor):
        if not isinstance(one, torch.Tensor) or not isinstance(two, torch.Tensor) or state.dim() != one.dim():
            return None
        dims = [i for i, (a, b) in enumerate(zip(one.shape, two.shape)) if a != b]
        if len(dims) != 1 or state.shape[dims[0]] != 1:
            return None
        repeats = [1] * state.dim()
        repeats[dims[0]] = batch
        return state.repeat(*repeats)
    if not isinstance(state, (tuple, list)) or not isinstance(one, (tuple, list)) or \
            not isinstance(two, (tuple, list)) or not len(state) == len(one) == len(two):
        return None
    parts = [_repeat_like(s, o, t, batch) for s, o, t in zip(state, one, two)]
    if any(part is None for part in parts):
        return None
    return tuple(parts) if isinstance(state, tuple) else parts


def repeat_state(model: LanguageModel, state, batch: int):
    """A one-sample ``state`` repeated for ``batch`` samples (None where the model's state has no
    batch dimension this can find)."""
    try:
        one, two = model.init_state(1, "meta"), model.init_state(2, "meta")
    except (TypeError, RuntimeError, NotImplementedError):
        one, two = model.init_state(1), model.init_state(2)
    return _repeat_like(state, one, two, batch)


def _read_in_chunks(model: LanguageModel, forward, ids: torch.Tensor, chunk: int):
    """(B, V) last logits and the state after reading ``ids`` (B, P) ``chunk`` tokens at a time."""
    state = None
    for start in range(0, ids.shape[1], chunk):
        logits, state = forward(ids[:, start:start + chunk], state)
        last = logits[:, -1, :].clone()   # (B, V): the (B, chunk, V) logits are dropped at once
        del logits
    return last, state


def read_prompt(model: LanguageModel, forward, prompt_ids: list[int], batch: int):
    """The prompt's last logits (batch, V) and the model's state after it, for ``batch`` samples.

    A prompt whose pass for the whole batch fits in PROMPT_PASS_BYTES (the usual case) is read in
    that one pass. A longer one is read once at batch 1, in chunks with the state carried, and its
    state repeated for every sample, so memory stays bounded at any length; a CNN or attention model
    sees only its last ``receptive_field`` tokens, so only those are read (same logits and state, up to
    rounding).
    """
    device = model.device
    if _pass_bytes(model, batch, len(prompt_ids)) <= PROMPT_PASS_BYTES:
        logits, state = forward(torch.tensor([prompt_ids] * batch, device=device))   # (B, P, V)
        return logits[:, -1, :], state
    window = getattr(model, "receptive_field", None)
    if isinstance(window, int) and window > 0:
        prompt_ids = prompt_ids[-window:]
    chunk = _chunk_tokens(model)
    last, state = _read_in_chunks(model, forward, torch.tensor([prompt_ids], device=device), chunk)
    if batch == 1:
        return last, state
    repeated = repeat_state(model, state, batch)
    if repeated is None:   # a state this cannot repeat: read the prompt for every sample
        ids = torch.tensor([prompt_ids] * batch, device=device)
        return _read_in_chunks(model, forward, ids, max(1, chunk // batch))
    return last.repeat(batch, 1), repeated


def _cpu_call(model: LanguageModel, forward, batch: int):
    """``forward`` for the CPU sampler: oneDNN off for small batches and one thread for tiny ones, set
    around each call only. Both are process-wide: held across a generator's yields they would stay
    changed for a training in another thread, or for good when the generator is dropped unfinished."""
    forward = _one_thread(forward, batch)
    if not _onednn_off_helps(model, batch):
        return forward

    def without_onednn(ids: torch.Tensor, state=None):
        with onednn_off():
            return forward(ids, state)

    return without_onednn


def _fused_step(model: LanguageModel, batch: int):
    """``FusedRnnStep`` for one sample of a plain GRU/LSTM on the CPU, else None."""
    from .fused_step import FusedRnnStep, fused_step_supported

    if batch != 1 or not fused_step_supported(model):
        return None
    return FusedRnnStep


def _fast_picker(options: SamplingOptions, generator: torch.Generator, vocab: int):
    """``pick_next`` for (1, V) float32 CPU logits, with its buffers made once: the same ids."""
    if options.temperature == 0 or options.top_k is not None or active_top_p(options) is not None:
        return lambda logits: pick_next(logits, options, generator)
    from .fused_step import draw

    temperature, scaled, noise = options.temperature, torch.empty(1, vocab), torch.empty(1, vocab)

    def pick(logits: torch.Tensor) -> torch.Tensor:   # next_token_probs without filters, then the draw
        return draw(torch.softmax(torch.div(logits, temperature, out=scaled), dim=-1), generator, noise)

    return pick


def _sample_fused(make_step, model: LanguageModel, last: torch.Tensor, state, options: SamplingOptions,
                  banned_ids: tuple[int, ...], generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``sample_id_chunks``'s loop for one sample through a ``FusedRnnStep`` (its logits are the
    module's bit for bit, so the ids are too), each step on one thread: (steps, 1) ids at a time."""
    fused = make_step(model, banned_ids)
    fused.load_state(state)
    if banned_ids:   # the prompt's logits; the step's own carry -inf there already
        last = last.clone()
        last[:, list(banned_ids)] = float("-inf")
    if native_step.available():   # the same loop compiled: the same ids
        yield from _sample_native(fused, last, state, options, generator)
        return
    pick = _fast_picker(options, generator, last.shape[-1])
    for step in range(options.length):
        next_ids = pick(last)                                                    # (1,)
        yield next_ids[None]
        if step + 1 < options.length:   # finite by construction (fused_step.MAX_WEIGHT)
            last = _on_one_thread(fused.step, int(next_ids))


def _sample_native(fused, last: torch.Tensor, state, options: SamplingOptions,
                   generator: torch.Generator) -> Iterator[torch.Tensor]:
    """``_sample_fused``'s loop in C++ (``native_step``), ``native_step.CHUNK`` tokens a call, each call
    on one thread; each call's ids yielded at once, (steps, 1)."""
    sampler = native_step.NativeSampler(fused, options.temperature, options.top_k, active_top_p(options),
                                        generator)
    sampler.load_state(state)
    first: Optional[torch.Tensor] = last
    for start in range(0, options.length, native_step.CHUNK):
        steps = min(native_step.CHUNK, options.length - start)
        feed_last = start + steps < options.length   # the last token needs no step
        ids = _on_one_thread(sampler.sample, first, steps, feed_last)           # (steps,)
        first = None
        yield ids[:, None]


@torch.inference_mode()
def sample_ids(model: LanguageModel, prompt_ids: list[int], options: SamplingOptions,
               banned_ids: tuple[int, ...] = ()) -> Iterator[torch.Tensor]:
    """Yield (num_samples,) next-token ids, ``options.length`` times (on the model's device, or on
    the CPU where a GPU samples in recorded chunks: ``graphed_sampling``).

    The prompt is read once (``read_prompt``); afterwards each step feeds only the newest token.
    ``banned_ids`` (e.g. the unknown token) are never produced. A model whose logits are NaN or
    infinite raises ConfigError, as does a request over SAMPLING_MEMORY_LIMIT.
    """
    for chunk in sample_id_chunks(model, prompt_ids, options, banned_ids):
        yield from chunk.unbind(0)


@torch.inference_mode()
def sample_id_chunks(model: LanguageModel, prompt_ids: list[int], options: SamplingOptions,
                     banned_ids: tuple[int, ...] = ()) -> Iterator[torch.Tensor]:
    """``sample_ids``'s ids as the sampler makes them: (steps, num_samples) tensors, ``options.length``
    rows in all. The compiled batch-1 loop makes ``native_step.CHUNK`` steps a call, so a caller that
    reads them a chunk at a time (``stream_text``) spends no Python on each token's tensor."""
    from . import graphed_sampling
    from .memory import is_out_of_memory

    options.validated()
    _check_prompt_ids(prompt_ids)
    check_sampling_memory(model, options.num_samples)
    device = model.device
    generator = torch.Generator(device=device)
    if options.seed is None:
        generator.seed()
    else:
        generator.manual_seed(options.seed % 2**64)
    was_training = model.training
    model.eval()
    try:
        forward = step_forward = model
        if device.type == "cpu":
            forward = _cpu_call(model, model, options.num_samples)
            step_forward = _cpu_call(model, _rnn_step(model) or model, options.num_samples)
        last, state = read_prompt(model, forward, prompt_ids, options.num_samples)   # (B, V)
        check_finite(last)
        banned = None   # (V,) bool mask, built once
        if banned_ids and len(banned_ids) < last.shape[-1]:
            banned = torch.zeros(last.shape[-1], dtype=torch.bool, device=device)
            banned[list(banned_ids)] = True
        if device.type == "cuda":  # chunks of steps replayed as CUDA graphs where the model allows
            chunked = graphed_sampling.acquire(model, options.num_samples, options.temperature == 0,
                                               options.top_k, active_top_p(options) is not None,
                                               banned is not None)
            if chunked is not None:
                try:
                    for next_ids in chunked.generate(last, state, options.length, options.temperature,
                                                     active_top_p(options), banned, generator):
                        yield next_ids[None]
                finally:
                    chunked.lock.release()
                return
        make_step = _fused_step(model, options.num_samples)
        if make_step is not None:   # batch 1 of a GRU/LSTM on the CPU: the same ids, fewer ops
            banned_list = tuple(banned_ids) if banned is not None else ()
            yield from _sample_fused(make_step, model, last, state, options, banned_list, generator)
            return
        for step in range(options.length):
            if banned is not None:
                last = last.masked_fill(banned, float("-inf"))
            next_ids = pick_next(last, options, generator)                      # (B,)
            yield next_ids[None]
            if step + 1 < options.length:  # the last token needs no forward pass
                logits, state = step_forward(next_ids[:, None], state)
                last = logits[:, -1, :]
                check_finite(last)
    except (RuntimeError, MemoryError) as exc:   # torch.OutOfMemoryError is a RuntimeError
        if not is_out_of_memory(exc):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()  # give back what this attempt took, so the next one can run
        raise ConfigError(f"out of memory while sampling {options.num_samples} sample(s) from a "
                          f"{len(prompt_ids)}-token prompt on {device.type}; ask for fewer samples or "
                          "a shorter prompt, or sample on the CPU") from exc
    finally:
        model.train(was_training)


def start_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; an empty prompt starts after a newline (or the first token) instead."""
    if prompt is not None and not isinstance(prompt, str):
        raise ConfigError(f"the prompt must be text (got {type(prompt).__name__})")
    if prompt and len(prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(f"the prompt has {len(prompt):,} characters, more than the {MAX_PROMPT_CHARS:,} "
                          "a prompt may have; shorten it")
    if prompt:
        ids = tokenizer.encode(prompt)
        if ids:
            return ids
    newline = tokenizer.encode("\n")
    return newline if newline and tokenizer.unk_id not in newline else [0]


class _IncrementalDecoder:
    """Decodes ids one at a time, holding back pieces that end inside a multi-byte character."""

    def __init__(self, tokenizer: Tokenizer, max_pending: int = 8) -> None:
        self.tokenizer, self.max_pending = tokenizer, max_pending
        self.pending: list[int] = []

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
    options.validated()
    banned = tokenizer.never_generate
    decoders = [_IncrementalDecoder(tokenizer) for _ in range(options.num_samples)]
    for chunk in sample_id_chunks(model, start_ids(tokenizer, prompt), options, banned):
        for next_ids in chunk.tolist():
            yield [decoder.push(i) for decoder, i in zip(decoders, next_ids)]
    tails = [decoder.flush() for decoder in decoders]
    if any(tails):
        yield tails
