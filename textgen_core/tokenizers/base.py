"""The one tokenizer interface every variant implements.

Contract shared by all tokenizers:
- ``fit(text)`` learns a vocabulary from text (replacing any earlier one) and returns ``self``.
- ``encode(text)`` never raises on unseen input: unknown pieces map to an unknown id (or bytes).
- ``decode(ids)`` is concatenative: ``decode(a + b) == decode(a) + decode(b)`` whenever no
  multi-byte character is split between ``a`` and ``b``; the sampler relies on this to stream.
- ``save(folder)`` writes ``textgen_tokenizer.json`` (plus variant files); ``load(folder)`` reads
  only JSON and the variant's own data files, never pickle. The file is this project's own format,
  not the Hugging Face ``tokenizers`` one, hence not ``tokenizer.json``: folders written before
  used that name, and they still load.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

from textgen_core.files import write_json

TOKENIZER_FILE = "textgen_tokenizer.json"   # this project's format: {"type": "char" | ..., ...}
LEGACY_TOKENIZER_FILE = "tokenizer.json"    # the same format under its earlier name (read, never written)


class Tokenizer(ABC):
    kind: str = "base"  # short name stored in textgen_tokenizer.json, e.g. "char"

    def __init__(self) -> None:
        # Human-readable remarks made while fitting (e.g. "vocabulary reduced from 8000 to 3120").
        self.notes: list[str] = []

    @abstractmethod
    def fit(self, text: str) -> "Tokenizer":
        """Learn the vocabulary from ``text``; returns self."""

    def fit_pieces(self, pieces: Iterable[str]) -> "Tokenizer":
        """Learn the vocabulary from a text given in consecutive pieces that end after a newline
        (a corpus read from a large file); returns self. Variants that can count piece by piece
        override it, so a large text is never held whole."""
        return self.fit("".join(pieces))

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Text to token ids; unseen input maps to an unknown id, never raises."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Token ids to text (see the module docstring for the concatenation rule)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids the model must predict."""

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown token, or None when the tokenizer has none (e.g. byte fallback)."""
        return None

    @property
    def never_generate(self) -> tuple[int, ...]:
        """Ids the sampler must never produce (the unknown token(s))."""
        return () if self.unk_id is None else (self.unk_id,)

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each id shown on its own, for displaying how a text is split."""
        return [self.decode([i]) for i in ids]

    # --- persistence -------------------------------------------------------------------------
    @abstractmethod
    def to_dict(self) -> dict:
        """JSON-able state written to textgen_tokenizer.json (must include "type": self.kind)."""

    @classmethod
    @abstractmethod
    def from_dict(cls, state: dict, folder: Path) -> "Tokenizer":
        """Rebuild from the dict written by ``to_dict`` (and files in ``folder``)."""

    @staticmethod
    def load(folder: str | Path) -> "Tokenizer":
        """The tokenizer saved in ``folder``, whatever its kind."""
        from . import load_tokenizer  # the registry of kinds lives in the package

        return load_tokenizer(folder)

    def save(self, folder: str | Path) -> None:
        """Write textgen_tokenizer.json (strict JSON, atomically: a kill mid-save keeps the previous
        file), and drop an earlier save's tokenizer.json of this project's format from the folder."""
        from . import remove_legacy_file

        state = self.to_dict()
        state["type"] = self.kind
        write_json(Path(folder) / TOKENIZER_FILE, state, indent=None)
        remove_legacy_file(folder)
