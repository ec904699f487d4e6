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


def count_parameters(config: ModelConfig) -> int:
    """Parameters of the model ``config`` describes, built on the meta device: nothing allocated."""
    with torch.device("meta"), _NoRandomFill():
        return build_model(config).num_parameters()


def training_memory_bytes(config: ModelConfig, batch: int, seq_len: int) -> tuple[int, int]:
    """(parameters, a lower bound of the bytes one training step needs): fp32 weights, gradients
    and two AdamW moments, plus the logits and one activation per layer for every token of a batch."""
    parameters = count_parameters(config)
    activations = 4 * batch * seq_len * (2 * config.vocab_size + config.hidden * config.layers)
    return parameters, 16 * parameters + activations


def check_memory(config: ModelConfig, batch: int, seq_len: int, device: str) -> None:
    """Raise ConfigError, saying what to change, when the run cannot fit in ``device``'s free memory."""
    free = free_memory_bytes(device)
    parameters, need = training_memory_bytes(config, batch, seq_len)
    if free is not None and need > free:
        where = "on the GPU" if device == "cuda" else "on this machine"
        raise ConfigError(f"this model ({parameters:,} parameters) with batches of {batch} x {seq_len} tokens "
                          f"needs at least {_size(need)} to train, more than the {_size(free)} free "
                          f"{where}; choose a smaller size, batch or sequence length")


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:.0f} MB"
