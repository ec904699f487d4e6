"""The forward contract shared by every language model.

    logits, state = model(ids, state)      ids: (B, T) int64, logits: (B, T, vocab_size)

``state`` is whatever the architecture carries between calls (RNN hidden state, CNN input
history, attention key/value cache); ``None`` means "start of text". Feeding a sequence in pieces
and carrying the state gives the same logits as feeding it whole; generation relies on this.
"""
from __future__ import annotations

from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from .config import ModelConfig

State = Any  # a tensor, a tuple of tensors, or a list of them, depending on the architecture


class LanguageModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="textgen_core",
    tags=["text-generation", "textgen-core"],
    pipeline_tag="text-generation",
):
    """Base class: takes the JSON-able fields of ModelConfig as keyword arguments.

    Subclasses implement ``forward(ids, state=None) -> (logits, state)`` and
    ``init_state(batch, device) -> state`` (the state meaning "no text seen yet").
    """

    def __init__(self, arch: str, vocab_size: int, embedding: int = 64, hidden: int = 256,
                 layers: int = 2, dropout: float = 0.1, context: int = 128, heads: int = 4,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.config = ModelConfig(arch=arch, vocab_size=vocab_size, embedding=embedding,
                                  hidden=hidden, layers=layers, dropout=dropout, context=context,
                                  heads=heads, kernel_size=kernel_size).validated()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
