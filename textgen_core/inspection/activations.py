"""What the units of a GRU or LSTM do over a text: every layer's hidden state (and an LSTM's cell
state) after each token.

``nn.LSTM`` returns only the last layer's outputs and the final states, so the layers are run one
at a time with each layer's own weights through the same fused kernel (``torch.lstm`` / ``torch.gru``
with one layer): its outputs are that layer's hidden states. An LSTM's cell states follow from them
with ``nn.LSTMCell``'s equations: the gates of step t need only x_t and h_{t-1}, both known, so they
are computed for every step at once, and c_t = f_t * c_{t-1} + i_t * g_t is one multiply-add a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch

from ..data import encode_ids
from ..errors import ConfigError
from ..hub import Bundle
from ..models import LanguageModel
from ..tokenizers import Tokenizer
from .spans import token_bounds

MAX_ACTIVATION_TOKENS = 20_000   # per text: all units of all layers are kept (4 bytes x units x tokens)
KINDS = {"gru": ("hidden",), "lstm": ("hidden", "cell")}


@dataclass
class Activations:
    """Unit values after each token of a text: ``values[(layer, kind)]`` is (N, hidden)."""
    text: str                  # the text the bounds index (see spans.token_bounds)
    ids: torch.Tensor          # (N,) int64
    bounds: torch.Tensor       # (N + 1,) character boundaries of the tokens
    values: dict[tuple[int, str], torch.Tensor]
    arch: str
    tokenizer: Tokenizer

    @property
    def layers(self) -> int:
        return 1 + max(layer for layer, _ in self.values)

    @property
    def units(self) -> int:
        return next(iter(self.values.values())).shape[1]

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS[self.arch]

    def unit(self, layer: int, kind: str, unit: int) -> torch.Tensor:
        """(N,) one unit's value after each token."""
        if (layer, kind) not in self.values:
            raise ConfigError(f"no {kind} state in layer {layer}; this {self.arch.upper()} has layers 0 to "
                              f"{self.layers - 1} and states {', '.join(self.kinds)}")
        if not 0 <= unit < self.units:
            raise ConfigError(f"unit must be from 0 to {self.units - 1} (got {unit})")
        return self.values[(layer, kind)][:, unit]


def _rnn(model: LanguageModel) -> torch.nn.RNNBase:
    rnn = getattr(model, "rnn", None)
    if model.config.arch not in KINDS or not isinstance(rnn, (torch.nn.GRU, torch.nn.LSTM)):
        raise ConfigError(f"unit activations are shown for GRU and LSTM models; this one is "
                          f"{model.config.arch.upper()} (see its attention weights or receptive field instead)")
    return rnn


def layer_weights(rnn: torch.nn.RNNBase, layer: int) -> list[torch.Tensor]:
    """[w_ih (G*H, in), w_hh (G*H, H), b_ih, b_hh] of one layer (G = 4 gates for an LSTM, 3 for a GRU)."""
    return [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def lstm_cells(x: torch.Tensor, h: torch.Tensor, c0: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
    """(T, H) cell states of one LSTM layer, from its inputs x (T, in), its hidden states h (T, H) and
    its initial cell state c0 (H,): LSTMCell's equations with the gates of all steps in one product."""
    w_ih, w_hh, b_ih, b_hh = weights
    h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])               # (T, H): h_{t-1}, zeros at t = 0
    gates = x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh                   # (T, 4H) in PyTorch's order i, f, g, o
    i, f, g, _ = gates.chunk(4, dim=1)
    forget, written = torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(g)  # (T, H) each
    cells = torch.empty_like(h)
    c = c0
    for t in range(len(h)):                                              # c_t = f_t * c_{t-1} + i_t * g_t
        c = torch.addcmul(written[t], forget[t], c)
        cells[t] = c
    return cells


@torch.inference_mode()
def layer_states(model: LanguageModel, ids: torch.Tensor) -> dict[tuple[int, str], torch.Tensor]:
    """{(layer, "hidden"): (T, H), (layer, "cell"): (T, H) for an LSTM} after each of ``ids`` (T,),
    from the start state, on the CPU."""
    rnn = _rnn(model)
    was_training = model.training
    model.eval()
    try:
        embed = cast(torch.nn.Embedding, model.embed)
        x = embed(ids.to(model.device)[None])                            # (1, T, embedding); no dropout in eval
        values = {}
        hidden = model.config.hidden
        for layer in range(rnn.num_layers):
            weights = layer_weights(rnn, layer)
            zeros = torch.zeros(1, 1, hidden, device=x.device, dtype=x.dtype)
            if isinstance(rnn, torch.nn.LSTM):
                out, _, _ = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, False, False, True)
                values[(layer, "cell")] = lstm_cells(x[0], out[0], zeros[0, 0], weights).cpu()
            else:
                out, _ = torch.gru(x, zeros, weights, True, 1, 0.0, False, False, True)
            values[(layer, "hidden")] = out[0].cpu()
            x = out                                                      # the next layer's input
        return values
    finally:
        model.train(was_training)


def activations(bundle: Bundle, text: str) -> Activations:
    """Every unit of every layer of a GRU or LSTM after each token of ``text``."""
    _rnn(bundle.model)
    if not isinstance(text, str) or not text:
        raise ConfigError("give a text to read: it is empty")
    ids = encode_ids(bundle.tokenizer, text).long()
    if len(ids) > MAX_ACTIVATION_TOKENS:
        raise ConfigError(f"the text is {len(ids):,} tokens long; activations are shown for at most "
                          f"{MAX_ACTIVATION_TOKENS:,} tokens: use a shorter text")
    shown, bounds = token_bounds(bundle.tokenizer, text, ids.tolist())
    return Activations(shown, ids, bounds, layer_states(bundle.model, ids), bundle.model.config.arch,
                       bundle.tokenizer)
