"""The free-memory check runs in the engine before a model is built: the CLI, the app's jobs and
resumes (with the sizes of the model being resumed) all refuse a run that cannot fit."""
from __future__ import annotations

import subprocess
import sys
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from textgen_core import ConfigError, memory
from textgen_core.cli import main
from textgen_core.data import TokenSplit
from textgen_core.evaluation import total_nats
from textgen_core.models import ARCHITECTURES, PRESETS, ModelConfig, build_model
from textgen_core.training import TrainConfig, Trainer

TRAIN = ["--model", "gru", "--preset", "tiny", "--max-steps", "10", "--eval-every", "10",
         "--seq-len", "32", "--batch-size", "8", "--device", "cpu"]


def need(hidden: int, vocab: int, batch: int = 8, seq_len: int = 32) -> int:
    config = ModelConfig.from_preset("gru", "tiny", vocab, hidden=hidden)
    return memory.training_memory_bytes(config, batch, seq_len)[1]


def test_the_need_counts_weights_optimizer_and_activations():
    config = ModelConfig.from_preset("lstm", "small", 80)
    parameters, bytes_needed = memory.training_memory_bytes(config, 32, 64)
    assert parameters == 881_744                     # built on the meta device: nothing allocated
    assert bytes_needed > 16 * parameters + 4 * 32 * 64 * (4 * 80 + 18 * 256 * 2)
    # the need grows with the tokens of a batch, and an attention model's with the square of seq_len
    assert memory.training_memory_bytes(config, 64, 64)[1] - bytes_needed > 4 * 32 * 64 * 18 * 256 * 2
    attention = ModelConfig.from_preset("attention", "tiny", 80)
    short, long = (memory.training_memory_bytes(attention, 1, t)[1] for t in (1024, 4096))
    assert long - short > 4 * 4 * attention.heads * (4096 ** 2 - 1024 ** 2)


# --- the estimate against a measured training step ------------------------------------------------
class StorageTracker(TorchDispatchMode):
    """Bytes of live tensor storage: each storage an op returns is counted once until it is freed.

    Every op of a training step (forward, autograd's backward ops, clipping, AdamW) passes through
    this mode; the storage behind each output is added when first seen and subtracted when it dies
    (a weakref finalizer on the storage object, which torch keeps for as long as the storage lives,
    also when only autograd's saved tensors hold it). Tensors that were alive before (weights,
    gradients, optimizer state) are registered first the same way, so that the previous step's
    gradients leave the count when ``zero_grad`` frees them. Scratch memory a kernel allocates and
    frees inside one op is not seen; nothing of that kind is large in these models.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}      # storage address -> bytes
        self.current = self.peak = 0

    def track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or address in self.live:
            return
        self.live[address] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, address)

    def _free(self, address: int) -> None:
        self.current -= self.live.pop(address)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.track(value)
        return out


def measured_peak(config: ModelConfig, batch: int, seq_len: int) -> int:
    """Peak bytes of the Trainer's second training step (the first creates the optimizer state)."""
    torch.manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (2 * seq_len + 2,), dtype=torch.int16)
    trainer = Trainer(build_model(config), TokenSplit(ids, ids[: seq_len + 2]),
                      TrainConfig(batch_size=batch, seq_len=seq_len, device="cpu", precision="fp32", max_steps=2))
    trainer.model.train()
    trainer._train_step()
    tracker = StorageTracker()
    for tensor in [*trainer.model.parameters(), *trainer.model.buffers()]:
        tracker.track(tensor)
        if tensor.grad is not None:
            tracker.track(tensor.grad)
    for state in trainer.optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                tracker.track(value)
    del tensor, state, value   # no reference of this test may keep the old gradients alive
    with tracker:
        trainer._train_step()
    return tracker.peak


# (batch, seq_len) per preset: the first is all weights and optimizer, the others add activations
# worth from a fraction to many times the weights (tiny attention: past its context window, too).
# Short sequences keep the CPU GRU (one op per gate and time step) fast.
SHAPES = {"tiny": [(1, 8), (16, 64), (16, 160)], "small": [(1, 8), (8, 48), (32, 64)],
          "medium": [(1, 8), (8, 32), (24, 32)], "large": [(1, 8), (8, 16), (32, 16)]}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_estimate_bounds_a_measured_training_step(arch):
    """Every preset at three shapes: the estimate is never below the measured peak of a real
    ``Trainer._train_step`` (fp32 on the CPU: forward, cross-entropy, backward, clipping, AdamW),
    and at most 1.5 times it. The peak is measured by ``StorageTracker``: the bytes of every tensor
    storage alive at each moment of the step, the weights, gradients and optimizer state included."""
    ratios = {}
    for preset, shapes in SHAPES.items():
        for batch, seq_len in shapes:
            config = ModelConfig.from_preset(arch, preset, 97)
            estimate = memory.training_memory_bytes(config, batch, seq_len)[1]
            ratios[preset, batch, seq_len] = estimate / measured_peak(config, batch, seq_len)
    assert all(1.0 <= r <= 1.5 for r in ratios.values()), ratios


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_the_estimate_bounds_a_measured_validation_pass(arch):
    """The same count over ``total_nats``, beyond the weights and the split's own int64 copies, with
    oneDNN on and off (the sampler turns it off for small batches; an LSTM without it keeps 2-3x more)."""
    ratios = {}
    for preset, seq_len in [("tiny", 64), ("tiny", 400), ("small", 128)]:
        config = ModelConfig.from_preset(arch, preset, 97)
        model = build_model(config).eval()
        ids = torch.randint(0, 97, (3 * seq_len + 1,), dtype=torch.int16)   # one stream, three chunks
        peaks = []
        for onednn in (True, False):
            tracker = StorageTracker()
            for tensor in model.parameters():
                tracker.track(tensor)
            with torch.backends.mkldnn.flags(enabled=onednn), tracker:
                total_nats(model, ids, seq_len)
            peaks.append(tracker.peak)
        held = 4 * memory.count_parameters(config) + 2 * 8 * 3 * seq_len
        ratios[preset, seq_len] = 4 * memory.eval_floats(config, 1, seq_len) / (max(peaks) - held)
    assert all(1.0 <= r <= 1.6 for r in ratios.values()), ratios


def test_the_check_counts_the_validation_pass(monkeypatch):
    config = ModelConfig.from_preset("gru", "tiny", 20_000)     # a word-sized vocabulary, small batches
    train = memory.training_memory_bytes(config, 2, 256)[1]
    evaluation = memory.evaluation_memory_bytes(config, 256, 64)
    assert evaluation > 4 * train
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: (train + evaluation) // 2)
    memory.check_memory(config, 2, 256, "cpu", eval_streams=1)
    with pytest.raises(ConfigError, match="needs about"):
        memory.check_memory(config, 2, 256, "cpu")


@pytest.mark.parametrize("exc, expected", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (MemoryError(), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 70368744177664 bytes. Error code 12 (Cannot allocate memory)"), True),
    (RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 1000 bytes."), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"), False),
    (ValueError("can't allocate memory"), False),
])
def test_out_of_memory_is_recognised(exc, expected):
    assert memory.is_out_of_memory(exc) is expected


def test_a_real_cpu_allocation_failure_is_out_of_memory():
    with pytest.raises(RuntimeError) as info:
        torch.empty(1 << 60, dtype=torch.uint8)
    assert memory.is_out_of_memory(info.value)


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
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GB to train, more than the 50 MB free on this "
                                          r"machine; choose a smaller size"):
        memory.check_memory(config, 64, 256, "cpu")
    memory.check_memory(ModelConfig.from_preset("gru", "tiny", 80), 8, 32, "cpu")   # fits


def test_the_cli_refuses_before_writing_anything(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 1_000_000)
    assert main(["train", str(corpus), "--out", str(tmp_path / "model"), *TRAIN]) == 2
    assert "needs about" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_resume_is_checked_with_the_saved_model_not_the_settings(tmp_path, monkeypatch, capsys):
    corpus = tmp_path / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    out = tmp_path / "model"
    assert main(["train", str(corpus), "--out", str(out), *TRAIN, "--hidden", "256"]) == 0
    vocab = len(set(corpus.read_text())) + 1
    small, saved = need(8, vocab), need(256, vocab)
    assert small < saved
    # room for a hidden-8 model, not for the saved hidden 256: the resume (whose sizes come from the
    # saved run; other sizes would be refused) must be refused
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: (small + saved) // 2)
    args = ["train", str(corpus), "--out", str(out), *TRAIN, "--resume"]
    del args[args.index("--preset"):args.index("--preset") + 2]   # a preset given now would bring its sizes
    args[args.index("--max-steps") + 1] = "20"
    assert main(args) == 2
    assert "needs about" in capsys.readouterr().err
