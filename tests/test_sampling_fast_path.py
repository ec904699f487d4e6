"""The sampler's CPU step for GRU/LSTM models gives the module's logits bit for bit, and the same text."""
from __future__ import annotations

import pytest
import torch

from textgen_core import ModelConfig, build_model
from textgen_core.sampling import SamplingOptions, _rnn_step, sample_ids


def rnn_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig.from_preset(arch, "tiny", 40, layers=2, hidden=48, dropout=0.3)).eval()


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_step_equals_the_module_bit_for_bit(arch):
    model = rnn_model(arch)
    step = _rnn_step(model)
    assert step is not None
    with torch.inference_mode():
        _, state = model(torch.tensor([[1, 2, 3], [4, 5, 6]]))
        fast_state = state
        for token in [7, 8, 9, 10]:
            ids = torch.tensor([[token], [token + 1]])
            logits, state = model(ids, state)
            fast_logits, fast_state = step(ids, fast_state)
            assert torch.equal(logits, fast_logits)
        flat = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
        assert all(torch.equal(a, b) for a, b in zip(flat(state), flat(fast_state)))


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("num_samples", [1, 3, 8])
def test_same_samples_with_and_without_the_fast_step(arch, num_samples):
    model = rnn_model(arch)
    options = SamplingOptions(length=80, temperature=1.0, num_samples=num_samples, seed=11)
    fast = torch.stack(list(sample_ids(model, [1, 2, 3], options, banned_ids=(0,))))
    hook = model.register_forward_hook(lambda *args: None)  # a hook forces the module path
    try:
        assert _rnn_step(model) is None
        slow = torch.stack(list(sample_ids(model, [1, 2, 3], options, banned_ids=(0,))))
    finally:
        hook.remove()
    assert torch.equal(fast, slow)


def test_fast_step_only_where_it_is_exact():
    assert _rnn_step(rnn_model("gru").train()) is None              # dropout active
    torch.manual_seed(0)
    assert _rnn_step(build_model(ModelConfig.from_preset("cnn", "tiny", 40)).eval()) is None
    model = rnn_model("lstm")
    hook = model.rnn.register_forward_pre_hook(lambda *args: None)  # a hook on a submodule counts too
    try:
        assert _rnn_step(model) is None
    finally:
        hook.remove()
    assert _rnn_step(model) is not None


def test_out_of_memory_while_sampling_is_a_clear_error():
    from textgen_core.errors import ConfigError
    model = rnn_model("gru")

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model.forward = exhausted
    with pytest.raises(ConfigError, match="out of memory while sampling 3 sample"):
        list(sample_ids(model, [1, 2], SamplingOptions(length=5, num_samples=3, seed=0)))
    del model.forward  # the model samples again afterwards
    assert len(list(sample_ids(model, [1, 2], SamplingOptions(length=5, num_samples=3, seed=0)))) == 5
