"""SentencePiece subword tokenizer (BPE or unigram), trained in memory, exact round trip for any text.

Settings that make ``decode(encode(text)) == text`` hold for every string:
- identity normalization, no dummy prefix, no whitespace removal: spaces, tabs and runs of them
  survive as they are (a space is the "▁" prefix of the next piece, "▁" alone at the start);
- byte fallback: a character without a piece of its own becomes its UTF-8 bytes (<0xF0>...);
  the space mark "▁" is a required piece, since as bytes it would decode to "▁", not " ";
- "\\n" is a user-defined piece. SentencePiece trains on one line at a time, so lines are the
  training sentences and ``encode`` encodes line by line (5x faster than one big string too),
  putting the newline id between the lines;
- a literal "▁" (U+2581) in the text would decode as a space, so it is encoded as its three bytes.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from textgen_core.errors import ConfigError, ModelFolderError
from textgen_core.files import MAX_TOKENIZER_BYTES, atomic_write_bytes, inside, read_bytes
from textgen_core.tokenizers.base import Tokenizer

MODEL_FILE = "tokenizer.model"
DEFAULT_VOCAB_SIZE = 2000
MODEL_TYPES = ("bpe", "unigram")
NEWLINE, SPACE_MARK = "\n", "\u2581"
# SentencePiece silently skips training sentences over 4192 bytes; 1000 characters are <= 4000.
MAX_SEGMENT_CHARS = 1000
MAX_TRAINING_CHARS = 50_000_000   # a larger text trains on its beginning (fit_pieces)
SEPARATORS = (NEWLINE, SPACE_MARK)  # encoded by hand, never passed to SentencePiece
_SEPARATOR_PATTERN = re.compile(f"({NEWLINE}|{SPACE_MARK})")
# Trainer errors that name a vocabulary size that would work.
_SIZE_HINT = re.compile(r"set it to a value <= (\d+)|smaller than required_chars\. \d+ vs (\d+)")


def _chunks(line: str) -> Iterator[str]:
    """Cut a long line into training-sized pieces, before a space where there is one."""
    while len(line) > MAX_SEGMENT_CHARS:
        cut = line.rfind(" ", 1, MAX_SEGMENT_CHARS + 1)
        cut = cut if cut > 0 else MAX_SEGMENT_CHARS
        yield line[:cut]
        line = line[cut:]
    yield line


def _split(text: str) -> list[str]:
    """Non-empty segments to encode, with each newline and literal "▁" as a segment of its own."""
    parts: list[str] = []
    for part in _SEPARATOR_PATTERN.split(text):
        if part in SEPARATORS:
            parts.append(part)
        elif part:
            parts.extend(_chunks(part))
    return parts


def _train(sentences: list[str], vocab_size: int, model_type: str) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
        model_type=model_type, normalization_rule_name="identity", add_dummy_prefix=False,
        remove_extra_whitespaces=False, allow_whitespace_only_pieces=True, byte_fallback=True,
        user_defined_symbols=[NEWLINE], unk_id=0, bos_id=-1, eos_id=-1,
        required_chars=SPACE_MARK,  # a space must have a piece: as bytes it would decode to "▁"
        hard_vocab_limit=False,  # a too-large request gives what fits instead of an error
        num_threads=os.cpu_count() or 1, minloglevel=2,
    )
    return model.getvalue()


class SentencePieceTokenizer(Tokenizer):
    kind = "sentencepiece"

    def __init__(self, vocab_size: int = DEFAULT_VOCAB_SIZE, model_type: str = "bpe") -> None:
        super().__init__()
        if model_type not in MODEL_TYPES:
            raise ConfigError(f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}.")
        if vocab_size < 1:
            raise ConfigError(f"vocab_size must be a positive number, got {vocab_size}.")
        self.requested_vocab_size = vocab_size
        self.model_type = model_type
        self._proto = b""
        self._sp: spm.SentencePieceProcessor | None = None
        self._separator_ids: dict[str, list[int]] = {}  # "\n" -> its piece, "▁" -> its 3 bytes

    def _load_proto(self, proto: bytes) -> None:
        sp = spm.SentencePieceProcessor(model_proto=proto)
        newline_id = sp.piece_to_id(NEWLINE)
        if newline_id == sp.unk_id():
            raise ValueError("the model has no newline piece, so it was not trained by this tokenizer")
        self._proto, self._sp = proto, sp
        self._separator_ids = {NEWLINE: [newline_id],
                               SPACE_MARK: [sp.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARK.encode()]}

    @property
    def processor(self) -> spm.SentencePieceProcessor:
        if self._sp is None:
            raise RuntimeError("the SentencePiece tokenizer is not trained yet: call fit() or load it")
        return self._sp

    def fit(self, text: str) -> "SentencePieceTokenizer":
        return self.fit_pieces([text])

    def fit_pieces(self, pieces: Iterable[str]) -> "SentencePieceTokenizer":
        """Trains on the text's first MAX_TRAINING_CHARS characters (SentencePiece holds every training
        sentence in memory; more text than that seldom changes the pieces of a small vocabulary)."""
        self.notes = []
        sentences, used, cut = [], 0, False
        for text in pieces:
            if used >= MAX_TRAINING_CHARS:
                cut = True
                break
            for part in _split(text):
                if part not in SEPARATORS:
                    sentences.append(part)
                    used += len(part)
        if cut:
            self.notes.append(f"the pieces were learned from the first {used:,} characters of the text")
        if not sentences:  # SentencePiece cannot train on nothing: learn bytes (and a space) only
            sentences = [" "]
            self.notes.append("the text has nothing to learn pieces from; the vocabulary is bytes only")
        vocab_size = self.requested_vocab_size
        for attempt in range(3):  # a size SentencePiece rejects comes back with one that works
            try:
                self._load_proto(_train(sentences, vocab_size, self.model_type))
                break
            except RuntimeError as e:
                hint = _SIZE_HINT.search(str(e))
                if hint is None or attempt == 2:
                    raise
                vocab_size = int(hint.group(1) or hint.group(2))
        got, asked = self.vocab_size, self.requested_vocab_size
        if got < asked:
            self.notes.append(
                f"vocabulary reduced from {asked} to {got} pieces: the text is too small for more"
            )
        elif got > asked:
            self.notes.append(
                f"vocabulary raised from {asked} to {got} pieces: with byte fallback SentencePiece "
                "needs 256 byte pieces plus one per common character"
            )
        return self

    def encode(self, text: str) -> list[int]:
        sp = self.processor
        parts = _split(text)
        pieces = iter(sp.encode([p for p in parts if p not in SEPARATORS]))
        ids: list[int] = []
        for part in parts:
            ids.extend(self._separator_ids[part] if part in self._separator_ids else next(pieces))
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.processor.decode(list(ids))

    def token_strings(self, ids: list[int]) -> list[str]:
        """Like decode per id, but a byte of a multi-byte character shows as e.g. "<0xE4>"."""
        sp = self.processor
        return [sp.id_to_piece(i) if sp.is_byte(i) and int(sp.id_to_piece(i)[3:5], 16) >= 0x80
                else sp.decode([i]) for i in ids]

    @property
    def vocab_size(self) -> int:
        return self.processor.vocab_size()

    @property
    def unk_id(self) -> int:
        return self.processor.unk_id()

    # --- persistence: textgen_tokenizer.json holds the settings, tokenizer.model the trained model ---
    def save(self, folder: str | Path) -> None:
        _ = self.processor  # raises when there is nothing to save yet
        atomic_write_bytes(Path(folder) / MODEL_FILE, self._proto)  # the model first: the JSON names it
        super().save(folder)

    def to_dict(self) -> dict:
        return {"type": self.kind, "model_type": self.model_type, "model_file": MODEL_FILE,
                "requested_vocab_size": self.requested_vocab_size, "notes": self.notes}

    @classmethod
    def from_dict(cls, state: dict, folder: Path) -> "SentencePieceTokenizer":
        path = Path(folder) / MODEL_FILE
        missing = ModelFolderError(
            f"{folder} has the settings of a SentencePiece tokenizer but no {MODEL_FILE}; copy the whole folder."
        )
        if not os.path.lexists(path):
            raise missing
        try:  # a regular file inside the folder, under the cap: never a FIFO, a device or a link out
            proto = read_bytes(inside(folder, MODEL_FILE), MAX_TOKENIZER_BYTES)
        except FileNotFoundError:
            raise missing from None
        # settings of the wrong type fall back to the defaults: the trained model is what counts
        size = state.get("requested_vocab_size")
        size = size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else DEFAULT_VOCAB_SIZE
        model_type = state.get("model_type")
        tokenizer = cls(size, model_type if model_type in MODEL_TYPES else "bpe")
        try:
            tokenizer._load_proto(proto)
        except (RuntimeError, ValueError) as e:
            raise ModelFolderError(
                f"{path} is not a usable SentencePiece model ({str(e)[:200]}). Save the tokenizer again."
            ) from None
        notes = state.get("notes")
        tokenizer.notes = [n for n in notes if isinstance(n, str)] if isinstance(notes, list) else []
        return tokenizer
