"""Char / word / SentencePiece tokenizers behind one interface, plus make and load by name."""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from textgen_core.errors import ConfigError, ModelFolderError
from textgen_core.files import MAX_TOKENIZER_BYTES, inside, parse_json, read_bytes
from textgen_core.tokenizers.base import LEGACY_TOKENIZER_FILE, TOKENIZER_FILE, Tokenizer
from textgen_core.tokenizers.char import CharTokenizer
from textgen_core.tokenizers.sentencepiece import SentencePieceTokenizer
from textgen_core.tokenizers.word import WordTokenizer

TOKENIZER_KINDS = ("char", "word", "sentencepiece")
_CLASSES: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer, "word": WordTokenizer, "sentencepiece": SentencePieceTokenizer,
}

__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "SentencePieceTokenizer",
           "TOKENIZER_KINDS", "TOKENIZER_FILE", "LEGACY_TOKENIZER_FILE", "make_tokenizer", "load_tokenizer",
           "remove_legacy_file"]


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


def _state_file(folder: Path) -> Path:
    """The folder's tokenizer file: textgen_tokenizer.json, or tokenizer.json in a folder written
    before the file had its own name."""
    path = folder / TOKENIZER_FILE
    legacy = folder / LEGACY_TOKENIZER_FILE
    if not os.path.lexists(path) and os.path.lexists(legacy):
        return legacy
    return path


def _read_state(folder: Path, path: Path) -> object:
    """The JSON value of ``path`` (a regular file inside ``folder``, under the size cap)."""
    missing = ModelFolderError(f"{folder} has no {TOKENIZER_FILE}; it is not a saved tokenizer or model folder.")
    if not os.path.lexists(path):
        raise missing
    try:  # a regular file inside the folder, under the cap: never a FIFO, a device or a link out
        text = read_bytes(inside(folder, path.name), MAX_TOKENIZER_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise missing from None
    except UnicodeDecodeError as e:
        raise ModelFolderError(f"{path} is not readable JSON (not UTF-8 text: {e.reason} at byte {e.start}). "
                               "Save the model again.") from None
    except OSError as e:
        raise ModelFolderError(f"{path} cannot be read ({e.strerror or e}).") from None
    return parse_json(text, str(path))  # bad or too deeply nested JSON: an UnsafeFileError naming it


def _is_hf_tokenizers_file(state: object) -> bool:
    return isinstance(state, dict) and "type" not in state and isinstance(state.get("model"), dict)


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """Rebuild the tokenizer saved in ``folder`` (its textgen_tokenizer.json, or the tokenizer.json of
    an older folder, names the type)."""
    folder = Path(folder)
    path = _state_file(folder)
    state = _read_state(folder, path)
    if _is_hf_tokenizers_file(state):
        raise ModelFolderError(f"{path} is a Hugging Face `tokenizers` file, not this project's tokenizer: "
                               f"a textgen_core model folder holds {TOKENIZER_FILE}; copy the whole folder "
                               "the model was saved in.")
    kind = state.get("type") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(kind, str) or kind not in _CLASSES:
        raise ModelFolderError(
            f"{path} names an unknown tokenizer type {kind!r:.60}; expected one of: {', '.join(TOKENIZER_KINDS)}."
        )
    try:
        return _CLASSES[kind].from_dict(state, folder)
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
        raise ModelFolderError(
            f"{path} is malformed ({type(e).__name__}: {str(e)[:200]}). Save the model again."
        ) from None


def remove_legacy_file(folder: str | Path) -> None:
    """Delete ``folder``'s tokenizer.json when it holds this project's format (a save of an earlier
    version, now superseded by textgen_tokenizer.json); any other file of that name is left alone."""
    folder = Path(folder)
    path = folder / LEGACY_TOKENIZER_FILE
    if not path.is_file() or path.is_symlink():
        return
    try:
        state = _read_state(folder, path)
    except (ModelFolderError, OSError):
        return
    if isinstance(state, dict) and state.get("type") in _CLASSES:
        path.unlink(missing_ok=True)
