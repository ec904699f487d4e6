"""ModelConfig: every number that defines a network, JSON-able, with size presets."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..errors import ConfigError

ARCHITECTURES = ("gru", "lstm", "cnn", "attention")
PRESETS = ("tiny", "small", "medium", "large")

# (embedding, hidden, layers, context) per architecture and preset. RNN sizes follow char-rnn;
# CNN and attention get more layers because each layer sees a bounded window.
_PRESET_SIZES: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "gru":       {"tiny": (32, 128, 1, 0), "small": (64, 256, 2, 0),
                  "medium": (128, 512, 2, 0), "large": (256, 1024, 2, 0)},
    "lstm":      {"tiny": (32, 128, 1, 0), "small": (64, 256, 2, 0),
                  "medium": (128, 512, 2, 0), "large": (256, 1024, 2, 0)},
    "cnn":       {"tiny": (64, 128, 4, 64), "small": (128, 256, 6, 128),
                  "medium": (256, 384, 8, 256), "large": (384, 512, 10, 256)},
    "attention": {"tiny": (64, 64, 2, 64), "small": (128, 128, 4, 128),
                  "medium": (256, 256, 6, 256), "large": (384, 384, 6, 256)},
}


@dataclass
class ModelConfig:
    arch: str = "gru"          # one of ARCHITECTURES
    vocab_size: int = 0        # number of token ids (set from the tokenizer)
    embedding: int = 64        # token embedding width
    hidden: int = 256          # RNN state / CNN channels / attention model width
    layers: int = 2            # stacked RNN layers, conv layers, or transformer blocks
    dropout: float = 0.1       # dropout between layers (0 disables)
    context: int = 128         # attention window; CNN dilations restart to stay near it; RNNs: unbounded
    heads: int = 4             # attention heads (attention only; must divide hidden)
    kernel_size: int = 3       # convolution width (cnn only)

    @classmethod
    def from_preset(cls, arch: str, preset: str, vocab_size: int, **overrides) -> "ModelConfig":
        """A preset's sizes, with explicit values (not None) taking precedence."""
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown model '{arch}'; choose one of {', '.join(ARCHITECTURES)}")
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
        embedding, hidden, layers, context = _PRESET_SIZES[arch][preset]
        values: dict[str, Any] = dict(arch=arch, vocab_size=vocab_size, embedding=embedding, hidden=hidden,
                                      layers=layers, context=context or 128)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """The config a ``config.json`` describes; it must name its architecture (no silent GRU)."""
        if not isinstance(values, dict):
            raise ConfigError(f"a model config must be a JSON object, not {type(values).__name__}")
        if "arch" not in values:
            raise ConfigError("config.json does not say which architecture (arch) the model is; it must "
                              f"hold \"arch\": one of {', '.join(ARCHITECTURES)}")
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown model settings: {', '.join(sorted(unknown))}")
        return cls(**values).validated()

    def to_dict(self) -> dict:
        return asdict(self)

    def validated(self) -> "ModelConfig":
        """Self, after checking every value; raises ConfigError naming the bad setting."""
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"unknown model '{self.arch}'; choose one of {', '.join(ARCHITECTURES)}")
        limits = {"vocab_size": (1, 2_000_000), "embedding": (1, 8192), "hidden": (1, 8192),
                  "layers": (1, 64), "context": (2, 65536), "heads": (1, 256), "kernel_size": (2, 64)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{name} must be a whole number from {low} to {high} (got {value!r})")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be at least 0 and below 1 (got {self.dropout!r})")
        if self.arch == "attention" and self.hidden % self.heads:
            raise ConfigError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        return self
