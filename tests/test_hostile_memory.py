"""Requests built to exhaust memory or break the math: unbounded prompts, huge batches of samples,
tiny temperatures, models whose outputs are NaN, seeds of the wrong type. Each is either served
within bounded memory, with the same text as before, or refused with a message naming the limit."""
from __future__ import annotations

import pytest
import torch
from test_memory import StorageTracker

import textgen_core as tg
from textgen_core import ConfigError, ModelConfig, build_model, sampling
from textgen_core.graphed_sampling import ChunkedSampler
from textgen_core.hub import Bundle
from textgen_core.sampling import (
    MAX_PROMPT_CHARS,
    MAX_TOTAL_TOKENS,
    MIN_TEMPERATURE,
    SamplingOptions,
    read_prompt,
    repeat_state,
    sample_ids,
)
from textgen_core.tokenizers import make_tokenizer

TEXT = "the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs!\n" * 3


def bundle(arch: str, **sizes) -> Bundle:
    tokenizer = make_tokenizer("char").fit(TEXT)
    torch.manual_seed(0)
    return Bundle(build_model(ModelConfig.from_preset(arch, "tiny", tokenizer.vocab_size, **sizes)).eval(),
                  tokenizer)


def prompt_ids(n: int, vocab: int) -> list[int]:
    return torch.randint(1, vocab, (n,), generator=torch.Generator().manual_seed(n)).tolist()


def flat(state) -> list[torch.Tensor]:
    return [state] if isinstance(state, torch.Tensor) else [t for part in state for t in flat(part)]


def full_pass(model, ids: list[int], batch: int = 1):
    with torch.inference_mode():
        logits, state = model(torch.tensor([ids] * batch))
    return logits[:, -1], state


def force_long_prompt_path(monkeypatch, model) -> None:
    """A pass budget of one 64-token chunk at batch 1: longer prompts take the long-prompt path."""
    monkeypatch.setattr(sampling, "PROMPT_CHUNK_TOKENS", 64)
    monkeypatch.setattr(sampling, "PROMPT_PASS_BYTES", sampling._pass_bytes(model, 1, 64))


def chunked_pass(model, ids: list[int], batch: int, monkeypatch):
    """``read_prompt`` on its long-prompt path: batch 1, chunks of 64 tokens."""
    force_long_prompt_path(monkeypatch, model)
    lengths = []
    hook = model.register_forward_pre_hook(lambda module, args: lengths.append(tuple(args[0].shape)))
    try:
        with torch.inference_mode():
            last, state = read_prompt(model, model, ids, batch)
    finally:
        hook.remove()
        monkeypatch.undo()
    return last, state, lengths


# --- prompts -------------------------------------------------------------------------------------
def test_a_prompt_over_the_limit_is_refused_naming_the_limit():
    b = bundle("gru")
    with pytest.raises(ConfigError, match=f"more than the {MAX_PROMPT_CHARS:,} a prompt may have"):
        tg.generate(b, "a" * (MAX_PROMPT_CHARS + 1), length=1)
    with pytest.raises(ConfigError, match="a prompt may have"):
        list(sample_ids(b.model, [1] * (4 * MAX_PROMPT_CHARS + 1), SamplingOptions(length=1)))
    with pytest.raises(ConfigError, match="the prompt must be text"):
        tg.generate(b, b"bytes", length=1)


@pytest.mark.parametrize("arch", ["cnn", "attention"])
def test_window_models_read_only_the_tokens_they_can_see(arch, monkeypatch):
    """Their forward pass sees ``receptive_field`` tokens (for attention, stacked blocks see
    layers * (context - 1) + 1, more than one context): the rest of a long prompt changes nothing."""
    model = bundle(arch).model
    ids = prompt_ids(700, model.config.vocab_size)
    full_last, full_state = full_pass(model, ids)
    last, state, lengths = chunked_pass(model, ids, 1, monkeypatch)
    assert sum(t for _, t in lengths) == model.receptive_field < 700
    assert torch.allclose(last, full_last, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(flat(state), flat(full_state)))


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_rnns_read_a_long_prompt_in_chunks_with_the_state_carried(arch, monkeypatch):
    model = bundle(arch).model
    ids = prompt_ids(300, model.config.vocab_size)
    full_last, full_state = full_pass(model, ids, batch=3)
    last, state, lengths = chunked_pass(model, ids, 3, monkeypatch)
    assert lengths == [(1, 64)] * 4 + [(1, 44)]       # at batch 1: the samples share one read
    assert torch.allclose(last, full_last, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(flat(state), flat(full_state)))


@pytest.mark.parametrize("arch", ["gru", "lstm", "cnn", "attention"])
def test_a_repeated_state_equals_the_state_read_for_every_sample(arch):
    model = bundle(arch).model
    ids = prompt_ids(40, model.config.vocab_size)
    _, one = full_pass(model, ids)
    _, four = full_pass(model, ids, batch=4)
    repeated = repeat_state(model, one, 4)
    assert [t.shape for t in flat(repeated)] == [t.shape for t in flat(four)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(flat(repeated), flat(four)))


@pytest.mark.parametrize("arch", ["gru", "cnn", "attention"])
def test_the_long_prompt_path_gives_the_same_text(arch, monkeypatch):
    b = bundle(arch)
    prompt = (TEXT * 4)[:900]
    before = tg.generate(b, prompt, length=40, temperature=0, num_samples=2)
    force_long_prompt_path(monkeypatch, b.model)
    assert tg.generate(b, prompt, length=40, temperature=0, num_samples=2) == before


def test_ordinary_prompts_are_read_in_one_pass_for_all_samples():
    model = bundle("lstm").model
    shapes = []
    hook = model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    try:
        list(sample_ids(model, prompt_ids(199, model.config.vocab_size),
                        SamplingOptions(length=2, num_samples=5, seed=1)))
    finally:
        hook.remove()
    assert shapes[0] == (5, 199)   # as before: the same ids, bit for bit, for the same seed


def test_many_samples_of_the_longest_prompt_stay_small():
    """256 samples of a 100,000-character prompt once tried to allocate 33 GB."""
    b = bundle("attention")
    prompt = (TEXT * (MAX_PROMPT_CHARS // len(TEXT) + 1))[:MAX_PROMPT_CHARS]
    tracker = StorageTracker()
    with tracker:
        texts = tg.generate(b, prompt, length=3, temperature=1.0, num_samples=256, seed=0)
    assert len(texts) == 256 and all(len(t) == MAX_PROMPT_CHARS + 3 for t in texts)
    assert tracker.peak < 100e6


def test_a_long_rnn_prompt_is_read_in_bounded_memory(monkeypatch):
    b = bundle("gru")
    monkeypatch.setattr(sampling, "PROMPT_PASS_BYTES", 4_000_000)
    tracker = StorageTracker()
    with tracker:
        (text,) = tg.generate(b, (TEXT * 12)[:3000], length=2, seed=0)
    assert len(text) == 3002
    assert tracker.peak < 4_000_000 + 1_000_000   # one chunk's pass, the state and the ids


# --- samples x length, and samples x state --------------------------------------------------------
def test_samples_times_length_is_bounded():
    with pytest.raises(ConfigError, match=f"more than the {MAX_TOTAL_TOKENS:,} one request may generate"):
        SamplingOptions(length=10_000, num_samples=256).validated()
    SamplingOptions(length=7_812, num_samples=256).validated()


def test_samples_whose_states_would_not_fit_are_refused_with_how_many_fit():
    config = ModelConfig.from_preset("attention", "tiny", 60, hidden=512, layers=8, context=4096)
    with torch.device("meta"):   # its weights are never used: the request is refused before any pass
        model = build_model(config)
    with pytest.raises(ConfigError, match=r"16 sample\(s\) from this model need about \d+\.\d GB .* more than "
                                          r"the 1\.5 GB one request may use; ask for at most \d+ samples"):
        list(sample_ids(model, [1, 2], SamplingOptions(length=5, num_samples=16)))
    sampling.check_sampling_memory(model, 2)


# --- the math ------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1e-40, 1e-5, -1.0, float("nan"), True, "0.5"])
def test_temperatures_that_break_the_math_are_refused(temperature):
    with pytest.raises(ConfigError, match=f"temperature must be 0 .greedy. or a number from {MIN_TEMPERATURE:g}"):
        tg.generate(bundle("gru"), "the", length=5, temperature=temperature)


def test_the_smallest_temperature_samples_like_greedy():
    b = bundle("gru")
    assert tg.generate(b, "the ", length=30, temperature=MIN_TEMPERATURE, seed=1) == \
        tg.generate(b, "the ", length=30, temperature=0)


@pytest.mark.parametrize("seed", [1.5, True, "3", 2**64])
def test_seeds_that_are_not_64_bit_whole_numbers_are_refused(seed):
    with pytest.raises(ConfigError, match="seed must be a whole number that fits in 64 bits"):
        tg.generate(bundle("gru"), "the", length=5, seed=seed)
    with pytest.raises(ConfigError, match="seed must be"):
        SamplingOptions(seed=seed).validated()


@pytest.mark.parametrize("bad", [dict(length=True), dict(length=2.0), dict(top_k=2.5), dict(top_p="0.5"),
                                 dict(num_samples=True)])
def test_settings_of_the_wrong_type_are_refused(bad):
    with pytest.raises(ConfigError, match="must be"):
        SamplingOptions(**bad).validated()


def broken(arch: str, value: float) -> Bundle:
    b = bundle(arch)
    with torch.no_grad():
        b.model.head.bias[3] = value
    return b


@pytest.mark.parametrize("arch", ["gru", "attention"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("temperature", [0, 0.8])
def test_nan_or_infinite_logits_are_a_clear_error(arch, value, temperature):
    with pytest.raises(ConfigError, match="the model's output is not a finite number .* weights are broken"):
        tg.generate(broken(arch, value), "the", length=10, temperature=temperature, seed=0)


def test_logits_that_turn_nan_mid_way_are_caught_at_that_step():
    b = bundle("gru")
    calls = []

    def blow_up(module, args, output):
        calls.append(1)
        if len(calls) == 5:
            return output[0] * float("nan"), output[1]
        return None

    hook = b.model.register_forward_hook(blow_up)
    try:
        produced = []
        with pytest.raises(ConfigError, match="not a finite number"):
            for ids in sample_ids(b.model, [1, 2], SamplingOptions(length=20, seed=0)):
                produced.append(ids)
    finally:
        hook.remove()
    assert len(produced) == 4


def test_the_chunked_sampler_refuses_nan_logits_too():
    model = broken("gru", float("nan")).model
    sampler = ChunkedSampler(model, 2, False, None, False, False)
    with torch.inference_mode():
        logits, state = model(torch.tensor([[1, 2], [1, 2]]))
        with pytest.raises(ConfigError, match="not a finite number"):
            list(sampler.generate(logits[:, -1], state, 10, 0.8, None, None, torch.Generator().manual_seed(0)))


def test_a_cpu_allocator_failure_while_sampling_is_out_of_memory():
    model = bundle("gru").model

    def exhausted(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 35433480192 bytes. Error code 12 (Cannot allocate memory)")

    model.forward = exhausted
    with pytest.raises(ConfigError, match="out of memory while sampling 2 sample"):
        list(sample_ids(model, [1, 2], SamplingOptions(length=5, num_samples=2)))

    def bug(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    model.forward = bug   # any other RuntimeError is a bug, and stays one
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        list(sample_ids(model, [1, 2], SamplingOptions(length=5)))


# --- evaluation ----------------------------------------------------------------------------------
def test_a_loss_that_is_not_finite_is_an_error():
    with pytest.raises(ConfigError, match=r"the model's loss on this text is not a finite number \(nan\): its "
                                          "weights are broken; retrain it"):
        tg.evaluate(broken("gru", float("nan")), TEXT)
    assert tg.evaluate(bundle("gru"), TEXT)["loss"] > 0


def test_evaluation_fits_its_memory_budget_with_a_large_vocabulary(monkeypatch):
    from textgen_core import api

    b = bundle("gru")
    expected = tg.evaluate(b, TEXT, seq_len=64)
    monkeypatch.setattr(api, "EVAL_MEMORY_BYTES", 50_000)   # as a word vocabulary would need
    streams, chunk = api._eval_shape(b.model.config, 64)
    assert streams == 1 and chunk < 64
    assert tg.evaluate(b, TEXT, seq_len=64)["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    with pytest.raises(ConfigError, match="seq_len must be a whole number"):
        tg.evaluate(b, TEXT, seq_len=0)
