"""Char / word / SentencePiece tokenizers behind one interface, plus make and load by name."""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from textgen_core.errors import ConfigError, ModelFolderError
from textgen_core.files import MAX_TOKENIZER_BYTES, inside, parse_json, read_bytes
from textgen_core.tokenizers.base import TOKENIZER_FILE, Tokenizer
from textgen_core.tokenizers.char import CharTokenizer
from textgen_core.tokenizers.sentencepiece import SentencePieceTokenizer
from textgen_core.tokenizers.word import WordTokenizer

TOKENIZER_KINDS = ("char", "word", "sentencepiece")
_CLASSES: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer, "word": WordTokenizer, "sentencepiece": SentencePieceTokenizer,
}

__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "SentencePieceTokenizer",
           "TOKENIZER_KINDS", "TOKENIZER_FILE", "make_tokenizer", "load_tokenizer"]


def make_tokenizer(kind: str, vocab_size: int | None = None, **options) -> Tokenizer:
    """A new, untrained tokenizer. ``vocab_size`` None means the variant's default
    (char: up to 10000 characters; word: 10000; sentencepiece: 2000). ``options`` go to the class,
    e.g. ``model_type="unigram"`` for sentencepiece."""
    if kind not in _CLASSES:
        raise ConfigError(f"Unknown tokenizer {kind!r}; choose one of: {', '.join(TOKENIZER_KINDS)}.")
    if vocab_size is not None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 0:
            raise ConfigError(f"Vocabulary size must be a positive whole number, got {vocab_size!r}.")
        options["vocab_size"] = vocab_size
    allowed = inspect.signature(_CLASSES[kind]).parameters
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"The {kind} tokenizer has no option {', '.join(unknown)}; it takes: {', '.join(allowed)}."
        )
    return _CLASSES[kind](**options)


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Rebuild the tokenizer saved in ``folder`` (its tokenizer.json names the type)."""
    path = Path(folder) / TOKENIZER_FILE
    missing = ModelFolderError(f"{folder} has no {TOKENIZER_FILE}; it is not a saved tokenizer or model folder.")
    if not os.path.lexists(path):
        raise missing
    try:  # a regular file inside the folder, under the cap: never a FIFO, a device or a link out
        text = read_bytes(inside(folder, TOKENIZER_FILE), MAX_TOKENIZER_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise missing from None
    except UnicodeDecodeError as e:
        raise ModelFolderError(f"{path} is not readable JSON (not UTF-8 text: {e.reason} at byte {e.start}). "
                               "Save the model again.") from None
    except OSError as e:
        raise ModelFolderError(f"{path} cannot be read ({e.strerror or e}).") from None
    state = parse_json(text, str(path))  # bad or too deeply nested JSON: an UnsafeFileError naming it
    kind = state.get("type") if isinstance(state, dict) else None
    if not isinstance(kind, str) or kind not in _CLASSES:
        raise ModelFolderError(
            f"{path} names an unknown tokenizer type {kind!r:.60}; expected one of: {', '.join(TOKENIZER_KINDS)}."
        )
    try:
        return _CLASSES[kind].from_dict(state, Path(folder))
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
        raise ModelFolderError(
            f"{path} is malformed ({type(e).__name__}: {str(e)[:200]}). Save the model again."
        ) from None
