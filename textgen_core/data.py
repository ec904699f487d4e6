"""Token ids -> train/validation split -> batches, all views over one compact integer tensor."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from .errors import ConfigError, CorpusError

if TYPE_CHECKING:
    from .tokenizers import Tokenizer
    from .tokens import TokenStore


def id_dtype(vocab_size: int) -> torch.dtype:
    """The smallest integer type that holds every id (int16 for most vocabularies)."""
    return torch.int16 if vocab_size <= torch.iinfo(torch.int16).max else torch.int32


def to_id_tensor(ids: list[int], vocab_size: int) -> torch.Tensor:
    """One 1-D tensor in the smallest integer type that holds every id (int16 for most vocabularies)."""
    return torch.tensor(ids, dtype=id_dtype(vocab_size))


# Tokenizers whose ids for a text are the ids of its pieces cut just after a newline, concatenated:
# no char, word or SentencePiece token spans a "\n" (SentencePiece encodes line by line).
LINE_SPLITTABLE = ("char", "word", "sentencepiece")
ENCODE_CHUNK_CHARS = 1 << 20


def line_pieces(text: str, chunk_chars: int = ENCODE_CHUNK_CHARS):
    """``text`` in consecutive pieces of about ``chunk_chars`` characters, each ending just after a
    newline (a line longer than that stays whole): no char, word or SentencePiece token is cut."""
    start = 0
    while start < len(text):
        end = start + chunk_chars
        if end < len(text):
            cut = text.rfind("\n", start, end)
            if cut < 0:  # one very long line: run on to its end
                cut = text.find("\n", end)
            end = len(text) if cut < 0 else cut + 1
        yield text[start:end]
        start = end


def encode_ids(tokenizer: "Tokenizer", text: str, chunk_chars: int = ENCODE_CHUNK_CHARS) -> torch.Tensor:
    """``to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size)``, the same ids, a piece at a time.

    Encoding 50 MB in one go holds a Python list of 50 million ints (8 bytes a pointer, more for
    larger ids) next to the text; here at most about ``chunk_chars`` ids are a list at any moment,
    and the rest are already 2-byte (or 4-byte) tensor entries. Pieces end just after a newline.
    """
    dtype = id_dtype(tokenizer.vocab_size)
    if len(text) <= chunk_chars or getattr(tokenizer, "kind", None) not in LINE_SPLITTABLE:
        return torch.tensor(tokenizer.encode(text), dtype=dtype)
    return torch.cat([torch.tensor(tokenizer.encode(piece), dtype=dtype) for piece in line_pieces(text, chunk_chars)])


@dataclass
class TokenSplit:
    train: torch.Tensor | TokenStore  # (N_train,) ids, the first part of the text; a token file: its store
    val: torch.Tensor    # (N_val,) ids, the last part: never seen in training


def split_ids(ids: torch.Tensor, val_fraction: float, seq_len: int) -> TokenSplit:
    """Contiguous split: the last ``val_fraction`` of the tokens is validation.

    Both parts must hold at least one window of ``seq_len + 1`` tokens; the message says how long
    the text must be otherwise.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"validation fraction must be between 0 and 1 (got {val_fraction})")
    n_val = int(round(len(ids) * val_fraction))
    n_train = len(ids) - n_val
    need = seq_len + 1
    if n_train < need or n_val < 2:
        shortest = int(need / (1 - val_fraction)) + 2
        raise CorpusError(
            f"the text has {len(ids)} tokens, too few for windows of {seq_len} tokens with "
            f"{val_fraction:.0%} held out for validation; use a text of at least about {shortest} "
            f"tokens or a shorter sequence length")
    return TokenSplit(train=ids[:n_train], val=ids[n_train:])


def random_windows(ids: torch.Tensor | TokenStore, batch: int, seq_len: int, generator: torch.Generator,
                   part: tuple[int, int] = (0, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random windows: inputs (B, T) and next-token targets (B, T), int64 on ids' device.

    Start offsets come from ``generator`` on the CPU, so a seed fixes the batches on any device.
    On a GPU only those ``batch`` offsets cross over (from pinned memory, without waiting for the
    GPU); the (B, T + 1) index is built on the device. ``part`` = (rank, ranks): every rank draws
    the same ``batch`` offsets and keeps its own slice of them, B / ranks windows.
    """
    starts = torch.randint(0, len(ids) - seq_len, (batch,), generator=generator)
    return windows_at(ids, rank_share(starts, part), seq_len)


def rank_share(rows: torch.Tensor, part: tuple[int, int]) -> torch.Tensor:
    """The rows of a batch that rank ``part[0]`` of ``part[1]`` trains on (all of them for one rank)."""
    rank, ranks = part
    if ranks == 1:
        return rows
    share = len(rows) // ranks
    return rows[rank * share:(rank + 1) * share]


def windows_at(ids: torch.Tensor | TokenStore, starts: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of ``seq_len + 1`` ids that begin at ``starts`` (B,) on the CPU: inputs (B, T) and
    next-token targets (B, T), int64 on ids' device."""
    if ids.device.type == "cuda":
        starts = starts.pin_memory().to(ids.device, non_blocking=True)
    elif ids.device != starts.device:
        starts = starts.to(ids.device)
    index = starts[:, None] + torch.arange(seq_len + 1, device=ids.device)   # (B, T + 1)
    # one gather from the ids: the batch itself (a token file's store reads it from disk)
    window = ids[index].long() if isinstance(ids, torch.Tensor) else ids.gather(index)
    return window[:, :-1], window[:, 1:]


class StreamWindows:
    """Training batches for a model whose state is carried from one step to the next (as char-rnn does).

    The training ids are cut into ``batch`` equal contiguous streams; row b of every batch is the next
    window of stream b, so the state the model ends one window with is the context of the next, and
    training sees the long context that evaluation and sampling give the model. A pass ends when a
    stream has no whole window left. Each pass starts at a random offset below ``seq_len`` (so windows
    do not cut the text at the same places every pass), and with no context.
    """

    def __init__(self, ids: torch.Tensor | TokenStore, batch: int, seq_len: int, generator: torch.Generator,
                 part: tuple[int, int] = (0, 1)) -> None:
        self.ids, self.seq_len, self.generator = ids, seq_len, generator
        self.stream_len = len(ids) // batch
        if self.stream_len < seq_len + 1:
            raise ConfigError(
                f"carrying the state cuts the {len(ids)} training tokens into one stream per batch row, and "
                f"{batch} streams of at least {seq_len + 1} tokens need {batch * (seq_len + 1)}; use a smaller "
                "batch size or sequence length, or random windows (turn carry state off)")
        # (B / ranks,) where this rank's streams begin
        self.row_starts = rank_share(torch.arange(batch) * self.stream_len, part)
        self.position: Optional[int] = None   # where the next window begins in each stream; None: a new pass

    def next(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """This rank's inputs (B, T) and targets (B, T), and whether they begin a pass (no context yet)."""
        position = self.position
        new_pass = position is None or position + self.seq_len + 1 > self.stream_len
        if position is None or new_pass:
            latest = min(self.seq_len - 1, self.stream_len - self.seq_len - 1)
            position = int(torch.randint(0, latest + 1, (1,), generator=self.generator))
        self.position = position + self.seq_len
        return (*windows_at(self.ids, self.row_starts + position, self.seq_len), new_pass)


def stream_positions(predictions: int, streams: int, warmup: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each of ``streams`` parallel streams reads a text's first ``predictions`` inputs, each one
    after the first beginning ``warmup`` inputs early: positions (S, L + W) and which of them it scores.

    Stream b reads positions [b*L, b*L + L + W) and scores them all (b = 0) or the last L (b > 0), so
    the scored positions tile [0, predictions) once each; the last stream's positions past the end
    repeat the last one, unscored. A warm-up gives a stream the state the text before it leaves (to
    within what the model still remembers of its start) instead of no context at all.
    """
    warmup = warmup if streams > 1 else 0
    segment = -(-(predictions - warmup) // streams)                     # ceil
    index = torch.arange(streams)[:, None] * segment + torch.arange(segment + warmup)
    scored = index < predictions
    scored[1:, :warmup] = False
    return index.clamp(max=max(0, predictions - 1)), scored
