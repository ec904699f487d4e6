"""Character tokenizer: every Unicode code point seen in training is one token."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

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

    def fit(self, text: str) -> "CharTokenizer":
        self.notes = []
        counts = Counter(text)
        keep = self.max_vocab_size - 1
        if len(counts) > keep:
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
            share = sum(n for _, n in kept) / len(text)
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
