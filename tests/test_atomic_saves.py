"""A process killed while saving leaves the previous model folder and checkpoint loadable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import textgen_core as tg
from textgen_core import checkpoint

REPO = Path(__file__).resolve().parents[1]

# Saves a ~10 MB model folder and resume checkpoint over and over, with different weights each time.
WRITER = r"""
import sys, torch
from textgen_core import hub, checkpoint
from textgen_core.models import ModelConfig, build_model
from textgen_core.tokenizers import CharTokenizer
folder = sys.argv[1]
tokenizer = CharTokenizer().fit("abcdefgh " * 50)
model = build_model(ModelConfig.from_preset("gru", "medium", tokenizer.vocab_size, hidden=800))
print("ready", flush=True)
i = 0
while True:
    i += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    hub.save_folder(folder, model, tokenizer, [], {"name": f"v{i}"}, "# card\n")
    checkpoint.write_resume(__import__("pathlib").Path(folder) / "checkpoint",
                            {"model.w": torch.full((1000, 1000), float(i))}, {"step": i})
"""


@pytest.mark.parametrize("delay", [0.2, 1.0])
def test_kill_during_save_leaves_a_loadable_folder(tmp_path, delay):
    folder = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not (folder / "checkpoint" / "resume.json").exists() and time.time() < deadline:
            time.sleep(0.05)  # at least one complete save first
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    bundle = tg.load(folder)                       # the model folder reads back whole
    first = next(bundle.model.parameters()).flatten()[0].item()
    assert all(torch.all(p == first) for p in bundle.model.parameters())  # one version, not a mix
    tensors, state = checkpoint.read_resume(folder / "checkpoint")
    assert tensors["model.w"].shape == (1000, 1000) and state["step"] >= 1
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert len(leftovers) <= 2  # at most the files that were being written when killed
