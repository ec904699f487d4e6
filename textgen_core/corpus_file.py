"""A corpus too large to hold as one string: read from its file in pieces, never whole.

``open_file(path)`` returns an ordinary in-memory ``Corpus`` for files up to ``STREAM_MIN_BYTES``
and a ``FileCorpus`` above: the same name, encoding, fingerprint (``sha256`` of the decoded text,
exactly as ``Corpus.sha256``), length in characters and ``pieces()``, but no ``text``. Its encoding
is decided from the first megabyte by the same rules as ``corpus.detect_encoding``; the whole file
is then decoded in pieces once, to check it and to count and fingerprint it, with newlines
normalised across the pieces' edges.
"""
from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .corpus import _CONTROL, _SAVE_AS_TEXT, MAX_CONTROL_SHARE, MIN_CHARS, Corpus, detect_encoding, read_file
from .data import line_pieces
from .errors import CorpusError, UnsafeFileError
from .files import _open_regular

STREAM_MIN_BYTES = 64 << 20   # larger files are read in pieces
BLOCK_BYTES = 1 << 20
SAMPLE_BYTES = 1 << 20        # what the encoding and the binary check are judged on


@dataclass
class FileCorpus:
    """A large text file as a corpus: read in pieces of about a megabyte, each ending after a newline."""
    path: Path
    name: str
    encoding: str
    chars: int
    sha256: str

    def pieces(self) -> Iterator[str]:
        pending = ""
        for block in _decoded_blocks(self.path, self.encoding):
            text = pending + block
            cut = text.rfind("\n") + 1          # whole lines only: no token spans a piece's edge
            if cut == 0 and len(text) < 8 * BLOCK_BYTES:
                pending = text
                continue
            cut = cut or len(text)
            pending = text[cut:]
            yield from line_pieces(text[:cut])
        if pending:
            yield pending

    @property
    def text(self) -> str:
        raise CorpusError(f"{self.name} is {self.chars:,} characters: too large to hold as one string; "
                          "it is read in pieces (corpus.pieces())")


AnyCorpus = Union[Corpus, FileCorpus]


def _decoded_blocks(path: Path, encoding: str) -> Iterator[str]:
    """The file's text in blocks, decoded incrementally, with "\\r\\n" and "\\r" turned into "\\n"
    (a "\\r" at a block's end waits for the next block)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    fd, _ = _open_regular(path)
    offset, carry = 0, ""
    try:
        with open(fd, "rb", closefd=False) as handle:
            while True:
                data = handle.read(BLOCK_BYTES)
                try:
                    text = carry + decoder.decode(data, final=not data)
                except UnicodeDecodeError as exc:
                    raise CorpusError(f"{path.name} is not valid {encoding} text at byte {offset + exc.start:,}. "
                                      f"{_SAVE_AS_TEXT}") from None
                offset += len(data)
                carry = ""
                if text.endswith("\r") and data:
                    text, carry = text[:-1], "\r"
                text = text.replace("\r\n", "\n").replace("\r", "\n")
                if text:
                    yield text
                if not data:
                    break
    finally:
        os.close(fd)


def open_file(path: str | Path, min_chars: int = MIN_CHARS, stream: bool | None = None) -> AnyCorpus:
    """The corpus in the text file ``path``: in memory when small, read in pieces when large
    (``stream``: True or False to choose, None to decide by the file's size)."""
    path = Path(path)
    try:
        fd, info = _open_regular(path)
    except FileNotFoundError:
        raise CorpusError(f"No such file: {path}. Check the path and try again.") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a folder, not a file. Give the path of a text file.") from None
    except UnsafeFileError as exc:
        raise CorpusError(f"{exc}. Give the path of a plain-text file.") from None
    except OSError as exc:
        raise CorpusError(f"Cannot read {path}: {exc.strerror or exc}. Check the file's permissions.") from None
    try:
        sample = os.read(fd, SAMPLE_BYTES)
    finally:
        os.close(fd)
    if not (stream if stream is not None else info.st_size > STREAM_MIN_BYTES):
        return read_file(path, min_chars)
    corpus = _scan(path, sample)
    if corpus.chars < min_chars:
        raise CorpusError(f"{path.name} has only {corpus.chars} characters; training needs at least {min_chars}. "
                          "Use a longer text.")
    return corpus


def _sample_encoding(sample: bytes, name: str) -> tuple[str, str]:
    """(the sample's text, the file's encoding): UTF-8 when the sample is UTF-8 but for a character
    cut at its end; otherwise ``detect_encoding``'s answer for the sample, cut to whole code units."""
    if b"\x00" not in sample and not sample.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return codecs.getincrementaldecoder("utf-8")().decode(sample, final=False), "utf-8"
        except UnicodeDecodeError:
            pass
    if sample.startswith(codecs.BOM_UTF8):
        return codecs.getincrementaldecoder("utf-8-sig")().decode(sample, final=False), "utf-8-sig"
    return detect_encoding(sample[:len(sample) - len(sample) % 4], name)


def _scan(path: Path, sample: bytes) -> FileCorpus:
    """Decide the encoding from the sample, then read the whole file once: check, count, fingerprint."""
    text, encoding = _sample_encoding(sample, path.name)
    controls = len(_CONTROL.findall(text))
    if controls > MAX_CONTROL_SHARE * max(1, len(text)):
        raise CorpusError(f"{path.name} looks like a binary file, not text: {controls / len(text):.0%} of the "
                          f"characters of its first megabyte are control characters. {_SAVE_AS_TEXT}")
    digest, chars, visible = hashlib.sha256(), 0, False
    for block in _decoded_blocks(path, encoding):
        digest.update(block.encode("utf-8", "surrogatepass"))
        chars += len(block)
        visible = visible or bool(block.strip())
    if not visible:
        raise CorpusError(f"{path.name} contains only whitespace, no text to learn from.")
    return FileCorpus(path, path.name, encoding, chars, digest.hexdigest())
