"""Validation loss over a whole token stream, and the conversion to bits per character."""
from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch
import torch.nn.functional as F

from .data import stream_positions
from .models import LanguageModel


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for, a no-op context otherwise."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Tokens each GRU or LSTM stream after the first reads, unscored, before its own part (the first
# starts where one long read does, from no state). On tiny Shakespeare's validation split in 64
# streams (BENCHMARKS.md, "Validation in warmed-up streams"), with 128 the bundled char GRU and LSTM
# scored as one stream does to 1e-5 nats/token, and a GRU trained with its state carried to 2.3e-5
# (4.1e-3 worse with no warm-up).
RNN_WARMUP_TOKENS = 128
WARMUP_SHARE = 0.25      # the warm-ups read at most this share more than the text itself
# Up to this many predictions: one stream, exact for any model. A word model's split is often this short,
# and such a model may remember its start for thousands of tokens: the bundled word GRU scored its
# 3,772 validation tokens 0.013 nats/token lower in three warmed-up streams than in one.
SINGLE_STREAM_TOKENS = 16_384
IGNORED = -100           # the target of a position read but not scored (cross_entropy's ignore_index)


def warmup_tokens(model: LanguageModel, rnn_warmup: Optional[int] = None) -> int:
    """Tokens a stream reads before it scores: a CNN's or attention model's receptive field (then the
    streams score exactly what one stream would), or ``rnn_warmup`` (RNN_WARMUP_TOKENS) for a GRU or LSTM."""
    window = getattr(model, "receptive_field", None)
    if isinstance(window, int) and window > 0:
        return window - 1
    return RNN_WARMUP_TOKENS if rnn_warmup is None else rnn_warmup


def eval_stream_count(predictions: int, max_streams: int, warmup: int) -> int:
    """Streams to read ``predictions`` in: one up to SINGLE_STREAM_TOKENS, else up to ``max_streams``
    while the warm-ups add at most WARMUP_SHARE to what is read."""
    if predictions <= SINGLE_STREAM_TOKENS:
        return 1
    return max(1, min(max_streams, int(WARMUP_SHARE * predictions / max(1, warmup))))


@torch.no_grad()
def total_nats(model: LanguageModel, ids: torch.Tensor, seq_len: int, streams: int = 64,
               precision: str = "fp32") -> tuple[float, int]:
    """Sum of next-token losses (nats) over ``ids`` and the number of tokens predicted.

    The ids are read as up to ``streams`` parallel streams, chunk by chunk (``seq_len`` tokens) with
    the model's state carried, each stream after the first warmed up on the text before its part
    (``stream_positions``), so each prediction sees the text before it as one long read would.
    """
    device = model.device
    predictions = len(ids) - 1
    warmup = warmup_tokens(model)
    index, scored = stream_positions(predictions, eval_stream_count(predictions, streams, warmup), warmup)
    inputs, targets = ids[index].long(), ids[index + 1].long()
    targets[~scored] = IGNORED                                           # warm-ups and the last stream's padding
    inputs, targets = inputs.to(device), targets.to(device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    state = None
    for start in range(0, inputs.shape[1], seq_len):
        with autocast_for(device, precision):
            logits, state = model(inputs[:, start:start + seq_len], state)
        total += F.cross_entropy(logits.float().flatten(0, 1), targets[:, start:start + seq_len].flatten(),
                                 ignore_index=IGNORED, reduction="sum")
    model.train(was_training)
    return total.item(), predictions


def bits_per_char(loss_per_token: float, chars_per_token: float) -> float:
    """Bits per character = nats per token / characters per token / ln 2 (comparable across tokenizers)."""
    return loss_per_token / chars_per_token / math.log(2)
