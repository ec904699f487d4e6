"""Real corpora, real training: a small char model on tiny Shakespeare learns far past unigram level."""
from __future__ import annotations

import math
from collections import Counter

import pytest

import textgen_core as tg

from tests.conftest import shared_corpus


def unigram_entropy_nats(train: str, val: str) -> float:
    """Cross-entropy of the validation text under training-text character frequencies."""
    counts = Counter(train)
    total = sum(counts.values())
    return -sum(math.log(counts.get(ch, 1) / total) for ch in val) / len(val)


@pytest.mark.slow
def test_char_gru_on_tiny_shakespeare_beats_unigram_entropy(tmp_path):
    corpus = tg.read_file(shared_corpus("tinyshakespeare.txt"))
    settings = tg.RunSettings(arch="gru", preset="tiny", train=tg.TrainConfig(
        max_steps=250, eval_every=125, batch_size=32, seq_len=64, device="cpu", seed=0))
    result = tg.train_model(corpus, settings, tmp_path / "m")
    cut = int(len(corpus.text) * 0.9)
    baseline = unigram_entropy_nats(corpus.text[:cut], corpus.text[cut:])
    best = result.history.end.best_val_loss
    assert baseline > 3.0
    assert best < baseline - 0.9, f"val {best:.3f} nats/char vs unigram {baseline:.3f}"
    scores = tg.evaluate(tg.load(tmp_path / "m"), corpus.text[cut:cut + 20_000])
    assert scores["loss"] < baseline - 0.9


@pytest.mark.slow
@pytest.mark.parametrize("kind, vocab", [("word", 3000), ("sentencepiece", 1000)])
def test_word_and_subword_models_train_on_alice(tmp_path, kind, vocab):
    corpus = tg.read_file(shared_corpus("alice.txt"))
    settings = tg.RunSettings(tokenizer=kind, vocab_size=vocab, arch="lstm", preset="tiny",
                              train=tg.TrainConfig(max_steps=40, eval_every=20, batch_size=16,
                                                   seq_len=32, device="cpu"))
    result = tg.train_model(corpus, settings, tmp_path / kind)
    evals = result.history.evals
    assert evals[-1]["val_loss"] < math.log(result.bundle.tokenizer.vocab_size)
    assert 0 < evals[-1]["val_bpc"] < 8
    text = tg.generate(tg.load(tmp_path / kind), "Alice", length=30, seed=1)[0]
    assert text.startswith("Alice") and len(text) > 30
