"""Word tokenizer: words keep their single leading space, so decoding is plain concatenation.

"Hello, world!\\n" -> ["Hello", ",", " world", "!", "\\n"]. Punctuation marks and newlines are
tokens of their own, case is kept, and runs of spaces or tabs are tokens too, so any text splits
into pieces that join back to exactly the original.

Unknown tokens: id 0 ``<unk>`` stands for an unknown token without a leading space and id 1
`` <unk>`` for one with a leading space; they decode to the literal text "<unk>" and " <unk>", so
the spacing of a sentence survives an unknown word ("the zyzzyva" -> "the <unk>").
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from textgen_core.data import line_pieces
from textgen_core.errors import ConfigError
from textgen_core.tokenizers.base import Tokenizer

# Newline | word with optional leading space (apostrophes inside, e.g. "don't") | one punctuation
# mark with optional leading space | whitespace run not followed by a word (its last space is left
# for the next word) | any other whitespace run. Every character matches, so tokens join to the text.
WORD_PATTERN = re.compile(r"\n| ?\w+(?:['’]\w+)*| ?[^\w\s]|[^\S\n]+(?!\S)|[^\S\n]+")
UNK_ID, SPACED_UNK_ID = 0, 1
SPECIALS = ["<unk>", " <unk>"]
DEFAULT_VOCAB_SIZE = 10_000


class WordTokenizer(Tokenizer):
    """``vocab_size`` caps the vocabulary (specials included) at the most frequent tokens."""

    kind = "word"

    def __init__(self, vocab_size: int = DEFAULT_VOCAB_SIZE) -> None:
        super().__init__()
        if vocab_size < len(SPECIALS) + 1:
            raise ConfigError(
                f"vocab_size for the word tokenizer must be at least {len(SPECIALS) + 1} "
                f"({len(SPECIALS)} unknown-word tokens plus one word), got {vocab_size}."
            )
        self.max_vocab_size = vocab_size
        self._set_tokens(list(SPECIALS))

    def _set_tokens(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self._ids = {t: i for i, t in enumerate(tokens) if i >= len(SPECIALS)}

    def fit(self, text: str) -> "WordTokenizer":
        return self.fit_pieces([text])

    def fit_pieces(self, pieces: Iterable[str]) -> "WordTokenizer":
        self.notes = []
        counts: Counter = Counter()
        for text in pieces:
            for piece in line_pieces(text):  # a megabyte at a time: never a list of every token of a big corpus
                counts.update(WORD_PATTERN.findall(piece))
        keep = self.max_vocab_size - len(SPECIALS)
        # Most frequent first; ties broken alphabetically so the same text gives the same ids.
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) > keep:
            share = sum(n for _, n in ranked[:keep]) / sum(counts.values())
            self.notes.append(
                f"kept the {keep} most frequent of {len(ranked)} distinct words "
                f"({share:.1%} of the text's tokens); the rest map to <unk>"
            )
            ranked = ranked[:keep]
        self._set_tokens(SPECIALS + [token for token, _ in ranked])
        return self

    def encode(self, text: str) -> list[int]:
        tokens = WORD_PATTERN.findall(text)
        get = self._ids.get
        ids = [get(token, -1) for token in tokens]
        if -1 in ids:
            ids = [i if i >= 0 else (SPACED_UNK_ID if t[0] == " " else UNK_ID) for i, t in zip(ids, tokens)]
        return ids

    def decode(self, ids: list[int]) -> str:
        tokens, n = self.tokens, len(self.tokens)
        return "".join([tokens[i] if 0 <= i < n else SPECIALS[UNK_ID] for i in ids])

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def never_generate(self) -> tuple[int, ...]:
        return (UNK_ID, SPACED_UNK_ID)

    def to_dict(self) -> dict:
        return {"type": self.kind, "max_vocab_size": self.max_vocab_size,
                "tokens": self.tokens[len(SPECIALS):], "notes": self.notes}

    @classmethod
    def from_dict(cls, state: dict, folder: Path) -> "WordTokenizer":
        tokens = state["tokens"]
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError('"tokens" must be a list of non-empty strings')
        tokenizer = cls(state.get("max_vocab_size", DEFAULT_VOCAB_SIZE))
        tokenizer._set_tokens(SPECIALS + tokens)
        tokenizer.notes = list(state.get("notes", []))
        return tokenizer
