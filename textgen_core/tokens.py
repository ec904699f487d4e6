"""Token files: a large corpus tokenized once, kept on disk, and read window by window in training.

A corpus read in pieces (``corpus_file.FileCorpus``) is encoded a piece at a time into a file of
uint16 ids (uint32 for vocabularies above 65,535), cached by the text's fingerprint and the
tokenizer's: a second run on the same text with the same tokenizer reads the file instead of
tokenizing again. Training memory-maps the file and gathers each batch's windows from it; the pages
it touched are handed back after every batch (the kernel maps whole large folios of the page cache
around each window read: measured, resident memory otherwise grew by about 400 KB a window), so
resident memory stays bounded however large the file is, for about 1 ms a batch. Validation reads the
first ``MAX_VALIDATION_TOKENS`` of the held-out part.
"""
from __future__ import annotations

import hashlib
import json
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import TokenSplit
from .errors import CorpusError
from .files import MAX_CONFIG_BYTES, read_json, write_failure, write_json

CACHE_ENV = "TEXTGEN_CACHE_DIR"
MAX_VALIDATION_TOKENS = 1_000_000   # a large corpus is validated on the first ones of its held-out part


def cache_dir() -> Path:
    """Where token files are kept: TEXTGEN_CACHE_DIR, else ~/.cache/textgen/tokens."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "textgen" / "tokens")


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides a tokenizer's ids (its saved state and model file)."""
    digest = hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    proto = getattr(tokenizer, "_proto", None)
    if proto:
        digest.update(proto)
    return digest.hexdigest()


def id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 65_535 else np.uint32)


def _encode_piece(tokenizer, piece: str, dtype: np.dtype) -> np.ndarray:
    encode_array = getattr(tokenizer, "encode_array", None)
    ids = encode_array(piece) if encode_array is not None else np.asarray(tokenizer.encode(piece))
    return ids.astype(dtype, copy=False)


@dataclass
class TokenFile:
    path: Path
    dtype: np.dtype
    count: int

    def array(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.count,))


def token_file(tokenizer, corpus, folder: Optional[Path] = None) -> TokenFile:
    """The corpus's ids in a token file: from the cache when it has them, else encoded now, a piece
    at a time (the file is written under a temporary name and renamed, so a killed run leaves none)."""
    folder = Path(folder or cache_dir())
    key = hashlib.sha256(f"{corpus.sha256}:{tokenizer_fingerprint(tokenizer)}".encode()).hexdigest()[:40]
    dtype = id_dtype(tokenizer.vocab_size)
    path, meta_path = folder / f"{key}.{dtype.name}", folder / f"{key}.json"
    cached = _cached(path, meta_path, dtype)
    if cached is not None:
        return cached
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        count = 0
        with open(tmp, "wb") as handle:
            for piece in corpus.pieces():
                ids = _encode_piece(tokenizer, piece, dtype)
                handle.write(ids.tobytes())
                count += len(ids)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    write_json(meta_path, {"count": count, "dtype": dtype.name, "corpus": corpus.name, "chars": corpus.chars,
                           "sha256": corpus.sha256})
    return TokenFile(path, dtype, count)


def _cached(path: Path, meta_path: Path, dtype: np.dtype) -> Optional[TokenFile]:
    try:
        meta = read_json(meta_path, MAX_CONFIG_BYTES)
        count = int(meta["count"])
    except Exception:  # no cache yet, or a damaged one: encode again
        return None
    if meta.get("dtype") != dtype.name or not path.is_file() or path.stat().st_size != count * dtype.itemsize:
        return None
    return TokenFile(path, dtype, count)


class TokenStore:
    """Training windows read from a memory-mapped token file (a range of it)."""

    def __init__(self, array: np.memmap, start: int, stop: int) -> None:
        self.array, self.start, self.stop = array, start, stop
        self.device = torch.device("cpu")
        self._advise(mmap.MADV_RANDOM)   # windows are read at random: no read-ahead around them

    def __len__(self) -> int:
        return self.stop - self.start

    def to(self, device) -> "TokenStore":
        return self   # the ids stay on disk; each batch's windows cross to the device

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """ids[index] as int64, for an index of positions within this range: (B, T + 1)."""
        window = torch.from_numpy(self.array[index.numpy() + self.start].astype(np.int64))
        self.release()
        return window

    def head(self, count: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.array[self.start:self.start + min(count, len(self))], dtype=np.int64))

    def release(self) -> None:
        """Hand back the pages read so far (they stay in the page cache, not in this process)."""
        self._advise(mmap.MADV_DONTNEED)

    def _advise(self, advice: int) -> None:
        raw = getattr(self.array, "_mmap", None)
        if raw is not None and hasattr(raw, "madvise"):
            try:
                raw.madvise(advice)
            except (OSError, ValueError):
                pass


def split_token_file(tokens: TokenFile, val_fraction: float, seq_len: int) -> TokenSplit:
    """The last ``val_fraction`` of the ids held out, as ``data.split_ids`` does for a tensor: training
    windows come from the file; validation is the first MAX_VALIDATION_TOKENS of the held-out part."""
    if not 0.0 < val_fraction < 1.0:
        raise CorpusError(f"validation fraction must be between 0 and 1 (got {val_fraction})")
    n_val = int(round(tokens.count * val_fraction))
    n_train = tokens.count - n_val
    if n_train < seq_len + 1 or n_val < 2:
        raise CorpusError(f"the text has {tokens.count} tokens, too few for windows of {seq_len} tokens")
    array = tokens.array()
    val = TokenStore(array, n_train, tokens.count).head(MAX_VALIDATION_TOKENS)
    return TokenSplit(train=TokenStore(array, 0, n_train), val=val)
