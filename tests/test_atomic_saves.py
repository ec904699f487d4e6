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
    state = {"step": i, "elapsed": 0.0, "optimizer": {"param_groups": [], "state": {}}, "history": [],
             "best_step": i, "best_val_loss": 1.0}
    checkpoint.write_resume(__import__("pathlib").Path(folder) / "checkpoint",
                            {"model.w": torch.full((1000, 1000), float(i))}, state,
                            best={"w": torch.full((500, 1000), float(i))})
"""


@pytest.mark.parametrize("delay", [0.2, 1.0])
def test_kill_during_save_leaves_a_loadable_folder(tmp_path, delay):
    folder = tmp_path / "model"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while not (folder / "checkpoint" / "latest.json").exists() and time.time() < deadline:
            time.sleep(0.05)  # at least one complete save first
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    bundle = tg.load(folder)                       # the model folder reads back whole
    first = next(bundle.model.parameters()).flatten()[0].item()
    assert all(torch.all(p == first) for p in bundle.model.parameters())  # one version, not a mix
    tensors, state, best = checkpoint.read_resume(folder / "checkpoint")
    assert tensors["model.w"].shape == (1000, 1000) and state["step"] >= 1
    # one unit: the state, its tensors and its best weights all come from the same save
    assert torch.all(tensors["model.w"] == state["step"]) and torch.all(best["w"] == state["step"])
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert len(leftovers) <= 2  # at most the files that were being written when killed


def _stale(path: Path, age_s: float = 3600) -> Path:
    old = time.time() - age_s
    path.write_bytes(b"half a save")
    os.utime(path, (old, old))
    return path


def test_the_next_save_removes_temporary_files_that_killed_saves_left(tmp_path):
    import tempfile

    target = tmp_path / "model.safetensors"
    fd, left = tempfile.mkstemp(dir=tmp_path, prefix=f".{target.name}.", suffix=".tmp")  # the writer's names
    os.close(fd)
    left = _stale(Path(left))
    also_left = _stale(tmp_path / ".model.safetensors.a_b3x9yz.tmp")
    kept = [
        tmp_path / ".model.safetensors.recent12.tmp",                # recent: a save may still be writing it
        _stale(tmp_path / ".config.json.abcd1234.tmp"),              # another file's: removed by its own save
        _stale(tmp_path / "model.safetensors.tmp"),                  # not the writer's pattern
        _stale(tmp_path / ".model.safetensors.abc.tmp"),
        _stale(tmp_path / ".model.safetensors.ABCD1234.tmp"),
        _stale(tmp_path / ".model.safetensors.abcd1234.tmp.bak"),
        _stale(tmp_path / "notes.tmp"),
    ]
    kept[0].write_bytes(b"in progress")
    checkpoint.save_tensors(target, {"w": torch.ones(3)})
    assert not left.exists() and not also_left.exists()
    assert all(p.exists() for p in kept)
    assert torch.equal(checkpoint.load_tensors(target)["w"], torch.ones(3))
    checkpoint.atomic_write_text(tmp_path / "config.json", "{}")
    assert not kept[1].exists() and all(p.exists() for p in kept[2:])


def test_stale_temporary_files_in_a_model_folder_go_with_the_next_save(tmp_path):
    folder = tmp_path / "model"
    tg.train_model(tg.read_text(("a line of song to learn from\n" * 20).encode(), "song.txt"),
                   tg.RunSettings(preset="tiny", train=tg.TrainConfig(batch_size=4, seq_len=16, max_steps=4,
                                                                      eval_every=2, device="cpu")), folder)
    stale = [_stale(folder / ".model.safetensors.k1l2m3n4.tmp"), _stale(folder / ".run.json.q9w8e7r6.tmp"),
             _stale(folder / "checkpoint" / ".resume.json.zzzz1111.tmp")]
    tg.train_model(tg.read_text(("a line of song to learn from\n" * 20).encode(), "song.txt"),
                   tg.RunSettings(preset="tiny", train=tg.TrainConfig(batch_size=4, seq_len=16, max_steps=6,
                                                                      eval_every=2, device="cpu")),
                   folder, resume=True)
    assert not any(p.exists() for p in stale)
    assert [p.name for p in folder.rglob("*.tmp")] == []


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from textgen_core.checkpoint import atomic_write_text
    target = tmp_path / "config.json"
    atomic_write_text(target, "{}")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
