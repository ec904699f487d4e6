"""The free-memory check runs in the engine before a model is built: the CLI, the app's jobs and
resumes (with the sizes of the model being resumed) all refuse a run that cannot fit."""
from __future__ import annotations

import subprocess
import sys

import pytest

from textgen_core import ConfigError, memory
from textgen_core.cli import main
from textgen_core.models import ARCHITECTURES, PRESETS, ModelConfig, build_model

TRAIN = ["--model", "gru", "--preset", "tiny", "--max-steps", "10", "--eval-every", "10",
         "--seq-len", "32", "--batch-size", "8", "--device", "cpu"]


def need(hidden: int, vocab: int, batch: int = 8, seq_len: int = 32) -> int:
    config = ModelConfig.from_preset("gru", "tiny", vocab, hidden=hidden)
    return memory.training_memory_bytes(config, batch, seq_len)[1]


def test_the_need_counts_weights_optimizer_and_activations():
    config = ModelConfig.from_preset("lstm", "small", 80)
    parameters, bytes_needed = memory.training_memory_bytes(config, 32, 64)
    assert parameters == 881_744                     # built on the meta device: nothing allocated
    assert bytes_needed == 16 * parameters + 4 * 32 * 64 * (2 * 80 + 256 * 2)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("preset", PRESETS)
def test_the_meta_count_equals_a_built_model(arch, preset):
    config = ModelConfig.from_preset(arch, preset, 97)
    assert memory.count_parameters(config) == build_model(config).num_parameters()


def test_the_check_does_not_import_the_compiler():
    """Weight initialisation on the meta device would import torch._dynamo (about 1.5 s a process)."""
    code = ("import sys; from textgen_core import memory; from textgen_core.models import ModelConfig; "
            "memory.training_memory_bytes(ModelConfig.from_preset('lstm', 'small', 80), 8, 32); "
            "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_check_refuses_with_what_to_change(monkeypatch):
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 50_000_000)
    config = ModelConfig.from_preset("lstm", "large", 80)
    with pytest.raises(ConfigError, match=r"needs at least 0\.\d GB to train, more than the 50 MB free on this "
                                          r"machine; choose a smaller size"):
        memory.check_memory(config, 64, 256, "cpu")
    memory.check_memory(ModelConfig.from_preset("gru", "tiny", 80), 8, 32, "cpu")   # fits


def test_the_cli_refuses_before_writing_anything(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 1_000_000)
    assert main(["train", str(corpus), "--out", str(tmp_path / "model"), *TRAIN]) == 2
    assert "needs at least" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_resume_is_checked_with_the_saved_model_not_the_settings(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    out = tmp_path / "model"
    assert main(["train", str(corpus), "--out", str(out), *TRAIN, "--hidden", "256"]) == 0
    vocab = len(set(corpus.read_text())) + 1
    small, saved = need(8, vocab), need(256, vocab)
    assert small < saved
    # room for the settings' hidden 8, not for the saved hidden 256: the resume must be refused
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: (small + saved) // 2)
    args = ["train", str(corpus), "--out", str(out), *TRAIN, "--hidden", "8", "--resume"]
    args[args.index("--max-steps") + 1] = "20"
    assert main(args) == 2
    assert "needs at least" in capsys.readouterr().err
