"""Recommended starting settings per device, chosen by measurement (see BENCHMARKS.md).

``recommended_settings(device)`` returns a flat dict: model keys (``arch``, ``preset``, and where
the preset's sizes are not the choice ``hidden`` and ``layers``; ``dropout``)
for ``RunSettings`` and training keys for ``TrainConfig``. ``recommended_run_settings`` builds the
``RunSettings`` directly. Nothing here changes the dataclasses' own defaults.
"""
from __future__ import annotations

from dataclasses import fields

import torch

from .devices import bf16_supported

# Chosen on a 2-core AMD EPYC (avx512_bf16) by `python benchmarks/bench_quality.py --candidates`:
# the best validation loss on tiny Shakespeare (char level) at equal training time / tokens
# (BENCHMARKS.md). bf16 autocast trains this LSTM faster than fp32 on such a CPU; batch 32 x 64
# (2048 tokens a step) beat 4096- and 8192-token steps at equal time.
# One torch thread: `benchmarks/bench_threads.py` measured these models training faster on one thread
# than on two (ratios 0.73-0.94 on 2 cores), and two runs at once then each keep a core.
CPU_DEFAULTS: dict = dict(arch="lstm", preset="small", dropout=0.1, batch_size=32, seq_len=64, lr=3e-3,
                          precision="bf16", eval_every=250, max_minutes=5.0, cpu_threads=1)

# Chosen on an NVIDIA H100 by `python benchmarks/bench_quality.py --candidates --gpu-only` (15 candidates,
# 60 s each, BENCHMARKS.md): at these speeds a minute is ~60 epochs of tiny Shakespeare, so the winner
# is a larger LSTM (768x3) with strong dropout and weight decay; 1024x2 models overfit after 15-30 s.
GPU_DEFAULTS: dict = dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.6, weight_decay=0.2,
                          batch_size=128, seq_len=256, lr=3e-3, precision="bf16", eval_every=200, max_minutes=1.0)

MODEL_KEYS = ("arch", "preset", "hidden", "layers", "dropout")


def recommended_settings(device: str = "auto") -> dict:
    """Settings for ``device`` ("auto", "cpu" or "cuda"): a new dict each call."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return dict(GPU_DEFAULTS)
    settings = dict(CPU_DEFAULTS)
    if settings["precision"] == "bf16" and not bf16_supported("cpu"):
        settings["precision"] = "fp32"
    return settings


def recommended_run_settings(device: str = "auto", **overrides):
    """``RunSettings`` with the recommended model and training settings for ``device``; ``overrides``
    win (RunSettings fields such as ``tokenizer`` or ``hidden``, or TrainConfig fields)."""
    from .runs import RunSettings
    from .training import TrainConfig

    values = recommended_settings(device)
    values["device"] = device
    values.update(overrides)
    train_fields = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
    return RunSettings(**{k: v for k, v in values.items() if k not in train_fields}, train=train)
