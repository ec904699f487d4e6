"""Validation loss over a whole token stream, and the conversion to bits per character."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .data import eval_streams
from .models import LanguageModel


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, a no-op context otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def total_nats(model: LanguageModel, ids: torch.Tensor, seq_len: int, streams: int = 64,
               precision: str = "fp32") -> tuple[float, int]:
    """Sum of next-token losses (nats) over ``ids`` and the number of tokens predicted.

    The ids are cut into ``streams`` contiguous streams read chunk by chunk with the model's state
    carried, so each prediction sees its stream's earlier text.
    """
    device = model.device
    inputs, targets = eval_streams(ids, streams, seq_len)
    inputs, targets = inputs.to(device), targets.to(device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    state = None
    for start in range(0, inputs.shape[1], seq_len):
        with autocast_for(device, precision):
            logits, state = model(inputs[:, start:start + seq_len], state)
        chunk_targets = targets[:, start:start + seq_len]
        total += F.cross_entropy(logits.float().flatten(0, 1), chunk_targets.flatten(), reduction="sum")
    model.train(was_training)
    return total.item(), targets.numel()


def bits_per_char(loss_per_token: float, chars_per_token: float) -> float:
    """Bits per character = nats per token / characters per token / ln 2 (comparable across tokenizers)."""
    return loss_per_token / chars_per_token / math.log(2)
