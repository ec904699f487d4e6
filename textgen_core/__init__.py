"""textgen_core: train, compare and sample recurrent (and other) language models on your own text.

    import textgen_core as tg
    bundle = tg.load("shakespeare-char-lstm")   # a bundled model, a folder or "owner/name" on the Hub
    print(tg.generate(bundle, prompt="ROMEO:", length=200, temperature=0.8, seed=1)[0])

The names below load on first use: importing the package itself does not load torch, so that
``python -m textgen_core`` answers Ctrl-C while torch loads, and ``--help`` is quick.
"""
from importlib import import_module

from .errors import ConfigError, CorpusError, HubError, ModelFolderError, TextgenError, TrainingDiverged  # noqa: F401

__version__ = "0.1.0"   # the package's version (pyproject.toml reads it from here)

_LAZY = {
    "evaluate": "api", "generate": "api", "load": "api", "stream": "api",
    "Corpus": "corpus", "read_file": "corpus", "read_text": "corpus",
    "Bundle": "hub",
    "surprisal": "inspection", "Explorer": "inspection", "activations": "inspection",
    "find_units": "inspection", "attention_from": "inspection", "influence": "inspection",
    "ARCHITECTURES": "models", "PRESETS": "models", "ModelConfig": "models", "build_model": "models",
    "RunSettings": "runs", "train_model": "runs",
    "SamplingOptions": "sampling",
    "TOKENIZER_KINDS": "tokenizers", "make_tokenizer": "tokenizers",
    "EvalResult": "training", "History": "training", "TrainConfig": "training", "Trainer": "training",
    "TrainingEnded": "training", "TrainProgress": "training",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'textgen_core' has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = sorted(["__version__", "ConfigError", "CorpusError", "HubError", "ModelFolderError", "TextgenError",
                  "TrainingDiverged", *_LAZY])
