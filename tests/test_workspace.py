"""Workspaces in the engine: ids, runs read from disk with their statuses, corpora, the index, quota,
the runs command, and a killed run that resumes to the same result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import textgen_core as tg
from textgen_core import workspace as ws
from textgen_core.cli import main
from textgen_core.errors import ConfigError
from textgen_core.jobs import TrainingJob, new_job
from textgen_core.registry import JobRegistry
from textgen_core.status import read_timeline

REPO = Path(__file__).resolve().parents[1]
SONG = "the river runs to the sea and the sea runs to the sky\n" * 40
FAST = ["--preset", "tiny", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]


def tiny(steps: int = 20, **train) -> tg.RunSettings:
    return tg.RunSettings(preset="tiny", train=tg.TrainConfig(batch_size=4, seq_len=16, max_steps=steps,
                                                              eval_every=10, device="cpu", **train))


@pytest.fixture
def corpus() -> tg.Corpus:
    return tg.read_text(SONG.encode(), "song.txt")


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text(SONG)
    return path


# --- ids ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("requested", [None, "", "abc", "../../etc", "A" * 32, "0" * 31, "0" * 33, "0" * 32,
                                       "/tmp", "0" * 31 + "\x00"])
def test_a_missing_malformed_or_unknown_id_gets_a_fresh_workspace(tmp_path, requested):
    workspace, new = ws.Workspace.for_app(tmp_path, requested)
    assert new and ws.valid_workspace_id(workspace.id) and workspace.id != requested
    assert sorted(os.listdir(tmp_path)) == [workspace.id]    # nothing else reached the disk


def test_a_known_id_returns_to_its_workspace_and_ids_are_unguessable(tmp_path):
    first, _ = ws.Workspace.for_app(tmp_path, None)
    again, new = ws.Workspace.for_app(tmp_path, first.id)
    assert not new and again.root == first.root
    ids = {ws.new_workspace_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)   # 128 bits from secrets


# --- runs and their statuses -----------------------------------------------------------------------------
def test_runs_are_listed_newest_first_with_what_they_reached(tmp_path, corpus):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    tg.train_model(corpus, tiny(20), workspace.root / "first")
    time.sleep(1.1)   # the creation times differ
    tg.train_model(corpus, tiny(200, patience=1, lr=0.3), workspace.root / "second")
    records = workspace.runs()
    assert [r.name for r in records] == ["second", "first"]
    first = records[1]
    assert first.label == "budget reached" and first.step == 20 and first.has_model and first.resumable
    assert first.arch == "gru" and first.tokenizer == "char" and first.corpus == "song.txt"
    assert first.best_val_bpc == pytest.approx(json.loads((first.path / "run.json").read_text())["best_val_bpc"])
    assert records[0].label in ("stopped early", "failed")
    assert len(read_timeline(first.path)) == 2 and read_timeline(first.path)[0]["step"] == 10


def test_a_run_killed_mid_training_is_interrupted_at_its_checkpoint_and_resumes_to_the_same_result(
        tmp_path, corpus, song):
    reference = tg.train_model(corpus, tiny(60), tmp_path / "reference").history.end.best_val_loss
    root = tmp_path / "ws"
    args = ["train", str(song), "--out", str(root / "killed"), *FAST, "--max-steps", "60", "--eval-every", "10"]
    proc = subprocess.Popen([sys.executable, "-m", "textgen_core", *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (root / "killed" / "checkpoint" / "latest.json").exists():
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.01)
        proc.send_signal(signal.SIGSTOP)   # frozen between evaluations: the kill lands mid-run
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    record = ws.Workspace(root).run("killed")
    assert record.status == ws.INTERRUPTED and record.resumable
    assert record.step == json.loads((root / "killed" / "checkpoint" / "latest.json").read_text())["step"]
    assert "resume it from its last checkpoint" in record.message
    registry = JobRegistry(reap_every_s=None)
    job = TrainingJob.for_folder(record.path, corpus, owner="me", train=tiny(60).train, preview_chars=0)
    assert [p["step"] for p in job.snapshot().evals] == list(range(10, record.step + 1, 10))
    registry.submit(job)
    assert job.join(120) and job.status == "finished", job.message
    assert job.bundle.info["best_val_loss"] == pytest.approx(reference, rel=1e-6)
    assert ws.Workspace(root).run("killed").label == "budget reached"


def test_a_waiting_job_holds_its_folder_and_says_so(tmp_path, corpus):
    registry = JobRegistry(max_running=1, reap_every_s=None)
    busy = new_job(corpus, tiny(100_000), owner="a", root=tmp_path, preview_chars=0)
    waiting = new_job(corpus, tiny(20), owner="b", root=tmp_path, preview_chars=0)
    registry.submit(busy)
    with pytest.raises(ConfigError, match="busy"):
        registry.submit(waiting)   # another owner: refused when the machine is full
    later = new_job(corpus, tiny(20), owner="a", root=tmp_path, preview_chars=0)
    registry.submit(later)         # the same owner's second job waits behind the first
    record = ws.Workspace(tmp_path / "a").run(later.out_dir.name)
    assert record.status == "waiting" and record.label == "waiting"
    later.stop()                   # cancelled while it waited: no folder is left behind
    assert not later.out_dir.exists()
    busy.stop("stopped: no page open for 30 min,")
    assert busy.join(60)
    record = ws.Workspace(tmp_path / "a").run(busy.out_dir.name)
    assert record.status == "stopped" and "by request" not in record.message
    if record.has_model:   # it reached an evaluation: the folder says the true reason too
        assert "no page open for 30 min" in json.loads((busy.out_dir / "run.json").read_text())["stop_message"]


def test_a_job_stays_listed_while_its_run_is_prepared(tmp_path, corpus, monkeypatch):
    """Between taking its folder and the run's first status, a job's folder still holds its waiting
    status: a page that lists the runs then shows it (and its Stop), never "no runs"."""
    from textgen_core import runs

    seen = []
    real_build = runs.build_model

    def build_and_look(config):   # the folder is taken and its old files gone by now
        seen.append([(r.name, r.status) for r in ws.Workspace(tmp_path / "a").runs()])
        return real_build(config)
    monkeypatch.setattr(runs, "build_model", build_and_look)
    registry = JobRegistry(reap_every_s=None)
    job = new_job(corpus, tiny(20), owner="a", root=tmp_path, preview_chars=0)
    registry.submit(job)
    assert job.join(60) and job.status == "finished"
    assert seen == [[(job.out_dir.name, "waiting")]]


def test_a_job_that_fails_before_it_starts_says_why(tmp_path, corpus, monkeypatch):
    from textgen_core import memory
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 1000)
    registry = JobRegistry(reap_every_s=None)
    job = new_job(corpus, tiny(20), owner="a", root=tmp_path, preview_chars=0)
    registry.submit(job)
    assert job.join(60) and job.status == "failed"
    record = ws.Workspace(tmp_path / "a").run(job.out_dir.name)
    assert record.status == "failed" and "needs about" in record.message


# --- the index, corpora, generations ---------------------------------------------------------------------
def test_rename_delete_and_the_index(tmp_path, corpus):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    tg.train_model(corpus, tiny(10), workspace.root / "run-a")
    workspace.rename_run("run-a", "  my   first   song  ")
    assert workspace.run("run-a").display_name == "my first song"
    assert workspace.run("my first song").name == "run-a"
    (workspace.root / "run-a" / "notes.txt").write_text("mine")   # a file the project did not write
    workspace.delete_run("run-a")
    assert (workspace.root / "run-a").exists() and os.listdir(workspace.root / "run-a") == ["notes.txt"]
    assert workspace.runs() == []
    workspace.update_state(tokenizer="word", gen_model="x")
    workspace.update_state(val_fraction=0.2)
    assert ws.Workspace(workspace.root).state() == {"tokenizer": "word", "gen_model": "x", "val_fraction": 0.2}


def test_a_training_run_cannot_be_deleted(tmp_path, corpus):
    registry = JobRegistry(reap_every_s=None)
    job = new_job(corpus, tiny(100_000), owner="a", root=tmp_path, preview_chars=0)
    registry.submit(job)
    try:
        assert job.active, job.message
        with pytest.raises(ConfigError, match="is training; stop it first"):
            ws.Workspace(tmp_path / "a").delete_run(job.out_dir.name)
    finally:
        job.stop()
        job.join(60)


@pytest.mark.parametrize("name", ["../../x.txt", "a/b\\c.txt", "nul\x00.txt", "x" * 300, "CON", ".."])
def test_a_corpus_is_saved_once_by_fingerprint_and_its_name_is_never_a_path(tmp_path, name):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    corpus = tg.Corpus(text=SONG, encoding="cp1252", name=name)
    key = workspace.save_corpus(corpus)
    assert workspace.save_corpus(corpus) == key and len(workspace.corpora()) == 1
    assert sorted(os.listdir(workspace.root / "corpora")) == [f"{key}.json", f"{key}.txt"]
    back = workspace.load_corpus(key)
    assert back.text == SONG and back.name == name and back.encoding == "cp1252"
    with pytest.raises(ConfigError):
        workspace.load_corpus("../../etc/passwd")


def test_generations_are_kept_newest_first(tmp_path):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    for name in "abcde":   # several within one second keep their order too
        workspace.save_generation({"model": name, "texts": ["one"]})
    assert [g["model"] for g in workspace.generations()] == list("edcba")


def test_the_quota_refuses_new_runs_naming_the_largest(tmp_path, corpus, monkeypatch):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    tg.train_model(corpus, tiny(10), workspace.root / "big-run")
    workspace.check_quota()
    monkeypatch.setenv(ws.QUOTA_ENV, "0.1")
    with pytest.raises(ConfigError, match=r"uses .* of its 100.0 KB; delete runs .* \(the largest: big-run"):
        workspace.check_quota()
    monkeypatch.setenv(ws.QUOTA_ENV, "lots")
    assert ws.quota_bytes() == (2_000_000_000, f"{ws.QUOTA_ENV} must be a number of megabytes above 0 "
                                               "(got 'lots'); using the default, 2000")


# --- the command line ----------------------------------------------------------------------------------
def test_runs_list_show_and_delete(tmp_path, song, capsys):
    root = tmp_path / "runs"
    assert main(["train", str(song), "--out", str(root / "lyrics"), *FAST, "--max-steps", "20",
                 "--eval-every", "10"]) == 0
    capsys.readouterr()
    assert main(["runs", "list", "--workspace", str(root)]) == 0
    out = capsys.readouterr()
    assert "lyrics" in out.out and "budget reached" in out.out and "1 run, " in out.err
    assert main(["runs", "show", "lyrics", "--workspace", str(root)]) == 0
    assert "can be resumed:                 yes" in capsys.readouterr().out
    assert main(["runs", "delete", "lyrics", "--workspace", str(root)]) == 2
    assert "needs --yes" in capsys.readouterr().err
    assert main(["runs", "delete", "lyrics", "--workspace", str(root), "--yes"]) == 0
    assert main(["runs", "show", "lyrics", "--workspace", str(root)]) == 2
    assert "no run 'lyrics'" in capsys.readouterr().err


def test_disk_use_is_counted_while_files_come_and_go(tmp_path, monkeypatch):
    workspace, _ = ws.Workspace.for_app(tmp_path, None)
    (workspace.root / "run").mkdir()
    (workspace.root / "run" / "weights").write_bytes(b"x" * 1000)
    vanished = workspace.root / "run" / ".model.safetensors.abcd1234.tmp"
    vanished.write_bytes(b"y" * 10)

    class Gone:
        """A directory entry whose file was renamed away after the listing (as an atomic save does)."""
        def __init__(self, entry): self.entry, self.path, self.name = entry, entry.path, entry.name
        def is_dir(self, follow_symlinks=True): return self.entry.is_dir(follow_symlinks=follow_symlinks)
        def is_file(self, follow_symlinks=True): return self.entry.is_file(follow_symlinks=follow_symlinks)
        def stat(self, follow_symlinks=True):
            if self.name.endswith(".tmp"):
                raise FileNotFoundError(self.path)
            return self.entry.stat(follow_symlinks=follow_symlinks)

    scandir = os.scandir
    monkeypatch.setattr(ws.os, "scandir", lambda path: [Gone(e) for e in scandir(path)])
    assert workspace.disk_usage() >= 1000
