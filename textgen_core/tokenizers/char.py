"""Character tokenizer: every Unicode code point seen in training is one token."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from textgen_core.errors import ConfigError
from textgen_core.tokenizers.base import Tokenizer

UNK_ID = 0
UNK_TEXT = "\ufffd"  # what an unknown character decodes to
# Like the word vocabulary's: a text of a million distinct code points would otherwise make a
# "tiny" model of 179M parameters. Real texts, Chinese and Japanese ones included, use far fewer.
DEFAULT_VOCAB_SIZE = 10_000


class CharTokenizer(Tokenizer):
    """Id 0 is ``<unk>`` (decodes to U+FFFD); ids 1.. are the corpus characters in sorted order.

    ``vocab_size`` caps the vocabulary (``<unk>`` included): only the most frequent characters are
    kept, the rest encode to ``<unk>``, and a note says so. None means ``DEFAULT_VOCAB_SIZE``.
    """

    kind = "char"

    def __init__(self, vocab_size: int | None = None) -> None:
        super().__init__()
        if vocab_size is not None and vocab_size < 2:
            raise ConfigError(f"vocab_size for the char tokenizer must be at least 2, got {vocab_size}.")
        self.max_vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
        self._set_chars([])

    def _set_chars(self, chars: list[str]) -> None:
        self.chars = chars
        self._decode_table = [UNK_TEXT] + chars
        self._ids = {c: i for i, c in enumerate(chars, start=1)}
        self._table: np.ndarray | None = None   # code point -> id, made by encode_array when first needed

    def fit(self, text: str) -> "CharTokenizer":
        return self.fit_pieces([text])

    def fit_pieces(self, pieces: Iterable[str]) -> "CharTokenizer":
        self.notes = []
        counts: dict[str, int] = _count_chars(pieces)
        total = sum(counts.values())
        keep = self.max_vocab_size - 1
        if len(counts) > keep:
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
            share = sum(n for _, n in kept) / total
            self.notes.append(
                f"kept the {keep} most frequent of {len(counts)} distinct characters "
                f"({share:.1%} of the text); the rest map to <unk>"
            )
            counts = dict(kept)
        self._set_chars(sorted(counts))
        return self

    def encode(self, text: str) -> list[int]:
        get = self._ids.get
        return [get(c, UNK_ID) for c in text]

    def encode_array(self, text: str) -> np.ndarray:
        """``encode(text)`` as a uint32 array, through a table of code points (a large corpus is
        encoded a megabyte at a time this way, about 50x faster than the list)."""
        if self._table is None:
            self._table = np.zeros(max((ord(c) for c in self.chars), default=0) + 1, dtype=np.uint32)
            self._table[[ord(c) for c in self.chars]] = np.arange(1, len(self.chars) + 1, dtype=np.uint32)
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        inside = points < len(self._table)
        return np.where(inside, self._table[np.where(inside, points, 0)], UNK_ID).astype(np.uint32)

    def decode(self, ids: list[int]) -> str:
        table, n = self._decode_table, len(self._decode_table)
        return "".join([table[i] if 0 <= i < n else UNK_TEXT for i in ids])

    @property
    def vocab_size(self) -> int:
        return len(self._decode_table)

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": "".join(self.chars),
                "max_vocab_size": self.max_vocab_size, "notes": self.notes}

    @classmethod
    def from_dict(cls, state: dict, folder: Path) -> "CharTokenizer":
        chars = state["chars"]
        if not isinstance(chars, str) or len(set(chars)) != len(chars):
            raise ValueError('"chars" must be a string of distinct characters')
        tokenizer = cls(state.get("max_vocab_size"))
        tokenizer._set_chars(list(chars))
        tokenizer.notes = list(state.get("notes", []))
        return tokenizer


def _count_chars(pieces: Iterable[str]) -> Counter:
    """How often each character occurs, counted a piece at a time over its code points (numpy's
    bincount: about 10x faster than a Counter over the characters)."""
    totals = np.zeros(0, dtype=np.int64)
    for piece in pieces:
        points = np.frombuffer(piece.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        counts = np.bincount(points)
        if len(counts) > len(totals):
            counts[:len(totals)] += totals
            totals = counts
        else:
            totals[:len(counts)] += counts
    present = np.flatnonzero(totals)
    return Counter({chr(int(point)): int(totals[point]) for point in present})
