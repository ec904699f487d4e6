"""One training on two CPU processes with torchrun and gloo: the same losses as one process, one
folder, resumes across process counts, and a failed or killed rank ends the run on every rank."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed

import textgen_core as tg
from textgen_core import checkpoint

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")
SONG = "the river runs to the sea and the sea runs to the sky\n" * 40
SETTINGS = ["--preset", "tiny", "--batch-size", "8", "--seq-len", "16", "--device", "cpu", "--dropout", "0",
            "--eval-every", "10", "--cpu-threads", "1"]
# A rank that runs out of memory at its fifth step (a test double for a GPU that fills up).
OOM_ON_RANK_1 = """
import os, sys, torch
from textgen_core import training
if os.environ.get("RANK") == "1":
    step = training.Trainer._train_step
    def failing(self):
        if self.step == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return step(self)
    training.Trainer._train_step = failing
from textgen_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text(SONG)
    return path


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(*args: str, processes: int = 2, script: str | None = None, **popen) -> subprocess.Popen:
    target = ["-m", "textgen_core"] if script is None else [script]
    command = [str(TORCHRUN), "--nproc_per_node", str(processes), "--master_port", str(_free_port()), *target,
               *args]
    return subprocess.Popen(command, cwd=REPO, env=env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **popen)


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def one_process(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textgen_core", *args], cwd=REPO, env=env(), text=True,
                          capture_output=True, timeout=120)


def losses(folder: Path) -> list[tuple]:
    return [(p["step"], p["kind"], p["train_loss"], p.get("val_loss"))
            for p in map(json.loads, (folder / "history.jsonl").read_text().splitlines())]


def assert_same_losses(a: Path, b: Path) -> None:
    first, second = losses(a), losses(b)
    assert [p[:2] for p in first] == [p[:2] for p in second]
    for x, y in zip(first, second):
        assert x[2] == pytest.approx(y[2], abs=1e-4) and (x[3] is None) == (y[3] is None)
        assert x[3] is None or x[3] == pytest.approx(y[3], abs=1e-4)


@pytest.mark.parametrize("batches", [[], ["--carry-state"]], ids=["random windows", "state carried"])
def test_two_processes_train_like_one_with_the_same_global_batch(song, tmp_path, batches):
    """With the state carried, each process reads on through its half of the streams."""
    settings = [*SETTINGS, *batches, "--max-steps", "20"]
    proc = torchrun("train", str(song), "--out", str(tmp_path / "two"), *settings)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "2 processes (gloo), 4 windows each of every batch of 8" in err
    assert out.count("saved to") == 1                     # rank 0 alone prints ...
    single = one_process("train", str(song), "--out", str(tmp_path / "one"), *settings)
    assert single.returncode == 0, single.stderr
    assert_same_losses(tmp_path / "one", tmp_path / "two")
    # ... and writes: one folder, the same files as one process's
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    info = json.loads((tmp_path / "two" / "run.json").read_text())
    assert info["train_config"]["batch_size"] == 8 and info["train_config"]["carry_state"] == bool(batches)
    assert info["distributed"] == {"processes": 2, "backend": "gloo", "batch_per_process": 4}
    assert info["hardware"].startswith("2 x CPU")


RESUME = ["--resume", "--batch-size", "8", "--seq-len", "16", "--eval-every", "10", "--device", "cpu",
          "--cpu-threads", "1"]


def test_a_checkpoint_of_two_processes_resumes_in_one_and_back(song, tmp_path):
    """Two processes to step 20, one to 30, two to 40: the same losses as one process all the way
    (with the same budgets, since each budget shapes the learning-rate schedule)."""
    mixed, single = str(tmp_path / "mixed"), str(tmp_path / "single")
    proc = torchrun("train", str(song), "--out", mixed, *SETTINGS, "--max-steps", "20")
    assert proc.communicate(timeout=120) and proc.returncode == 0
    resumed = one_process("train", str(song), "--out", mixed, *RESUME, "--max-steps", "30")
    assert resumed.returncode == 0, resumed.stderr
    proc = torchrun("train", str(song), "--out", mixed, *RESUME, "--max-steps", "40")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    for args in ([*SETTINGS, "--max-steps", "20"], [*RESUME, "--max-steps", "30"], [*RESUME, "--max-steps", "40"]):
        done = one_process("train", str(song), "--out", single, *args)
        assert done.returncode == 0, done.stderr
    assert_same_losses(tmp_path / "single", tmp_path / "mixed")


def _rank_pids(parent: int) -> dict[int, int]:
    """rank -> pid of torchrun's worker processes."""
    ranks = {}
    for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        rank = next((e[5:] for e in environ if e.startswith(b"RANK=")), None)
        if rank is not None:
            ranks[int(rank)] = int(child)
    return ranks


def test_a_killed_rank_ends_the_run_on_every_rank_and_the_checkpoint_resumes(song, tmp_path):
    folder = tmp_path / "killed"
    proc = torchrun("train", str(song), "--out", str(folder), *SETTINGS, "--max-minutes", "5",
                    "--eval-every", "5", start_new_session=True)
    try:
        deadline = time.time() + 60
        while not (folder / "checkpoint" / "latest.json").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.05)
        ranks = _rank_pids(proc.pid)
        assert sorted(ranks) == [0, 1]
        killed_at = time.time()
        os.kill(ranks[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert time.time() - killed_at < 60
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "error: another process of this training ended at step" in err and "resume it with --resume" in err
    assert all(not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
               for pid in ranks.values())
    step = checkpoint.read_state(folder / "checkpoint")["step"]
    assert tg.load(folder).model.num_parameters() > 0
    resumed = one_process("train", str(song), "--out", str(folder), "--resume", "--max-steps", str(step + 10),
                          "--batch-size", "8", "--seq-len", "16", "--eval-every", "5", "--device", "cpu")
    assert resumed.returncode == 0, resumed.stderr


def test_a_rank_out_of_memory_stops_every_rank_with_the_advice_of_one_process(song, tmp_path):
    script = tmp_path / "oom_on_rank_1.py"
    script.write_text(OOM_ON_RANK_1)
    proc = torchrun("train", str(song), "--out", str(tmp_path / "oom"), *SETTINGS, "--max-steps", "200",
                    script=str(script))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "error (rank 1): ran out of memory at step 4" in err
    assert "Lower the batch size, sequence length or model size" in err
    assert "another process of this training ended" not in err or "ran out of memory" in err
