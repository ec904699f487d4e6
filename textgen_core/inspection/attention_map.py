"""Where an attention model looks: the attention weights of every block and head from one position.

The model computes attention inside ``scaled_dot_product_attention`` and keeps no weights, so
training is not slowed by them; here they are recomputed from each block's own layers (its first
norm and query/key projection) on the block's input, which the block itself produces. Position i's
output depends only on the last ``receptive_field`` tokens up to i, so only those are read: the
weights are those of a pass over the whole text.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch

from ..data import encode_ids
from ..errors import ConfigError
from ..hub import Bundle
from ..models.attention import AttentionLanguageModel, Block, window_bias
from .spans import token_bounds


@dataclass
class AttentionRow:
    """The attention weights from one position over the tokens it can see."""
    text: str                  # the text the bounds index (see spans.token_bounds)
    bounds: torch.Tensor       # (N + 1,) character boundaries of the text's tokens
    position: int              # the token whose attention this is
    start: int                 # weights[..., j] belong to token start + j
    weights: torch.Tensor      # (layers, heads, position - start + 1); each row sums to 1

    def over_tokens(self, layer: int, head: int | None = None) -> torch.Tensor:
        """(N,) the weights on every token of the text (0 outside the window); ``head`` None: the
        mean over heads."""
        row = self.weights[layer].mean(0) if head is None else self.weights[layer, head]
        full = torch.zeros(len(self.bounds) - 1)
        full[self.start:self.position + 1] = row
        return full


def attention_matrix(block: Block, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (B, heads, T, T), values (B, heads, T, d)) of one block on its input x (B, T, C) with
    no cache: softmax(q k^T / sqrt(d) + bias), the weights ``scaled_dot_product_attention`` applies."""
    B, T, C = x.shape
    q, k, v = block.qkv(block.norm1(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, block.heads, C // block.heads).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias                # (B, heads, T, T)
    return torch.softmax(scores, dim=-1), v


def _attention_model(bundle: Bundle) -> AttentionLanguageModel:
    model = bundle.model
    if not isinstance(model, AttentionLanguageModel):
        raise ConfigError(f"attention weights belong to attention models; this one is {model.config.arch.upper()}"
                          + (" (see its units' activations instead)" if model.config.arch in ("gru", "lstm")
                             else " (see its receptive field instead)"))
    return model


@torch.inference_mode()
def attention_from(bundle: Bundle, text: str, position: int | None = None) -> AttentionRow:
    """The attention weights of every block and head from token ``position`` (default: the last)."""
    model = _attention_model(bundle)
    if not isinstance(text, str) or not text:
        raise ConfigError("give a text to read: it is empty")
    ids = encode_ids(bundle.tokenizer, text).long()
    position = len(ids) - 1 if position is None else position
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(ids):
        raise ConfigError(f"position must be a token index from 0 to {len(ids) - 1} (got {position!r})")
    start = max(0, position - model.receptive_field + 1)
    window = ids[start:position + 1].to(model.device)[None]              # (1, T)
    shown, bounds = token_bounds(bundle.tokenizer, text, ids.tolist())
    was_training = model.training
    model.eval()
    try:
        T, context = window.shape[1], model.config.context
        bias = window_bias(model.slopes, T, 0, context)                 # (heads, T, T)
        x = model.proj(model.embed(window))                             # (1, T, hidden); no dropout in eval
        rows = []
        for block, cache in zip(model.blocks, model.init_state(1, model.device)):
            weights, _ = attention_matrix(cast(Block, block), x, bias)
            rows.append(weights[0, :, -1, :].float().cpu())             # (heads, T): from the last position
            x, _ = block(x, bias, cache, keep=context - 1)
    finally:
        model.train(was_training)
    return AttentionRow(shown, bounds, position, start, torch.stack(rows))
