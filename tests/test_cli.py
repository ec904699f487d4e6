"""The command line: train, sample, evaluate; errors exit 2 with one `error:` line, no traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import textgen_core as tg
from textgen_core.cli import main

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--model", "gru", "--preset", "tiny", "--max-steps", "20", "--eval-every", "10",
         "--seq-len", "32", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    assert main(["train", str(corpus), "--out", str(folder / "model"), *TRAIN]) == 0
    return corpus, folder / "model"


def test_train_writes_a_loadable_folder(trained, capsys):
    corpus, model = trained
    for name in ("config.json", "model.safetensors", "textgen_tokenizer.json", "history.jsonl", "README.md",
                 "run.json"):
        assert (model / name).is_file(), name
    bundle = tg.load(model)
    assert bundle.info["steps"] == 20 and bundle.info["best_val_bpc"] > 0
    assert "python -m textgen_core train" in (model / "README.md").read_text()


def test_sample_with_a_seed_is_repeatable(trained, capsys):
    _, model = trained
    args = ["sample", str(model), "--prompt", "Roses", "--length", "40", "--seed", "11"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("Roses")


def test_several_temperatures_are_labelled(trained, capsys):
    _, model = trained
    assert main(["sample", str(model), "--length", "20", "--temperature", "0.2", "1.0", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "=== temperature 0.2, sample 1 ===" in out and "=== temperature 1, sample 1 ===" in out


def test_evaluate_prints_loss_and_bits_per_char(trained, capsys):
    corpus, model = trained
    assert main(["evaluate", str(model), str(corpus)]) == 0
    out = capsys.readouterr().out
    assert "nats/token" in out and "bits/char" in out


def test_resume_continues_to_a_larger_budget(trained, tmp_path, capsys):
    corpus, model = trained
    copy = tmp_path / "model"
    import shutil
    shutil.copytree(model, copy)
    args = ["train", str(corpus), "--out", str(copy), *TRAIN]
    args[args.index("--max-steps") + 1] = "30"
    assert main([*args, "--resume"]) == 0
    assert tg.load(copy).info["steps"] == 30


@pytest.mark.parametrize("make_args, message", [
    (lambda d, c, m: ["train", str(d / "empty.txt"), "--out", str(d / "o")], "is empty"),
    (lambda d, c, m: ["train", str(d / "missing.txt"), "--out", str(d / "o")], "missing.txt"),
    (lambda d, c, m: ["train", str(c), "--out", str(d / "o"), "--lr", "0"], "lr must be above 0"),
    (lambda d, c, m: ["train", str(c), "--out", str(m)], "already holds a model"),
    (lambda d, c, m: ["train", str(c), "--out", str(d / "new"), "--resume"], "nothing to resume"),
    (lambda d, c, m: ["train", str(c), "--out", str(d / "o"), "--hidden", "0"], "hidden must be"),
    (lambda d, c, m: ["sample", str(d / "nope"), "--length", "5"], "neither a model folder"),
    (lambda d, c, m: ["sample", str(m), "--length", "-3"], "length must be"),
    (lambda d, c, m: ["sample", str(m), "--top-p", "2"], "top-p must be"),
])
def test_errors_exit_2_with_one_line(trained, tmp_path, capsys, make_args, message):
    corpus, model = trained
    (tmp_path / "empty.txt").write_bytes(b"")
    assert main(make_args(tmp_path, corpus, model)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_module_entry_point_with_an_empty_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = subprocess.run([sys.executable, "-m", "textgen_core", "train", str(empty), "--out",
                             str(tmp_path / "m")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_recommended_starts_from_the_devices_defaults_and_the_flags_given_win(tmp_path, capsys):
    """--recommended takes defaults_for's settings (the same line the Train page shows) for what the
    command line leaves out; a budget given replaces the recommended five minutes."""
    from textgen_core.defaults import defaults_for

    corpus = tmp_path / "poem.txt"
    corpus.write_text("Roses are red, violets are blue,\nsugar is sweet and so are you.\n" * 30)
    settings, why = defaults_for("cpu")
    out = tmp_path / "model"
    assert main(["train", str(corpus), "--out", str(out), "--recommended", "--device", "cpu", "--preset", "tiny",
                 "--max-steps", "4", "--eval-every", "2", "--seq-len", "16"]) == 0
    assert f"note: {why}" in capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == settings["arch"] and config["dropout"] == settings["dropout"]
    assert config["hidden"] == 128   # the tiny preset asked for, not the recommended small one (256)
    train = run["train_config"]
    assert (train["batch_size"], train["lr"], train["precision"], train["cpu_threads"]) == (
        settings["batch_size"], settings["lr"], settings["precision"], settings["cpu_threads"])
    assert (train["seq_len"], train["max_steps"], train["max_minutes"]) == (16, 4, None)
    assert main(["train", str(corpus), "--out", str(out), "--recommended", "--resume"]) == 2
    assert "a resume keeps the saved ones" in capsys.readouterr().err
