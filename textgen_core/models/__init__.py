"""Language models behind one forward contract; ``build_model`` picks the class for a config."""
from __future__ import annotations

from .attention import AttentionLanguageModel
from .base import LanguageModel, State
from .cnn import CNNLanguageModel
from .config import ARCHITECTURES, PRESETS, ModelConfig
from .rnn import RNNLanguageModel

MODEL_CLASSES: dict[str, type[LanguageModel]] = {
    "gru": RNNLanguageModel,
    "lstm": RNNLanguageModel,
    "cnn": CNNLanguageModel,
    "attention": AttentionLanguageModel,
}


def build_model(config: ModelConfig) -> LanguageModel:
    """A freshly initialised model for ``config`` (validated first)."""
    config.validated()
    return MODEL_CLASSES[config.arch](**config.to_dict())


__all__ = ["ARCHITECTURES", "PRESETS", "AttentionLanguageModel", "CNNLanguageModel",
           "LanguageModel", "ModelConfig", "RNNLanguageModel", "State", "build_model"]
