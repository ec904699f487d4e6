"""Bytes in, clean text out: encoding detection, byte-order marks, newlines, and clear refusals.

Order of decoding: a byte-order mark (UTF-8/16/32) wins; otherwise strict UTF-8; otherwise a legacy
8-bit code page found by charset-normalizer, preferring cp1252 (the usual Windows encoding of
Western text) whenever the detector finds it plausible, because the detector alone often mistakes
short Western text for cp1250 or cp1257. Line endings become "\\n".
"""
from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from charset_normalizer import from_bytes

from textgen_core.errors import CorpusError, UnsafeFileError
from textgen_core.files import MAX_CORPUS_BYTES, read_bytes

MIN_CHARS = 200  # below this a model has too little to learn from and nothing to validate on
MAX_CONTROL_SHARE = 0.05  # more control characters than this means a binary file

# Longest first: the UTF-32 LE mark starts with the UTF-16 LE mark.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
# C0 and C1 control characters except tab, newline, form feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SAVE_AS_TEXT = "Save it as plain text (UTF-8), e.g. with a text editor, and try again."


@dataclass(frozen=True)
class CorpusStats:
    chars: int  # Unicode code points
    distinct_chars: int
    words: int  # whitespace-separated, as len(text.split())
    lines: int  # a last line without "\n" counts too


@dataclass
class Corpus:
    text: str  # decoded, newlines normalised to "\n", no byte-order mark
    encoding: str  # how the bytes were decoded, e.g. "utf-8", "utf-8-sig", "utf-16", "cp1252"
    name: str  # file name or label used in messages

    @property
    def chars(self) -> int:
        return len(self.text)

    def pieces(self) -> Iterator[str]:
        """The text in consecutive pieces of about a megabyte, each ending just after a newline (what
        a corpus read from a large file gives too: ``corpus_file.FileCorpus``)."""
        from .data import line_pieces
        yield from line_pieces(self.text)

    @cached_property
    def sha256(self) -> str:
        """The text's fingerprint: a resume checks it is the text the run was trained on."""
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()

    @cached_property
    def stats(self) -> CorpusStats:
        text = self.text
        lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
        return CorpusStats(len(text), len(set(text)), len(text.split()), lines)


def detect_encoding(data: bytes, name: str = "corpus") -> tuple[str, str]:
    """Decode ``data``; returns (text, encoding name). Raises CorpusError for binary data."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as e:
                raise CorpusError(
                    f"{name} starts with a {encoding.upper()} byte-order mark but is not valid "
                    f"{encoding.upper()} (bad bytes at position {e.start}). {_SAVE_AS_TEXT}"
                ) from None
    if b"\x00" in data:
        raise CorpusError(
            f"{name} looks like a binary file, not text: it contains NUL bytes. Choose a plain-text "
            "file (.txt); if this is UTF-16 text without a byte-order mark, save it again as UTF-8."
        )
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    match = from_bytes(data, cp_isolation=["cp1252"]).best() or from_bytes(data).best()
    if match is not None:
        try:
            return str(match), match.encoding
        except UnicodeDecodeError:
            pass
    raise CorpusError(
        f"{name} looks like a binary file, not text: its bytes are not UTF-8 and match no known "
        f"text encoding. {_SAVE_AS_TEXT}"
    )


def read_text(data: bytes, name: str = "corpus", min_chars: int = MIN_CHARS) -> Corpus:
    """Decode an uploaded file into a training corpus, or raise CorpusError saying what to fix."""
    if not data:
        raise CorpusError(f"{name} is empty (0 bytes). Choose a text file with some writing in it.")
    text, encoding = detect_encoding(data, name)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise CorpusError(
            f"{name} contains only whitespace (spaces, tabs or blank lines), no text to learn from. "
            "Choose a text file with some writing in it."
        )
    controls = len(_CONTROL.findall(text))
    if controls > MAX_CONTROL_SHARE * len(text):
        raise CorpusError(
            f"{name} looks like a binary file, not text: {controls / len(text):.0%} of its "
            f"characters are control characters. {_SAVE_AS_TEXT}"
        )
    if len(text) < min_chars:
        raise CorpusError(
            f"{name} has only {len(text)} characters; training needs at least {min_chars}. "
            "Use a longer text."
        )
    return Corpus(text=text, encoding=encoding, name=name)


def read_file(path: str | Path, min_chars: int = MIN_CHARS) -> Corpus:
    """Read a text file from disk; the corpus is named after the file."""
    path = Path(path)
    if path.is_dir():
        raise CorpusError(f"{path} is a folder, not a file. Give the path of a text file.")
    try:
        data = read_bytes(path, MAX_CORPUS_BYTES)  # regular files only: a FIFO or /dev/zero is refused
    except FileNotFoundError:
        raise CorpusError(f"No such file: {path}. Check the path and try again.") from None
    except UnsafeFileError as e:
        raise CorpusError(f"{e}. Give the path of a plain-text file.") from None
    except OSError as e:
        raise CorpusError(f"Cannot read {path}: {e.strerror or e}. Check the file's permissions.") from None
    return read_text(data, name=path.name, min_chars=min_chars)
