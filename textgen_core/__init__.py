"""textgen_core: train, compare and sample recurrent (and other) language models on your own text.

    import textgen_core as tg
    bundle = tg.load("pretrained/shakespeare-char-lstm")   # or "owner/name" on the Hub
    print(tg.generate(bundle, prompt="ROMEO:", length=200, temperature=0.8, seed=1)[0])
"""
from .api import evaluate, generate, load, stream
from .corpus import Corpus, read_file, read_text
from .errors import (ConfigError, CorpusError, HubError, ModelFolderError, TextgenError,
                     TrainingDiverged)
from .hub import Bundle
from .models import ARCHITECTURES, PRESETS, ModelConfig, build_model
from .runs import RunSettings, train_model
from .sampling import SamplingOptions
from .tokenizers import TOKENIZER_KINDS, make_tokenizer
from .training import EvalResult, History, TrainConfig, Trainer, TrainingEnded, TrainProgress

__all__ = [
    "ARCHITECTURES", "PRESETS", "TOKENIZER_KINDS", "Bundle", "ConfigError", "Corpus", "CorpusError",
    "EvalResult", "History", "HubError", "ModelConfig", "ModelFolderError", "RunSettings",
    "SamplingOptions", "TextgenError", "TrainConfig", "Trainer", "TrainingDiverged", "TrainingEnded",
    "TrainProgress", "build_model", "evaluate", "generate", "load", "make_tokenizer", "read_file",
    "read_text", "stream", "train_model",
]
