"""Sampling: logit filters, seeds, greedy, batching, streaming, and the prompt read only once."""
from __future__ import annotations

import pytest
import torch

import textgen_core as tg
from textgen_core import ConfigError, ModelConfig, build_model
from textgen_core.hub import Bundle
from textgen_core.sampling import SamplingOptions, sample_ids, top_k_filter, top_p_filter
from textgen_core.tokenizers import CharTokenizer, WordTokenizer


def test_top_k_filter_keeps_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, False, True]]
    assert torch.isfinite(top_k_filter(logits, 99)).all()  # k above the vocabulary keeps all


def test_top_p_filter_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.7)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.0)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(top_p_filter(shuffled, 0.7)).tolist() == [[False, True, False, True]]


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    text = "hello world, hello there. the world is wide and the sea is deep.\n" * 5
    tokenizer = CharTokenizer().fit(text)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("gru", "tiny", tokenizer.vocab_size)).eval()
    return Bundle(model, tokenizer)


def test_same_seed_same_text_and_different_seed_differs(bundle):
    a = tg.generate(bundle, "hello", length=60, temperature=1.0, seed=7)
    b = tg.generate(bundle, "hello", length=60, temperature=1.0, seed=7)
    c = tg.generate(bundle, "hello", length=60, temperature=1.0, seed=8)
    assert a == b and a != c
    assert a[0].startswith("hello") and len(a[0]) == len("hello") + 60


def test_top_k_one_equals_greedy(bundle):
    greedy = tg.generate(bundle, "the ", length=40, temperature=0)
    top1 = tg.generate(bundle, "the ", length=40, temperature=1.5, top_k=1, seed=3)
    assert greedy == top1


def test_several_samples_in_one_batch(bundle):
    texts = tg.generate(bundle, "the", length=30, temperature=1.0, num_samples=4, seed=1)
    assert len(texts) == 4 and len(set(texts)) > 1
    assert tg.generate(bundle, "the", length=30, temperature=1.0, num_samples=4, seed=1) == texts


def test_stream_pieces_join_to_the_generated_text(bundle):
    pieces = list(tg.stream(bundle, "sea", length=50, temperature=0.9, seed=5))
    assert len(pieces) > 10
    assert "".join(pieces) == tg.generate(bundle, "sea", length=50, temperature=0.9, seed=5)[0]


def test_prompt_is_read_once_then_one_token_per_step(bundle):
    lengths = []
    hook = bundle.model.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
    try:
        tg.generate(bundle, "hello world", length=25, seed=1)
    finally:
        hook.remove()
    assert lengths[0] == len("hello world") and set(lengths[1:]) == {1}
    assert len(lengths) == 25  # the last token needs no forward pass beyond its own


def test_empty_prompt_unseen_characters_and_length_zero(bundle):
    assert len(tg.generate(bundle, "", length=20, seed=1)[0]) == 20
    assert tg.generate(bundle, "Ωmega", length=10, seed=1)[0].startswith("Ωmega")
    assert tg.generate(bundle, "abc", length=0) == ["abc"]


def test_unknown_token_is_never_generated():
    text = "the cat sat on the mat and the dog sat on the log\n" * 4
    tokenizer = WordTokenizer().fit(text)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("gru", "tiny", tokenizer.vocab_size)).eval()
    with torch.no_grad():
        model.head.bias[list(tokenizer.never_generate)] = 100.0  # the model "wants" <unk>
    text = tg.generate(Bundle(model, tokenizer), "the", length=50, temperature=1.0, seed=2)[0]
    assert "<unk>" not in text and len(text) > 50


@pytest.mark.parametrize("bad, message", [
    (dict(length=-1), "length must be"),
    (dict(length=10**9), "length must be"),
    (dict(temperature=-0.5), "temperature must be"),
    (dict(top_k=0), "top-k must be"),
    (dict(top_p=1.5), "top-p must be"),
    (dict(num_samples=0), "number of samples"),
])
def test_bad_sampling_settings_are_refused(bundle, bad, message):
    with pytest.raises(ConfigError, match=message):
        list(sample_ids(bundle.model, [1, 2], SamplingOptions(**bad)))


def test_extreme_but_valid_settings_work(bundle):
    assert len(tg.generate(bundle, "a", length=20, temperature=100.0, seed=-5)[0]) == 21
    assert len(tg.generate(bundle, "a", length=20, top_k=10_000, top_p=0.0, seed=1)[0]) == 21
