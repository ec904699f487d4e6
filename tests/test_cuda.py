"""Training on a GPU: the Trainer's CUDA path (bf16 autocast, fused AdamW, batches built on the
device), resume, and weights that move to the CPU unchanged. Skipped without a CUDA GPU."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from textgen_core import ModelConfig, TrainConfig, Trainer, build_model
from textgen_core.data import split_ids, to_id_tensor
from textgen_core.tokenizers import CharTokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_trainer(text: str, arch: str, checkpoint_dir=None, **overrides) -> Trainer:
    tokenizer = CharTokenizer().fit(text)
    split = split_ids(to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size), 0.2, 32)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(arch, "tiny", tokenizer.vocab_size))
    settings = dict(batch_size=16, seq_len=32, lr=1e-2, max_steps=60, eval_every=20, log_every=10,
                    device="cuda", seed=1)
    settings.update(overrides)
    return Trainer(model, split, TrainConfig(**settings), checkpoint_dir=checkpoint_dir)


@pytest.mark.parametrize("arch", ["gru", "lstm", "cnn", "attention"])
def test_trains_on_the_gpu_in_bf16(small_text, arch):
    trainer = gpu_trainer(small_text, arch)
    assert trainer.precision == "bf16" and trainer.train_ids.is_cuda
    history = trainer.fit()
    losses = [p["val_loss"] for p in history.evals]
    assert history.end.reason == "max_steps" and len(losses) == 3
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < math.log(trainer.model.config.vocab_size) - 1.5   # it learns the repeated text
    reports = [p for p in history.points if p["kind"] == "train"]   # losses read back without .item() stalls
    assert [p["step"] for p in reports] == [10, 20, 30, 40, 50, 60]
    assert all(0 < p["train_loss"] < math.log(trainer.model.config.vocab_size) + 1 for p in reports)
    assert next(trainer.model.parameters()).is_cuda


def test_resume_on_the_gpu_continues_the_same_run(small_text, tmp_path):
    straight = gpu_trainer(small_text, "lstm").fit()
    stop = threading.Event()
    first = gpu_trainer(small_text, "lstm", checkpoint_dir=tmp_path)
    first.callbacks.append(lambda e: stop.set() if e.kind == "eval" and e.step == 20 else None)
    assert first.fit(stop).end.step == 20
    second = gpu_trainer(small_text, "lstm", checkpoint_dir=tmp_path)
    second.resume(tmp_path)
    history = second.fit()
    assert history.end.step == 60
    # cuDNN's bf16 kernels are not bit-reproducible across runs: close, not equal
    assert abs(history.evals[-1]["val_loss"] - straight.evals[-1]["val_loss"]) < 0.05


def test_gpu_weights_give_the_same_logits_on_the_cpu(small_text):
    trainer = gpu_trainer(small_text, "gru", max_steps=20)
    trainer.fit()
    model = trainer.model.eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 50))
    with torch.no_grad():
        gpu_logits = model(ids.cuda())[0].cpu()
        cpu_logits = model.cpu()(ids)[0]
    torch.testing.assert_close(gpu_logits, cpu_logits, atol=2e-3, rtol=2e-3)  # TF32 on the GPU
