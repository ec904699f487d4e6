"""Will a training run fit? Checked before anything large is allocated, so that a model too big for
the machine is refused with what to change, instead of swapping or being killed mid-way."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.overrides import TorchFunctionMode

from .errors import ConfigError
from .models import ModelConfig, build_model


def free_memory_bytes(device: str) -> Optional[int]:
    """Memory a new training run can take on ``device`` ("cpu" or "cuda"; None: unknown)."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class _NoRandomFill(TorchFunctionMode):
    """Inside ``torch.device("meta")``: skip the random fills of weight initialisation.

    A meta tensor has no values to fill, but its first random fill runs a Python reference that
    imports torch._dynamo and sympy (about 1.5 s): the check would pay it in the app's page, on the
    first Start. A training process still imports them once, when torch.optim builds its first
    optimizer, which in the app happens in the job's thread. Both the ``torch.nn.init`` functions
    (what layers call) and the tensor methods are skipped.
    """
    RANDOM_FILLS = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.random_,
                    torch.Tensor.bernoulli_, torch.Tensor.exponential_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init":
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


def parameter_sizes(config: ModelConfig) -> list[int]:
    """Element counts of every parameter of the model ``config`` describes, built on the meta device."""
    with torch.device("meta"), _NoRandomFill():
        return [p.numel() for p in build_model(config).parameters()]


def count_parameters(config: ModelConfig) -> int:
    """Parameters of the model ``config`` describes, built on the meta device: nothing allocated."""
    return sum(parameter_sizes(config))


# Measured on the CPU in fp32 (tests/test_memory.py compares every preset with a real step), rounded
# up a little. Peaks come in two phases. In forward + backward: weights, the previous step's gradients
# (freed only after the forward pass) and the AdamW moments, 16 bytes a parameter, plus every saved
# activation, the logits and the gradients of the softmax. In the optimizer step: 16 bytes a parameter;
# the fused AdamW (CPU and GPU) makes no temporaries, but bf16 autocast on a GPU keeps bf16 copies of the
# weights, 2 bytes a parameter, through backward.
SLACK_BYTES_PER_PARAMETER = 1       # allocator rounding and the odd small tensor
ACTIVATION_SLACK = 1.05


def _history(config: ModelConfig) -> int:
    """Past positions all the CNN's blocks keep together (each block's (kernel - 1) * dilation)."""
    from .models.cnn import dilation_schedule

    return sum((config.kernel_size - 1) * d for d in dilation_schedule(config.layers, config.kernel_size,
                                                                       config.context))


def step_floats(config: ModelConfig, batch: int, seq_len: int) -> float:
    """Floats (4 bytes each) a training step holds beyond the weights and optimizer: per token, what
    backward needs of each layer, the logits, log-softmax and their two gradients (4 x vocab), the
    token ids; plus what grows with the sequence rather than the tokens."""
    H, L, E, V = config.hidden, config.layers, config.embedding, config.vocab_size
    per_token: float = 4 * V + 6
    per_sequence = 0.0
    if config.arch == "gru":      # CPU GRU cells: 3 gates, reset-scaled state, clones for in-place ops
        per_token += 9.5 * H * L + 2 * H + 3 * E
    elif config.arch == "lstm":   # oneDNN's LSTM workspace (4 gates, cell, outputs) and the layer inputs
        per_token += 18.5 * H * L + 6 * E
    elif config.arch == "cnn":    # per block: norm, padded input, conv (2H), gate, 1x1 conv, dropout
        per_token += 7 * H * L + H + E
        per_sequence += 2 * batch * H * _history(config)
    else:
        # Per block: norms, qkv, keys and values, MLP (4H twice), dropouts: about 18H; and each head's
        # full seq_len x seq_len attention matrix (positions beyond the context window are masked, not
        # skipped), saved for backward in every block plus two more in the block being differentiated.
        per_token += 18 * H * L + 2 * H + 4 * E + config.heads * seq_len * (L + 2)
        per_sequence += (config.heads + 2) * seq_len * seq_len   # the window bias and its masks
    return ACTIVATION_SLACK * (batch * seq_len * per_token + per_sequence)


def eval_floats(config: ModelConfig, streams: int, seq_len: int) -> float:
    """Floats a validation pass holds beyond the weights: per row of ``streams`` x ``seq_len``, the
    logits and log-softmax, a layer's activations, and the carried state (a step builds the new state
    before the old one goes: twice)."""
    H, L, V, T = config.hidden, config.layers, config.vocab_size, seq_len
    if config.arch in ("gru", "lstm"):
        per_row = 3 * V + 4 * H + 1.5 * H * L
    elif config.arch == "cnn":        # each block's padded input stays referenced by the state
        per_row = 3 * V + 6 * H + 2 * H * (L * T + _history(config)) / T
    else:                             # keys and values of the cache and the chunk, attention rows
        per_row = (3 * V + 6 * H + 4 * H * L * (T + config.context) / T + 2 * H * L
                   + 3 * config.heads * (T + config.context))
    return ACTIVATION_SLACK * streams * seq_len * per_row


def training_memory_bytes(config: ModelConfig, batch: int, seq_len: int) -> tuple[int, int]:
    """(parameters, bytes one training step needs at its peak; see ``step_floats``)."""
    parameters = count_parameters(config)
    fixed = (16 + SLACK_BYTES_PER_PARAMETER + 2) * parameters
    return parameters, int(fixed + 4 * step_floats(config, batch, seq_len))


def evaluation_memory_bytes(config: ModelConfig, seq_len: int, streams: int = 64) -> int:
    """Bytes a validation pass in ``streams`` parallel streams of ``seq_len`` chunks needs (the
    weights, gradients and moments stay alive meanwhile)."""
    parameters = count_parameters(config)
    fixed = (16 + SLACK_BYTES_PER_PARAMETER + 2) * parameters
    return int(fixed + 4 * eval_floats(config, streams, seq_len))


def check_memory(config: ModelConfig, batch: int, seq_len: int, device: str, eval_streams: int = 64) -> None:
    """Raise ConfigError, saying what to change, when the run cannot fit in ``device``'s free memory:
    a training step, or a validation pass in up to ``eval_streams`` streams (the Trainer's default)."""
    free = free_memory_bytes(device)
    if free is None:
        return
    parameters, need = training_memory_bytes(config, batch, seq_len)
    need = max(need, evaluation_memory_bytes(config, seq_len, eval_streams))
    if need > free:
        where = "on the GPU" if device == "cuda" else "on this machine"
        raise ConfigError(f"this model ({parameters:,} parameters) with batches of {batch} x {seq_len} tokens "
                          f"needs about {_size(need)} to train, more than the {_size(free)} free "
                          f"{where}; choose a smaller size, batch or sequence length")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"


_ALLOCATOR_MESSAGES = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory",
                       "CUDA out of memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` means the device ran out of memory: torch's OutOfMemoryError, MemoryError, or
    the RuntimeError the CPU allocator raises ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _ALLOCATOR_MESSAGES)
