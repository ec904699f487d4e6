"""Every architecture keeps the forward contract: shapes, stepwise == full, it learns, it saves."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from textgen_core import ConfigError, ModelConfig, build_model
from textgen_core.models import ARCHITECTURES, PRESETS
from textgen_core.models.cnn import dilation_schedule

VOCAB = 23


def tiny(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = dict(context=12, dropout=0.2)
    settings.update(overrides)
    config = ModelConfig.from_preset(arch, "tiny", VOCAB, **settings)
    return build_model(config).eval()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_shapes_and_state(arch):
    model = tiny(arch)
    ids = torch.randint(0, VOCAB, (3, 17))
    logits, state = model(ids)
    assert logits.shape == (3, 17, VOCAB)
    again, _ = model(ids, model.init_state(3))
    torch.testing.assert_close(logits, again)  # init_state means "nothing seen yet", like None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_stepwise_and_chunked_equal_full_sequence(arch):
    """Carried state must reproduce the full-sequence logits (context 12 < length 40 tests the window)."""
    model = tiny(arch)
    ids = torch.randint(0, VOCAB, (2, 40))
    with torch.no_grad():
        full, _ = model(ids)
        state, steps = None, []
        for t in range(ids.shape[1]):
            out, state = model(ids[:, t:t + 1], state)
            steps.append(out)
        state, chunks = None, []
        for start in range(0, 40, 7):
            out, state = model(ids[:, start:start + 7], state)
            chunks.append(out)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch", ["cnn", "attention"])
def test_bounded_context(arch):
    """Tokens further back than the model's window cannot change the last prediction."""
    model = tiny(arch)
    window = model.receptive_field
    ids = torch.randint(0, VOCAB, (1, window + 5))
    changed = ids.clone()
    changed[0, :5] = (changed[0, :5] + 1) % VOCAB
    with torch.no_grad():
        a, _ = model(ids)
        b, _ = model(changed)
    torch.testing.assert_close(a[0, -1], b[0, -1])
    assert not torch.allclose(a[0, 5], b[0, 5])  # but nearby tokens do matter


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_overfits_one_batch(arch):
    model = tiny(arch, dropout=0.0).train()
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (4, 33))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1, f"{arch} could not memorise one batch (loss {loss.item():.3f})"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_presets_grow(arch):
    sizes = [build_model(ModelConfig.from_preset(arch, p, 65)).num_parameters() for p in PRESETS]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hub_mixin_saves_json_config_and_safetensors(arch, tmp_path):
    model = tiny(arch)
    model.save_pretrained(tmp_path, weights_only=True)  # no tokenizer: the network alone
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["arch"] == arch and config["vocab_size"] == VOCAB
    assert (tmp_path / "model.safetensors").is_file()
    loaded = type(model).from_pretrained(tmp_path)
    ids = torch.randint(0, VOCAB, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(ids)[0], model(ids)[0])


@pytest.mark.parametrize("bad, message", [
    (dict(hidden=0), "hidden must be"),
    (dict(layers=-1), "layers must be"),
    (dict(dropout=1.0), "dropout must be"),
    (dict(arch="attention", hidden=30, heads=4), "divisible by heads"),
    (dict(arch="transformer"), "unknown model"),
])
def test_invalid_configs_are_refused(bad, message):
    values = dict(arch="gru", vocab_size=10, hidden=32)
    values.update(bad)
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**values).validated()


def test_dilations_restart_within_context():
    assert dilation_schedule(6, 3, 16) == [1, 2, 4, 1, 2, 4]
    assert dilation_schedule(3, 2, 2) == [1, 1, 1]
