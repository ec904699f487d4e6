"""GRU and LSTM language models on fused kernels: cuDNN's on a GPU, oneDNN's LSTM and gru_layer's GRU on
the CPU (nn.GRU / nn.LSTM hold the weights either way)."""
from __future__ import annotations

import torch
from torch import nn

from .. import gru_layer
from .base import LanguageModel, State


class RNNLanguageModel(LanguageModel):
    """embedding -> dropout -> stacked GRU/LSTM -> dropout -> linear head over the vocabulary.

    State: ``h`` of shape (layers, B, hidden) for a GRU, ``(h, c)`` for an LSTM.
    """

    def __init__(self, arch: str = "gru", vocab_size: int = 1, embedding: int = 64,
                 hidden: int = 256, layers: int = 2, dropout: float = 0.1, context: int = 128,
                 heads: int = 4, kernel_size: int = 3) -> None:
        super().__init__(arch, vocab_size, embedding, hidden, layers, dropout, context, heads,
                         kernel_size)
        rnn_class = {"gru": nn.GRU, "lstm": nn.LSTM}[arch]
        self.embed = nn.Embedding(vocab_size, embedding)
        self.drop = nn.Dropout(dropout)
        # inter-layer dropout is built into cuDNN's stacked RNN; it is only defined for layers > 1
        self.rnn = rnn_class(embedding, hidden, num_layers=layers, batch_first=True,
                             dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, ids: torch.Tensor, state: State = None) -> tuple[torch.Tensor, State]:
        if gru_layer.usable(self.rnn, self.embed.weight):     # the GRU on the CPU: its compiled loop
            if self.drop.p and self.training:
                out, state = gru_layer.gru(self.rnn, self.drop(self.embed(ids)), state)
            else:   # no dropout after the embedding: the first layer's input projection is a lookup
                out, state = gru_layer.gru_from_ids(self.rnn, self.embed.weight, ids, state)
        else:
            out, state = self.rnn(self.drop(self.embed(ids)), state)   # (B, T, hidden)
        return self.head(self.drop(out)), state     # (B, T, vocab)

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        cfg = self.config
        # torch.zeros, not zeros_like: zeros_like on the meta device (sampling's memory estimate) imports
        # torch's meta kernels, about 0.3 s at a process's first sampling
        zeros = lambda: torch.zeros(cfg.layers, batch, cfg.hidden, device=device or self.device)  # noqa: E731
        return (zeros(), zeros()) if cfg.arch == "lstm" else zeros()
