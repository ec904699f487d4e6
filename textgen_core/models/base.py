"""The forward contract shared by every language model.

    logits, state = model(ids, state)      ids: (B, T) int64, logits: (B, T, vocab_size)

``state`` is whatever the architecture carries between calls (RNN hidden state, CNN input
history, attention key/value cache); ``None`` means "start of text". Feeding a sequence in pieces
and carrying the state gives the same logits as feeding it whole; generation relies on this.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..errors import ConfigError
from .config import ModelConfig

State = Any  # a tensor, a tuple of tensors, or a list of them, depending on the architecture
_IGNORED_MIXIN_OPTIONS = {"strict", "token", "force_download", "local_files_only", "proxies",
                          "resume_download"}


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

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: Optional[str] = None,
                        cache_dir: Optional[str | Path] = None, map_location: str | torch.device = "cpu",
                        **options: Any) -> "LanguageModel":
        """The model saved in a folder (or a Hub repo ``owner/name``), of the class its config names.

        ``LanguageModel.from_pretrained`` returns whichever subclass the folder's ``arch`` needs; a
        subclass refuses another architecture's folder. The weights are checked against the config
        (names, shapes, size, free memory) before anything is built, then always loaded strictly.
        The mixin's download options (``strict``, ``token``, ...) are accepted and have no effect.
        """
        from .. import hub  # hub builds models, so it is imported only when a model is loaded

        unknown = sorted(set(options) - _IGNORED_MIXIN_OPTIONS)
        if unknown:
            raise ConfigError(f"from_pretrained takes no {', '.join(unknown)}: the model's sizes come from "
                              "its config.json; build a new model to change them")
        return hub.load_model(pretrained_model_name_or_path, device=map_location, expect=cls,
                              revision=revision, cache_dir=None if cache_dir is None else str(cache_dir))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
