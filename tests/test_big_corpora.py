"""Corpora read in pieces and tokenized into cached token files: the same text, ids and training as
in memory, uint16 or uint32 ids by vocabulary size, and a cache that is used."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import textgen_core as tg
from textgen_core import corpus_file, tokens
from textgen_core.corpus_file import FileCorpus, open_file
from textgen_core.data import encode_ids

TEXT = "Ünïcödé “quoted” line\r\nanother line\rand a third\n" * 400 + "a last line without a newline"


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch, tmp_path):
    """Blocks of 1 KB: every edge case of a piece's edge comes up in a small file."""
    monkeypatch.setattr(corpus_file, "BLOCK_BYTES", 1000)
    monkeypatch.setenv(tokens.CACHE_ENV, str(tmp_path / "cache"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
def test_a_file_read_in_pieces_is_the_text_read_whole(tmp_path, encoding):
    text = TEXT if encoding != "cp1252" else TEXT.replace("“", '"').replace("”", '"')
    path = tmp_path / "lyrics.txt"
    path.write_bytes(text.encode(encoding))
    whole, pieces = tg.read_file(path), open_file(path, stream=True)
    assert isinstance(pieces, FileCorpus) and pieces.encoding == whole.encoding
    assert "".join(pieces.pieces()) == whole.text and "\r" not in whole.text
    assert pieces.chars == whole.chars and pieces.sha256 == whole.sha256
    assert all(p.endswith("\n") for p in list(pieces.pieces())[:-1])   # no token spans two pieces
    with pytest.raises(tg.CorpusError, match="too large to hold as one string"):
        _ = pieces.text


def test_a_bad_byte_late_in_a_large_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_file, "SAMPLE_BYTES", 2000)   # the bad byte lies beyond what decides the encoding
    path = tmp_path / "lyrics.txt"
    path.write_bytes(TEXT.encode() * 3 + b"\xff\xfe broken")
    with pytest.raises(tg.CorpusError, match=r"not valid utf-8 text at byte [\d,]+"):
        open_file(path, stream=True)


@pytest.mark.parametrize("kind, vocab", [("char", None), ("word", 500), ("sentencepiece", 300)])
def test_a_token_file_holds_the_same_ids_and_is_read_from_the_cache(tmp_path, kind, vocab, monkeypatch):
    path = tmp_path / "lyrics.txt"
    path.write_text(TEXT, encoding="utf-8")
    whole, pieces = tg.read_file(path), open_file(path, stream=True)
    tokenizer = tg.make_tokenizer(kind, vocab).fit(whole.text)
    assert tg.make_tokenizer(kind, vocab).fit_pieces(pieces.pieces()).to_dict() == tokenizer.to_dict()
    made = tokens.token_file(tokenizer, pieces)
    assert made.dtype == np.uint16 and made.path.stat().st_size == 2 * made.count
    assert np.array_equal(made.array(), encode_ids(tokenizer, whole.text).numpy())
    monkeypatch.setattr(tokens, "_encode_piece", lambda *a: pytest.fail("encoded again"))
    assert tokens.token_file(tokenizer, pieces) == made


def test_a_vocabulary_above_65535_gets_uint32_ids(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(" ".join(f"w{i}" for i in range(70_000)) + "\n", encoding="utf-8")
    pieces = open_file(path, stream=True)
    tokenizer = tg.make_tokenizer("word", 80_000).fit_pieces(pieces.pieces())
    made = tokens.token_file(tokenizer, pieces)
    assert tokenizer.vocab_size > 65_535 and made.dtype == np.uint32
    assert int(made.array().max()) == tokenizer.vocab_size - 1


def test_training_on_a_token_file_takes_the_same_steps_as_in_memory(tmp_path):
    path = tmp_path / "lyrics.txt"
    path.write_text(TEXT, encoding="utf-8")
    settings = tg.RunSettings(preset="tiny", dropout=0.0, train=tg.TrainConfig(
        batch_size=8, seq_len=16, max_steps=30, eval_every=10, device="cpu"))
    in_memory = tg.train_model(tg.read_file(path), settings, tmp_path / "memory").history
    from_file = tg.train_model(open_file(path, stream=True), settings, tmp_path / "file").history
    assert len(in_memory.points) == len(from_file.points)
    for a, b in zip(in_memory.points, from_file.points):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)
        assert a.get("val_loss") == pytest.approx(b.get("val_loss"), abs=1e-6)
    info = tg.load(tmp_path / "file").info
    assert info["corpus"]["chars"] == len(tg.read_file(path).text)


def test_the_cli_trains_on_a_large_file_in_pieces(tmp_path, monkeypatch, capsys):
    from textgen_core.cli import main
    monkeypatch.setattr(corpus_file, "STREAM_MIN_BYTES", 1000)
    path = tmp_path / "lyrics.txt"
    path.write_text(TEXT, encoding="utf-8")
    assert main(["train", str(path), "--out", str(tmp_path / "m"), "--preset", "tiny", "--max-steps", "10",
                 "--eval-every", "10", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]) == 0
    assert list((tmp_path / "cache").glob("*.uint16"))
    torch.testing.assert_close(tg.load(tmp_path / "m").model.embed.weight.abs().sum() > 0, torch.tensor(True))
