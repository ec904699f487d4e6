"""Where each token of a text stands in it: its piece of text and its character offsets.

The views colour a text token by token, so every token needs the characters it covers. Char and
word tokenizers cut the text itself, so the pieces are the text's own characters (an unknown word
shows as the word, not as ``<unk>``). Other tokenizers are read back through ``decode``: a
SentencePiece character that byte fallback split into several byte tokens is given whole to its
first byte token, and the other byte tokens cover no characters.
"""
from __future__ import annotations

import torch

from ..tokenizers import Tokenizer
from ..tokenizers.word import WORD_PATTERN

MAX_BYTE_GROUP = 8   # byte tokens that may make one character (4 in UTF-8; more never complete one)


def token_bounds(tokenizer: Tokenizer, text: str, ids: list[int]) -> tuple[str, torch.Tensor]:
    """(the text the bounds index, (N + 1,) int64 character boundaries): token i is
    ``shown[bounds[i]:bounds[i + 1]]``.

    ``shown`` is ``text`` itself whenever the tokens cover it exactly (always for char, word and
    SentencePiece tokenizers); otherwise it is the decoded text.
    """
    kind = getattr(tokenizer, "kind", None)
    if kind == "char" and len(ids) == len(text):       # one token per code point
        return text, torch.arange(len(text) + 1)
    if kind == "word":
        starts = [m.start() for m in WORD_PATTERN.finditer(text)]
        if len(starts) == len(ids):
            return text, torch.tensor(starts + [len(text)], dtype=torch.int64)
    pieces = decoded_pieces(tokenizer, ids)
    shown = "".join(pieces)
    lengths = torch.tensor([0] + [len(p) for p in pieces], dtype=torch.int64)
    return (text if shown == text else shown), lengths.cumsum(0)


def decoded_pieces(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id's text, through ``decode``; a run of byte tokens that makes one character gives the
    character to the run's first token and ``""`` to the rest."""
    table = {i: tokenizer.decode([i]) for i in set(ids)}   # each distinct id decoded once
    pieces: list[str] = []
    index = 0
    while index < len(ids):
        piece = table[ids[index]]
        if "\ufffd" not in piece:
            pieces.append(piece)
            index += 1
            continue
        # a byte of a multi-byte character (or a real U+FFFD): add bytes until the character is whole
        end = index + 1
        while end < len(ids) and end - index < MAX_BYTE_GROUP and \
                tokenizer.decode(ids[index:end]).endswith("\ufffd"):
            end += 1
        group = tokenizer.decode(ids[index:end])
        if group.endswith("\ufffd") or end == index + 1:   # no character completes: keep the single token
            pieces.append(piece)
            index += 1
            continue
        pieces.extend([group] + [""] * (end - index - 1))
        index = end
    return pieces
