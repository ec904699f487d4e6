"""Which earlier tokens a position's prediction can see, and how strongly it responds to each.

A CNN sees a fixed set of offsets back (its kernel taps, dilated and stacked: ``visible_offsets``).
How strongly a prediction responds to an earlier token is the size of the gradient of the log
probability of the model's most likely next token with respect to that token's embedding. A token
the model cannot see has no path to the prediction, so its gradient is exactly 0: for a CNN the
tokens that count are exactly its visible offsets; an RNN's response fades with distance instead.
The gradient is taken on a private copy of the model whose embedding is one row per position, so
the (shared) model itself is never changed, hooked or given gradients.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, cast

import torch

from ..data import encode_ids
from ..errors import ConfigError
from ..hub import Bundle
from ..models import LanguageModel
from ..models.cnn import CNNLanguageModel
from .spans import token_bounds

RNN_WINDOW = 256                   # tokens back probed for a GRU or LSTM (their reach is unbounded)
MAX_WINDOW = 1024


def visible_offsets(model: LanguageModel) -> Optional[list[int]]:
    """Distances back (0 = the position itself) that the prediction at a position sees, ascending;
    None for a GRU or LSTM (no bound). A CNN's are the sums of one tap offset per block, each block
    adding {0, d, ..., (kernel - 1) d} for its dilation d (its residual path adds 0)."""
    if isinstance(model, CNNLanguageModel):
        offsets = {0}
        for block in model.blocks:
            conv = cast(torch.nn.Conv1d, block.conv)
            dilation, taps = conv.dilation[0], conv.kernel_size[0]
            offsets = {o + tap * dilation for o in offsets for tap in range(taps)}
        return sorted(offsets)
    window = getattr(model, "receptive_field", None)
    return list(range(window)) if isinstance(window, int) and window > 0 else None


@dataclass
class Influence:
    """How strongly the prediction after ``position`` responds to each earlier token."""
    text: str                  # the text the bounds index (see spans.token_bounds)
    bounds: torch.Tensor       # (N + 1,) character boundaries of the text's tokens
    position: int              # the token after which the next one is predicted
    start: int                 # change[j] belongs to token start + j
    change: torch.Tensor       # (position - start + 1,) gradient norm per token (0: not seen)
    visible: Optional[list[int]]   # visible_offsets(model)

    def over_tokens(self) -> torch.Tensor:
        """(N,) the response to every token of the text (0 outside the probed window)."""
        full = torch.zeros(len(self.bounds) - 1)
        full[self.start:self.position + 1] = self.change
        return full


def _window(model: LanguageModel) -> int:
    field = getattr(model, "receptive_field", None)
    return min(MAX_WINDOW, field if isinstance(field, int) and field > 0 else RNN_WINDOW)


def sensitivity(model: LanguageModel, window: torch.Tensor) -> torch.Tensor:
    """(T,) for each token of ``window`` (T,), the norm of the gradient of log p(most likely next
    token after the window) with respect to that token's embedding."""
    private = copy.deepcopy(model).eval()      # the caller's model stays as it is (and may be shared)
    private.requires_grad_(False)
    table = cast(torch.nn.Embedding, private.embed).weight
    rows = table.detach()[window].clone().requires_grad_(True)                    # (T, embedding)
    private.embed = torch.nn.Embedding.from_pretrained(rows, freeze=False)       # position j reads row j
    positions = torch.arange(len(window), device=rows.device)[None]              # (1, T)
    with torch.enable_grad():
        logits, _ = private(positions)
        log_probs = torch.log_softmax(logits[0, -1].float(), -1)
        (grad,) = torch.autograd.grad(log_probs.max(), private.embed.weight)     # type: ignore[union-attr,arg-type]
    return grad.norm(dim=-1).cpu()


def influence(bundle: Bundle, text: str, position: Optional[int] = None) -> Influence:
    """How strongly the prediction after token ``position`` (default: the last) responds to each
    earlier token within the model's reach (RNN_WINDOW tokens for an RNN)."""
    if not isinstance(text, str) or not text:
        raise ConfigError("give a text to read: it is empty")
    ids = encode_ids(bundle.tokenizer, text).long()
    position = len(ids) - 1 if position is None else position
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(ids):
        raise ConfigError(f"position must be a token index from 0 to {len(ids) - 1} (got {position!r})")
    start = max(0, position - _window(bundle.model) + 1)
    shown, bounds = token_bounds(bundle.tokenizer, text, ids.tolist())
    change = sensitivity(bundle.model, ids[start:position + 1].to(bundle.model.device))
    return Influence(shown, bounds, position, start, change, visible_offsets(bundle.model))
