"""A causal dilated convolutional language model (WaveNet-style gated residual blocks)."""
from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .base import LanguageModel, State


def dilation_schedule(layers: int, kernel_size: int, context: int) -> list[int]:
    """Dilations 1, 2, 4, ... restarting whenever one more doubling would see past ``context``."""
    cycle = max(1, int(math.log2((context - 1) / (kernel_size - 1) + 1)))
    return [2 ** (i % cycle) for i in range(layers)]


class CausalConvBlock(nn.Module):
    """Gated dilated causal convolution with a residual connection, over (B, C, T)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.history = (kernel_size - 1) * dilation  # past inputs each output position needs
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # x: (B, C, T); past: (B, C, history) = the normalised inputs before x (zeros at start)
        h = self.norm(x.transpose(1, 2)).transpose(1, 2)
        h = torch.cat([past, h], dim=2)              # (B, C, history + T)
        new_past = h[:, :, h.shape[2] - self.history:]
        dilation = self.conv.dilation[0]
        if h.shape[2] == self.history + 1 and dilation > 1:
            # One new position (a generation step): its kernel taps are every dilation-th input, so an
            # undilated convolution over those alone gives the same output. CPU kernels for dilated
            # convolutions are slow for such tiny inputs (BENCHMARKS.md: pretrained sampling).
            h = F.conv1d(h[:, :, ::dilation], self.conv.weight, self.conv.bias)
        else:
            h = self.conv(h)
        h = F.glu(h, dim=1)                          # (B, C, T): tanh-free GLU gate
        return x + self.drop(self.out(h)), new_past


class CNNLanguageModel(LanguageModel):
    """embedding -> projection -> causal conv blocks -> norm -> head.

    Each position sees ``receptive_field`` tokens back (at most ``context``). State: a list with
    the last ``history`` normalised inputs of every block, so generation never re-reads text.
    """

    def __init__(self, arch: str = "cnn", vocab_size: int = 1, embedding: int = 64,
                 hidden: int = 128, layers: int = 4, dropout: float = 0.1, context: int = 64,
                 heads: int = 4, kernel_size: int = 3) -> None:
        super().__init__(arch, vocab_size, embedding, hidden, layers, dropout, context, heads,
                         kernel_size)
        self.embed = nn.Embedding(vocab_size, embedding)
        self.proj = nn.Linear(embedding, hidden) if embedding != hidden else nn.Identity()
        self.drop = nn.Dropout(dropout)
        dilations = dilation_schedule(layers, kernel_size, context)
        self.blocks = nn.ModuleList(CausalConvBlock(hidden, kernel_size, d, dropout) for d in dilations)
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size)
        self.receptive_field = 1 + sum(cast(CausalConvBlock, block).history for block in self.blocks)

    def forward(self, ids: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        x = self.drop(self.proj(self.embed(ids))).transpose(1, 2)   # (B, hidden, T)
        new_state = []
        for block, past in zip(self.blocks, state):
            x, past = block(x, past.to(x.dtype))
            new_state.append(past)
        x = self.norm(x.transpose(1, 2))                             # (B, T, hidden)
        return self.head(self.drop(x)), new_state

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        device = device or self.device
        return [torch.zeros(batch, self.config.hidden, cast(CausalConvBlock, b).history, device=device)
                for b in self.blocks]
