"""Nothing a user has is lost: output folders, concurrent runs, interrupted runs, resumes and full disks."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import textgen_core as tg
from textgen_core import checkpoint
from textgen_core.cli import main
from textgen_core.errors import ConfigError
from textgen_core.outdir import FolderLock

REPO = Path(__file__).resolve().parents[1]
SONG = "the river runs to the sea and the sea runs to the sky\n" * 40
FAST = ["--preset", "tiny", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]


@pytest.fixture
def song(tmp_path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text(SONG)
    return path


def train(song: Path, out: Path, *extra: str) -> int:
    return main(["train", str(song), "--out", str(out), *FAST, "--max-steps", "20", "--eval-every", "10", *extra])


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "textgen_core", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def long_run(song: Path, out: Path, eval_every: int = 5) -> subprocess.Popen:
    return spawn("train", str(song), "--out", str(out), *FAST, "--max-minutes", "2",
                 "--eval-every", str(eval_every))


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# --- 1. the user's files ---------------------------------------------------------------------
def test_a_folder_of_the_users_files_is_refused_and_left_as_it_was(song, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name in ("README.md", "run.json", "history.jsonl", "model.safetensors"):
        (folder / name).write_text(f"my own {name}\n")
    before = snapshot(folder)
    assert train(song, folder) == 2
    err = capsys.readouterr().err
    assert "did not write" in err and "README.md" in err and "--overwrite" in err
    assert snapshot(folder) == before and sorted(os.listdir(folder)) == sorted(before)


def test_out_dot_does_not_replace_the_projects_readme(song, tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("# my project\n")
    (project / "setup.py").write_text("")
    monkeypatch.chdir(project)
    assert train(song, Path(".")) == 2
    assert (project / "README.md").read_text() == "# my project\n"
    assert sorted(os.listdir(project)) == ["README.md", "setup.py"]


def test_overwrite_writes_the_model_beside_the_users_files_and_deletes_none(song, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    (folder / "README.md").write_text("old card")
    assert train(song, folder, "--overwrite") == 0
    assert (folder / "notes.txt").read_text() == "keep me"
    assert (folder / "README.md").read_text().startswith("---")   # a model file's name: replaced
    assert tg.load(folder).model.num_parameters() > 0


def test_a_trained_folder_is_refused_then_replaced_with_overwrite_keeping_other_files(song, tmp_path, capsys):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    (folder / "notes.txt").write_text("my notes on this run")
    assert train(song, folder) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert train(song, folder, "--overwrite", "--max-steps", "10") == 0
    assert (folder / "notes.txt").read_text() == "my notes on this run"
    assert checkpoint.read_state(folder / "checkpoint")["step"] == 10   # the new run's, not the old one's


# --- 2. one run per folder -------------------------------------------------------------------
def test_a_second_training_into_a_busy_folder_is_refused_and_a_killed_runs_lock_is_stale(song, tmp_path, capsys):
    folder = tmp_path / "model"
    first = long_run(song, folder)
    try:
        wait_for(folder / "checkpoint" / "latest.json", first)
        assert train(song, folder, "--resume") == 2
        assert f"being written by another training (pid {first.pid}" in capsys.readouterr().err
        assert train(song, folder, "--overwrite") == 2       # not even with --overwrite
    finally:
        first.kill()
        first.communicate()
    step = checkpoint.read_state(folder / "checkpoint")["step"]
    assert main(["train", str(song), "--out", str(folder), "--resume", "--max-steps", str(step + 5),
                 "--eval-every", "5"]) == 0


def test_the_lock_within_one_process(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    first = FolderLock(folder).acquire()
    with pytest.raises(ConfigError, match=f"being written by another training \\(pid {os.getpid()}"):
        FolderLock(folder).acquire()
    first.release()
    (folder / ".textgen.lock").write_text("pid 999999 on elsewhere since long ago\n")   # a dead run's
    with FolderLock(folder):
        assert f"pid {os.getpid()}" in (folder / ".textgen.lock").read_text()
    assert not (folder / ".textgen.lock").exists()


# --- 3. runs that end before their first checkpoint ----------------------------------------------
@pytest.mark.parametrize("again", [[], ["--resume"]])
def test_a_run_killed_before_its_first_checkpoint_starts_again(song, tmp_path, capsys, again):
    folder = tmp_path / "model"
    proc = long_run(song, folder, eval_every=100_000)
    try:
        wait_for(folder / "config.json", proc)
        time.sleep(0.3)
    finally:
        proc.kill()
        proc.communicate()
    assert not checkpoint.has_checkpoint(folder / "checkpoint")
    assert train(song, folder, *again) == 0
    assert "before its first checkpoint" in capsys.readouterr().err
    assert tg.load(folder).info["steps"] == 20


def test_a_diverged_run_before_its_first_checkpoint_does_not_wedge_the_folder(song, tmp_path, capsys):
    folder = tmp_path / "model"
    assert train(song, folder, "--lr", "10", "--eval-every", "1000") == 2
    assert "diverged" in capsys.readouterr().err
    assert train(song, folder) == 0


def test_keyboard_interrupt_in_the_api_is_a_stop_that_saves(tmp_path):
    corpus = tg.read_text(SONG.encode(), "song.txt")
    settings = tg.RunSettings(preset="tiny", train=tg.TrainConfig(batch_size=4, seq_len=16, max_steps=1000,
                                                                  eval_every=10, log_every=1, device="cpu"))

    def interrupt(event):
        if event.kind == "train" and event.step == 15:
            raise KeyboardInterrupt   # as Ctrl-C in a notebook lands: anywhere in the loop

    result = tg.train_model(corpus, settings, tmp_path / "a", callbacks=(interrupt,))
    assert result.history.end.reason == "stopped" and result.history.end.best_step == 10
    assert tg.load(tmp_path / "a").info["stop_reason"] == "stopped"

    def ctrl_c(event):
        if event.kind == "train" and event.step == 7:
            os.kill(os.getpid(), signal.SIGINT)   # the first Ctrl-C: stop after this step

    result = tg.train_model(corpus, settings, tmp_path / "b", callbacks=(ctrl_c,))
    assert result.history.end.reason == "stopped" and result.history.end.step == 7
    assert result.history.end.best_step == 7     # the stop evaluates and keeps what it has
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- 4. the weights are on disk at every new best -------------------------------------------------
def test_after_kill_9_the_folder_samples_with_the_best_weights_so_far(song, tmp_path, capsys):
    folder = tmp_path / "model"
    proc = long_run(song, folder)
    try:
        wait_for(folder / "checkpoint" / "latest.json", proc)
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.communicate()
    assert main(["sample", str(folder), "--prompt", "the ", "--length", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    _, state, best = checkpoint.read_resume(folder / "checkpoint")
    weights = tg.load(folder).model.state_dict()
    assert state["best_step"] is not None
    # the checkpoint is written first, then the weights: after a kill they are the same or newer
    assert weights.keys() == best.keys()


# The late second Ctrl-C lands while the saved run shuts torch down (a few hundred ms), where Python
# has put the default handlers back: it once ended the process "killed by SIGINT" instead of 130.
@pytest.mark.parametrize("signals, gap", [([signal.SIGTERM], 0), ([signal.SIGHUP], 0),
                                          ([signal.SIGINT, signal.SIGINT], 0.05),
                                          ([signal.SIGINT, signal.SIGINT], 0.3)],
                         ids=["SIGTERM", "SIGHUP", "double-Ctrl-C", "late-second-Ctrl-C"])
def test_signals_stop_the_run_save_it_and_exit_130(song, tmp_path, signals, gap):
    folder = tmp_path / "model"
    proc = long_run(song, folder)
    try:
        wait_for(folder / "checkpoint" / "latest.json", proc)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(gap)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    info = json.loads((folder / "run.json").read_text())
    assert info["stop_reason"] == "stopped"
    assert tg.load(folder).model.num_parameters() > 0


# --- 5. a resume is the same run --------------------------------------------------------------------
@pytest.mark.parametrize("changed, named", [
    (["--model", "lstm"], "arch 'gru', now 'lstm'"),
    (["--hidden", "64"], "hidden 128, now 64"),
    (["--preset", "small"], "hidden 128, now 256"),
    (["--tokenizer", "word"], "the tokenizer (char, now word)"),
    (["--val-fraction", "0.5"], "the validation fraction (0.1, now 0.5"),
])
def test_a_resume_with_other_settings_is_refused_naming_them(song, tmp_path, capsys, changed, named):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    capsys.readouterr()
    assert main(["train", str(song), "--out", str(folder), "--resume", "--max-steps", "30", *changed]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and named in err, err
    assert checkpoint.read_state(folder / "checkpoint")["step"] == 20


def test_a_resume_on_another_text_is_refused(song, tmp_path, capsys):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    other = tmp_path / "other.txt"
    other.write_text(SONG.replace("river", "rover"))
    assert main(["train", str(other), "--out", str(folder), "--resume", "--max-steps", "30"]) == 2
    assert "the corpus (the run was trained on song.txt, 2,160 characters; this is other.txt" in capsys.readouterr().err


def test_a_resume_may_change_budgets_and_the_learning_rate(song, tmp_path):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    assert main(["train", str(song), "--out", str(folder), "--resume", "--max-steps", "30", "--lr", "1e-3",
                 "--batch-size", "8", "--eval-every", "5"]) == 0
    assert tg.load(folder).info["steps"] == 30


def test_a_resume_in_the_api_checks_the_settings_too(tmp_path):
    corpus = tg.read_text(SONG.encode(), "song.txt")
    train_config = dict(batch_size=4, seq_len=16, eval_every=10, device="cpu")
    settings = tg.RunSettings(arch="lstm", preset="tiny", train=tg.TrainConfig(max_steps=10, **train_config))
    tg.train_model(corpus, settings, tmp_path / "m")
    with pytest.raises(ConfigError, match="arch 'lstm', now 'gru'"):
        tg.train_model(corpus, tg.RunSettings(preset="tiny", train=tg.TrainConfig(max_steps=20, **train_config)),
                       tmp_path / "m", resume=True)
    same = tg.RunSettings(arch="lstm", preset="tiny", train=tg.TrainConfig(max_steps=20, **train_config))
    assert tg.train_model(corpus, same, tmp_path / "m", resume=True).history.end.step == 20


# --- 6. checkpoints are one unit; folders that cannot be written fail at once ----------------------
def _file_size_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # an over-long write then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_during_a_resume_keeps_the_last_checkpoint_whole(song, tmp_path):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    _, state_before, best_before = checkpoint.read_resume(folder / "checkpoint")
    # the tiny model's resume tensors are about 800 KB: every write of them now fails
    proc = spawn("train", str(song), "--out", str(folder), "--resume", "--max-steps", "40", "--eval-every", "10",
                 preexec_fn=_file_size_limit(300_000))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert "could not write" in err and "the checkpoint of step 20 is kept" in err, err
    tensors, state, best = checkpoint.read_resume(folder / "checkpoint")
    assert state["step"] == state_before["step"] == 20 and state["best_step"] == state_before["best_step"]
    assert all(torch.equal(best[k], best_before[k]) for k in best)
    assert sorted(p.name for p in (folder / "checkpoint").iterdir())[0] == "latest.json"
    assert len(list((folder / "checkpoint").iterdir())) == 2 and not list(folder.rglob("*.tmp"))
    assert main(["train", str(song), "--out", str(folder), "--resume", "--max-steps", "30"]) == 0


def test_a_folder_that_cannot_be_written_fails_before_training(song, tmp_path):
    proc = spawn("train", str(song), "--out", str(tmp_path / "model"), *FAST, "--max-steps", "20",
                 preexec_fn=_file_size_limit(0))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "could not write" in err and "step" not in err, err
    assert main(["train", str(song), "--out", "/proc/1/no-such-place/model", *FAST]) == 2


def test_a_damaged_resume_state_is_a_clear_error(song, tmp_path, capsys):
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    latest = json.loads((folder / "checkpoint" / "latest.json").read_text())
    state_path = folder / "checkpoint" / latest["unit"] / "resume.json"
    state = json.loads(state_path.read_text())
    del state["history"]
    state_path.write_text(json.dumps(state))
    capsys.readouterr()
    assert main(["train", str(song), "--out", str(folder), "--resume", "--max-steps", "30"]) == 2
    assert "incomplete: it has no 'history'" in capsys.readouterr().err


def test_ctrl_c_while_starting_up_prints_no_traceback(song, tmp_path):
    proc = spawn("train", str(song), "--out", str(tmp_path / "model"), *FAST)
    time.sleep(0.4)   # importing torch
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err


# --- what a folder records ----------------------------------------------------------------------
def test_the_card_records_no_absolute_paths_and_the_runs_own_thread_count(song, tmp_path):
    folder = tmp_path / "model"
    before = torch.get_num_threads()
    torch.set_num_threads(2)   # torch's own setting differs from the run's
    try:
        assert train(song, folder.resolve(), "--cpu-threads", "1") == 0
    finally:
        torch.set_num_threads(before)
    info = json.loads((folder / "run.json").read_text())
    assert str(tmp_path) not in info["command"] and str(tmp_path) not in (folder / "README.md").read_text()
    assert "train song.txt --out model" in info["command"]
    assert info["hardware"].endswith("1 thread)")


def test_every_json_file_of_a_folder_is_strict(song, tmp_path):
    folder = tmp_path / "model"
    assert train(song, folder) == 0

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in JSON"))

    for line in (folder / "history.jsonl").read_text().splitlines():
        strict(line)
    for path in [*folder.glob("*.json"), *folder.glob("checkpoint/**/*.json")]:
        strict(path.read_text())
    from textgen_core.files import dumps
    assert dumps({"loss": float("nan"), "rate": [float("inf")]}) == '{"loss": null, "rate": [null]}'


def test_the_character_vocabulary_is_capped_and_says_so():
    text = "".join(chr(0x4E00 + i) for i in range(20_000)) + "ab" * 50_000
    tokenizer = tg.make_tokenizer("char").fit(text)
    assert tokenizer.vocab_size == 10_000
    assert "kept the 9999 most frequent of 20002 distinct characters" in tokenizer.notes[0]
    assert tokenizer.decode(tokenizer.encode("ab")) == "ab"


def test_every_field_a_run_records_reads_back(song, tmp_path):
    """The loader keeps only well-typed known fields of run.json: none the run writes may be lost."""
    folder = tmp_path / "model"
    assert train(song, folder) == 0
    assert tg.load(folder).info == json.loads((folder / "run.json").read_text())
