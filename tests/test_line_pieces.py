"""Encoding and word counting a piece at a time give exactly what one pass over the text gives."""
from __future__ import annotations

from collections import Counter

import pytest

from textgen_core.data import encode_ids, line_pieces, to_id_tensor
from textgen_core.tokenizers import make_tokenizer
from textgen_core.tokenizers.word import WORD_PATTERN

TEXT = ("Hello, world!\n  indented line  with  spaces\n\nA very long line without a break " * 3 + "\n"
        "emoji 🎉 and CJK 漢字\r\nlast line, no newline") * 20


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_pieces_join_to_the_text_and_end_after_newlines(chunk):
    pieces = list(line_pieces(TEXT, chunk))
    assert "".join(pieces) == TEXT
    assert all(p.endswith("\n") for p in pieces[:-1])


@pytest.mark.parametrize("kind", ["char", "word", "sentencepiece"])
def test_encode_ids_in_pieces_equals_one_pass(kind):
    tokenizer = make_tokenizer(kind, vocab_size=60) if kind == "sentencepiece" else make_tokenizer(kind)
    tokenizer.fit(TEXT)
    whole = to_id_tensor(tokenizer.encode(TEXT), tokenizer.vocab_size)
    assert encode_ids(tokenizer, TEXT, chunk_chars=50).tolist() == whole.tolist()


def test_word_counts_in_pieces_equal_one_pass():
    counts = Counter()
    for piece in line_pieces(TEXT, 50):
        counts.update(WORD_PATTERN.findall(piece))
    assert counts == Counter(WORD_PATTERN.findall(TEXT))
