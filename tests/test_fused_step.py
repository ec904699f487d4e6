"""Batch-1 sampling on the CPU through the fused step gives the module's logits bit for bit and the
ids the sampler drew before it (torch.lstm/torch.gru steps and torch.multinomial)."""
from __future__ import annotations

import pytest
import torch

import textgen_core as tg
from textgen_core import ModelConfig, build_model, fused_step, sampling
from textgen_core.fused_step import FusedRnnStep, draw, fused_step_supported
from textgen_core.sampling import SamplingOptions, sample_ids


def rnn_model(arch: str, vocab: int = 40, hidden: int = 48, layers: int = 2, embedding=None) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.from_preset(arch, "tiny", vocab, layers=layers, hidden=hidden,
                                               embedding=embedding, dropout=0.3)).eval()


def reference_ids(model, prompt: list[int], options: SamplingOptions, banned: tuple[int, ...]) -> list[int]:
    """The sampler as it was: the module step by step and torch.multinomial."""
    generator = torch.Generator().manual_seed(options.seed)
    out = []
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        logits, state = model(torch.tensor([prompt]))
        last = logits[:, -1, :]
        for _ in range(options.length):
            if banned:
                last = last.clone()
                last[:, list(banned)] = float("-inf")
            if options.temperature == 0:
                next_id = int(last.argmax(-1))
            else:
                probs = sampling.next_token_probs(last, options.temperature, options.top_k,
                                                  sampling.active_top_p(options))
                next_id = int(torch.multinomial(probs, 1, generator=generator))
            out.append(next_id)
            logits, state = model(torch.tensor([[next_id]]), state)
            last = logits[:, -1, :]
    return out


@pytest.mark.parametrize("arch", ["gru", "lstm"])
# 37 and 21: widths no vector length divides, so rows sit at unaligned offsets; 3 layers: a middle one
@pytest.mark.parametrize("vocab, hidden, layers, embedding", [(40, 48, 2, None), (300, 37, 3, 21), (65, 64, 1, 16),
                                                                 (65, 96, 2, 32)])
def test_fused_step_equals_the_module_bit_for_bit(arch, vocab, hidden, layers, embedding):
    model = rnn_model(arch, vocab, hidden, layers, embedding)
    generator = torch.Generator().manual_seed(2)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, state = model(torch.tensor([[1, 2, 3]]))
        fused = FusedRnnStep(model)
        fused.load_state(state)
        for token in torch.randint(0, vocab, (200,), generator=generator).tolist():
            logits, state = model(torch.tensor([[token]]), state)
            assert torch.equal(fused.step(token), logits[:, -1, :])
        flat = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
        assert all(torch.equal(a, b) for a, b in zip(flat(state), flat(fused.state())))


def check_a_state_loaded_between_steps(arch: str, layers: int, stepper=lambda fused: (fused.load_state, fused.step)):
    """A state loaded after some steps is the one the next step starts from: a two-layer step makes
    layer 0's hidden projection a step ahead, and a loaded state must replace it. ``stepper(fused)``
    gives the (load_state, step -> logits) pair to check."""
    model = rnn_model(arch, layers=layers)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, first_state = model(torch.tensor([[1, 2, 3]]))
        _, state = model(torch.tensor([[7, 8, 9, 10]]))
        load_state, step = stepper(FusedRnnStep(model))
        load_state(first_state)
        for token in (4, 5, 6):
            step(token)
        load_state(state)
        for token in (11, 12, 13, 14):
            logits, state = model(torch.tensor([[token]]), state)
            assert torch.equal(step(token), logits[:, -1, :])


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [2, 3])
def test_a_state_loaded_between_steps_is_the_one_the_next_step_starts_from(arch, layers):
    check_a_state_loaded_between_steps(arch, layers)


@pytest.mark.parametrize("max_bytes, rows", [(0, 0), (3 * 4 * 4 * 48, 3), (10**9, 5)])
def test_first_layer_rows_are_kept_up_to_the_cap_and_give_the_same_bits(monkeypatch, max_bytes, rows):
    monkeypatch.setattr(fused_step, "MAX_TABLE_BYTES", max_bytes)
    model = rnn_model("lstm")
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, state = model(torch.tensor([[5]]))
        fused = FusedRnnStep(model)
        fused.load_state(state)
        for token in [7, 8, 7, 9, 10, 11, 7, 11]:   # 5 distinct ids, some seen again
            logits, state = model(torch.tensor([[token]]), state)
            assert torch.equal(fused.step(token), logits[:, -1, :])
        assert len(fused.table) == rows


def test_banned_ids_are_minus_infinity_and_the_rest_unchanged():
    model = rnn_model("gru")
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, state = model(torch.tensor([[5]]))
        fused = FusedRnnStep(model, banned_ids=(0, 3))
        fused.load_state(state)
        logits, _ = model(torch.tensor([[7]]), state)
        got = fused.step(7)
        assert torch.isneginf(got[0, [0, 3]]).all()
        keep = [i for i in range(40) if i not in (0, 3)]
        assert torch.equal(got[0, keep], logits[0, -1, keep])


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("settings", [dict(temperature=0.8), dict(temperature=1.3, top_k=5),
                                      dict(temperature=1.0, top_p=0.9), dict(temperature=0)])
def test_sampling_draws_the_ids_it_drew_before(arch, settings):
    model = rnn_model(arch)
    options = SamplingOptions(length=300, seed=7, **settings)
    assert fused_step_supported(model)
    ids = [int(i) for i in sample_ids(model, [1, 2, 3], options, banned_ids=(0,))]
    assert ids == reference_ids(model, [1, 2, 3], options, (0,))
    assert 0 not in ids


def test_draw_is_multinomial_for_one_sample():
    generator, twin = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    noise = torch.empty(4, 50)
    for _ in range(50):
        probs = torch.softmax(3 * torch.randn(4, 50), dim=-1)
        assert torch.equal(draw(probs, twin, noise), torch.multinomial(probs, 1, generator=generator).squeeze(-1))


def test_a_bundled_model_writes_the_same_text_through_the_public_api(monkeypatch):
    bundle = tg.load("shakespeare-char-lstm")
    text = tg.generate(bundle, "ROMEO:", length=200, seed=4)[0]
    monkeypatch.setattr(sampling, "_fused_step", lambda model, batch: None)   # the unfused loop
    monkeypatch.setattr(fused_step, "draw", lambda probs, generator, noise:
                        torch.multinomial(probs, 1, generator=generator).squeeze(-1))
    assert tg.generate(bundle, "ROMEO:", length=200, seed=4)[0] == text


def test_only_plain_models_on_the_cpu_get_the_fused_step():
    assert not fused_step_supported(rnn_model("gru").train())
    torch.manual_seed(0)
    assert not fused_step_supported(build_model(ModelConfig.from_preset("cnn", "tiny", 40)).eval())
    model = rnn_model("lstm")
    hook = model.rnn.register_forward_hook(lambda *args: None)
    try:
        assert not fused_step_supported(model)
    finally:
        hook.remove()
    assert not fused_step_supported(rnn_model("lstm").double())
    assert sampling._fused_step(model, 2) is None and sampling._fused_step(model, 1) is not None


def test_broken_weights_take_the_checked_path_and_get_the_clear_error():
    model = rnn_model("lstm")
    with torch.no_grad():
        model.rnn.weight_hh_l1[3, 4] = float("nan")
    assert not fused_step_supported(model)
    with pytest.raises(tg.TextgenError, match="not a finite number"):
        list(sample_ids(model, [1, 2, 3], SamplingOptions(length=20, seed=0)))


@pytest.mark.parametrize("num_samples", [1, 3])
def test_a_paused_sampler_leaves_the_process_wide_settings_alone(num_samples):
    """oneDNN and the thread count are process-wide: a sampler paused between tokens (a page that
    stops reading it, another thread training meanwhile) must not hold them changed."""
    model = rnn_model("lstm")
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    paused = sample_ids(model, [1, 2, 3], SamplingOptions(length=50, num_samples=num_samples, seed=0))
    next(paused)
    next(paused)
    assert torch.backends.mkldnn.enabled == onednn and torch.get_num_threads() == threads
    paused.close()
