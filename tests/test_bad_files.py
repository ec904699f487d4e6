"""Every kind of file a user may bring, through the API and the CLI: a clear refusal or a model."""
from __future__ import annotations

import random

import pytest

import textgen_core as tg
from textgen_core.cli import main

MIXED = "Emoji 🙂🎸, 中文歌词 and العربية, e\u0301 combining marks.\n"
QUICK = ["--preset", "tiny", "--max-steps", "4", "--eval-every", "2", "--seq-len", "16",
         "--batch-size", "4", "--device", "cpu"]


def many_distinct_words(count: int) -> str:
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choices(letters, k=8)) for _ in range(count))


REFUSED = {
    "empty": (b"", "is empty"),
    "whitespace": (b" \n\t \r\n  ", "only whitespace"),
    "one-char": (b"a", "only 1 characters"),
    "binary-nul": (bytes(range(256)) * 8, "binary"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(500), "binary"),
}

ACCEPTED = {
    "utf16-bom": ("Lyrics line one\nAnd line two\n".encode("utf-16") * 20, "utf-16"),
    "cp1252": (("Caf\xe9 \u201cquoted\u201d r\xe9sum\xe9 \u2014 na\xefve\n" * 20).encode("cp1252"), "cp1252"),
    "latin1": (("Se\xf1or \xe0 la fa\xe7on, \xfcber gr\xfc\xdfe\n" * 20).encode("latin-1"), None),
    "crlf-and-cr": (b"first line\r\nsecond line\rthird line\n" * 20, None),
    "mixed-scripts": ((MIXED * 10).encode(), "utf-8"),
    "huge-single-line": (("one very long line without any break " * 20000).encode(), "utf-8"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_files_via_api_and_cli(name, tmp_path, capsys):
    data, message = REFUSED[name]
    with pytest.raises(tg.CorpusError, match=message):
        tg.read_text(data, name=name)
    path = tmp_path / f"{name}.txt"
    path.write_bytes(data)
    assert main(["train", str(path), "--out", str(tmp_path / "m"), *QUICK]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()  # nothing half-written


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_files_train_and_sample(name, tmp_path, capsys):
    data, encoding = ACCEPTED[name]
    corpus = tg.read_text(data, name=name)
    assert "\r" not in corpus.text
    if encoding:
        assert corpus.encoding.startswith(encoding)
    path = tmp_path / f"{name}.txt"
    path.write_bytes(data)
    assert main(["train", str(path), "--out", str(tmp_path / "m"), *QUICK]) == 0
    capsys.readouterr()
    assert main(["sample", str(tmp_path / "m"), "--length", "20", "--seed", "1", "--prompt", "Ωx"]) == 0
    assert capsys.readouterr().out.startswith("Ωx")


def test_shorter_than_one_window_says_how_long_it_must_be(tmp_path, capsys):
    path = tmp_path / "short.txt"
    path.write_text("a short poem about the sea and the sky and the land " * 5)
    assert main(["train", str(path), "--out", str(tmp_path / "m"), "--seq-len", "256"]) == 2
    err = capsys.readouterr().err
    assert "too few for windows of 256 tokens" in err and "shorter sequence length" in err


def test_word_corpus_with_300k_distinct_words_stays_bounded(tmp_path, capsys):
    path = tmp_path / "words.txt"
    path.write_text(many_distinct_words(300_000))
    args = ["train", str(path), "--out", str(tmp_path / "m"), "--tokenizer", "word",
            "--vocab-size", "5000", *QUICK]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "5,000 tokens" in err and "most frequent of" in err  # the cap and the note are shown
    assert tg.load(tmp_path / "m").tokenizer.vocab_size == 5000
