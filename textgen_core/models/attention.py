"""A small causal transformer with sliding-window attention and ALiBi position biases.

ALiBi biases depend only on the distance between positions, so a key/value cache of the last
``context - 1`` positions lets generation run forever without re-reading text, and the step-by-step
logits equal the full-sequence ones.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LanguageModel, State


def alibi_slopes(heads: int) -> torch.Tensor:
    """Geometric slopes 2^(-8/heads), 2^(-16/heads), ... (Press et al., 2022)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


def window_bias(slopes: torch.Tensor, new: int, cached: int, context: int) -> torch.Tensor:
    """(heads, new, cached + new) additive mask: -slope * distance inside the window, -inf outside."""
    query_pos = torch.arange(cached, cached + new, device=slopes.device)[:, None]
    key_pos = torch.arange(cached + new, device=slopes.device)[None, :]
    distance = (query_pos - key_pos).float()                       # (new, cached + new)
    visible = (distance >= 0) & (distance < context)
    bias = -slopes[:, None, None] * distance                       # (heads, new, cached + new)
    return bias.masked_fill(~visible, float("-inf"))


class Block(nn.Module):
    """Pre-norm transformer block: windowed self-attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor],
                keep: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        k = torch.cat([cache[0].to(k.dtype), k], dim=2)             # (B, heads, cached + T, d)
        v = torch.cat([cache[1].to(v.dtype), v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        y = y.transpose(1, 2).reshape(B, T, C)
        x = x + self.drop(self.proj(y))
        x = x + self.drop(self.mlp(self.norm2(x)))
        start = max(0, k.shape[2] - keep)
        return x, (k[:, :, start:], v[:, :, start:])


class AttentionLanguageModel(LanguageModel):
    """embedding -> projection -> transformer blocks -> norm -> head; each block sees ``context`` tokens.

    State: per block, the cached keys and values (B, heads, <= context - 1, head_dim).
    """

    slopes: torch.Tensor   # a buffer, registered in __init__

    def __init__(self, arch: str = "attention", vocab_size: int = 1, embedding: int = 64,
                 hidden: int = 64, layers: int = 2, dropout: float = 0.1, context: int = 64,
                 heads: int = 4, kernel_size: int = 3) -> None:
        super().__init__(arch, vocab_size, embedding, hidden, layers, dropout, context, heads,
                         kernel_size)
        self.embed = nn.Embedding(vocab_size, embedding)
        self.proj = nn.Linear(embedding, hidden) if embedding != hidden else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab_size)
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)
        # each block looks context - 1 positions back, so stacked blocks reach further
        self.receptive_field = layers * (context - 1) + 1

    def forward(self, ids: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        cached = state[0][0].shape[2]
        bias = window_bias(self.slopes, ids.shape[1], cached, self.config.context)
        x = self.drop(self.proj(self.embed(ids)))                     # (B, T, hidden)
        new_state = []
        for block, cache in zip(self.blocks, state):
            x, cache = block(x, bias, cache, keep=self.config.context - 1)
            new_state.append(cache)
        return self.head(self.drop(self.norm(x))), new_state          # (B, T, vocab)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        cfg = self.config
        empty = torch.zeros(batch, cfg.heads, 0, cfg.hidden // cfg.heads, device=device or self.device)
        return [(empty, empty) for _ in self.blocks]
