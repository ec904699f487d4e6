"""Model folders that are damaged or built to hurt: each is refused quickly and clearly, or read
safely, before any model is built; a diverged run's weights are refused with what to do."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import textgen_core as tg
from textgen_core import files, hub, memory
from textgen_core.cli import main
from textgen_core.errors import ModelFolderError

from tests.test_hub import write_folder

REPO = Path(__file__).resolve().parents[1]
DEEP = "[" * 100_000 + "]" * 100_000


def within(seconds: float, call):
    """``call()``'s result or exception, asserting it came back within ``seconds`` (no blocking)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return outcome


def forbid_real_builds(monkeypatch) -> None:
    """Fail the test when a model is built anywhere but on the meta device (which allocates nothing)."""
    real = hub.build_model

    def build(config):
        assert torch.empty(0).device.type == "meta", "a model was built before the checks"
        return real(config)

    monkeypatch.setattr(hub, "build_model", build)


# --- the weights are checked against the config before anything is built ---------------------
PEAK_SCRIPT = """
import json, sys, time


def peak_mb():
    # the kernel's VmHWM of this program: ru_maxrss would also count what the forking test process held
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
from pathlib import Path
from tests.test_hub import write_folder
from textgen_core import hub
from textgen_core.errors import ModelFolderError
folder = Path(sys.argv[1])
write_folder(folder)
config = json.loads((folder / "config.json").read_text())
start = time.perf_counter()
messages = []
for sizes in (dict(hidden=2048, layers=16), dict(hidden=8192, embedding=8192, layers=64)):  # 1.6 GB, 234 GB
    (folder / "config.json").write_text(json.dumps({**config, **sizes}))
    try:
        hub.load_folder(folder)
        messages.append("loaded")
    except ModelFolderError as exc:
        messages.append(str(exc))
print(json.dumps({"messages": messages, "seconds": time.perf_counter() - start,
                  "peak_mb": peak_mb()}))
"""


def test_a_huge_config_with_tiny_weights_is_refused_fast_with_little_memory(tmp_path):
    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "m")], cwd=REPO,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for message in report["messages"]:
        assert "does not match config.json" in message and "parameters" in message
    assert report["seconds"] < 5 and report["peak_mb"] < 1000, report


def test_mismatched_names_are_refused_before_building(tmp_path, monkeypatch):
    write_folder(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["extra.weight"] = tensors.pop("head.bias")
    save_file(tensors, tmp_path / "model.safetensors")
    forbid_real_builds(monkeypatch)
    with pytest.raises(ModelFolderError, match=r"no 'head.bias'.*unexpected 'extra.weight'"):
        tg.load(tmp_path)


def test_integer_tensors_are_refused(tmp_path):
    write_folder(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["head.bias"] = tensors["head.bias"].to(torch.int64)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ModelFolderError, match="'head.bias' as 'I64', not as floating-point"):
        tg.load(tmp_path)


def test_a_header_longer_than_the_file_and_a_cut_file_are_refused(tmp_path):
    write_folder(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes((10**9).to_bytes(8, "little") + data[8:200])
    with pytest.raises(ModelFolderError, match="header says it is 1,000,000,000 bytes long"):
        tg.load(tmp_path)
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match="cut short"):
        tg.load(tmp_path)


def test_a_model_bigger_than_free_memory_is_refused(tmp_path, monkeypatch):
    write_folder(tmp_path)
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 100_000)
    forbid_real_builds(monkeypatch)
    with pytest.raises(ModelFolderError, match=r"needs about .* more than the 100.0 KB free on this machine"):
        tg.load(tmp_path)


# --- weights of a diverged run ------------------------------------------------------------------
def poison(folder: Path, name: str = "rnn.weight_hh_l0", value: float = float("nan")) -> None:
    tensors = load_file(folder / "model.safetensors")
    tensors[name].view(-1)[3] = value
    save_file(tensors, folder / "model.safetensors")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weights_are_refused_naming_the_tensor(tmp_path, value):
    write_folder(tmp_path)
    poison(tmp_path, value=value)
    with pytest.raises(ModelFolderError, match=r"1 NaN or infinite values in tensor 'rnn.weight_hh_l0'.*"
                                               r"diverged.*train it again"):
        tg.load(tmp_path)


def test_sample_and_evaluate_of_nan_weights_exit_2_with_one_line(tmp_path, capsys):
    write_folder(tmp_path / "m")
    poison(tmp_path / "m")
    (tmp_path / "text.txt").write_text("to be or not to be\n" * 5)
    for args in (["sample", str(tmp_path / "m"), "--length", "5"],
                 ["evaluate", str(tmp_path / "m"), str(tmp_path / "text.txt")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "NaN" in err[0], err


# --- every file through the safe-file layer -------------------------------------------------------
FOLDER_FILES = ["config.json", "model.safetensors", "textgen_tokenizer.json", "run.json", "history.jsonl"]


@pytest.mark.parametrize("name", FOLDER_FILES + ["tokenizer.model"])
def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path, name):
    write_folder(tmp_path, kind="sentencepiece" if name == "tokenizer.model" else "char")
    (tmp_path / name).unlink()
    os.mkfifo(tmp_path / name)
    outcome = within(10, lambda: tg.load(tmp_path))
    assert isinstance(outcome.get("error"), ModelFolderError), outcome
    assert "named pipe (FIFO)" in str(outcome["error"]) and name in str(outcome["error"])


@pytest.mark.parametrize("name", FOLDER_FILES)
def test_a_symlink_out_of_the_folder_is_refused(tmp_path, name):
    write_folder(tmp_path / "m")
    outside = tmp_path / f"outside-{name}"
    shutil.move(tmp_path / "m" / name, outside)
    (tmp_path / "m" / name).symlink_to(outside)
    with pytest.raises(ModelFolderError, match="symlink that leads out of"):
        tg.load(tmp_path / "m")


def test_a_hub_cache_snapshot_linking_into_its_blobs_still_loads(tmp_path, monkeypatch):
    model, tokenizer = write_folder(tmp_path / "src")
    repo = tmp_path / "cache" / "models--someone--linked"
    snapshot = repo / "snapshots" / ("1" * 40)
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("1" * 40)
    for index, path in enumerate(sorted((tmp_path / "src").iterdir())):
        blob = repo / "blobs" / f"blob{index}"
        shutil.copy(path, blob)
        (snapshot / path.name).symlink_to(Path("../..") / "blobs" / blob.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = tg.load("someone/linked", cache_dir=str(tmp_path / "cache"))
    ids = torch.tensor([tokenizer.encode("to be")])
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(ids)[0], model(ids)[0])


def test_only_the_tail_of_a_long_history_is_read(tmp_path, monkeypatch):
    write_folder(tmp_path)
    rows = [json.dumps({"kind": "train", "step": step, "train_loss": 1.5}) for step in range(300)]
    (tmp_path / "history.jsonl").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(files, "MAX_HISTORY_BYTES", 2000)
    history = tg.load(tmp_path).history
    assert 0 < len(history) < 60 and history[-1]["step"] == 299
    assert [p["step"] for p in history] == list(range(300 - len(history), 300))  # no cut first line


def test_damaged_and_deep_history_lines_are_skipped(tmp_path):
    write_folder(tmp_path)
    lines = ['{"kind": "eval", "step": 1, "val_loss": 2.0}', "{cut", DEEP, "[1, 2]",
             '{"kind": "eval", "step": 2, "val_loss": NaN}']
    (tmp_path / "history.jsonl").write_text("\n".join(lines) + "\n")
    assert tg.load(tmp_path).history == [{"kind": "eval", "step": 1, "val_loss": 2.0},
                                         {"kind": "eval", "step": 2, "val_loss": None}]


def test_run_json_of_wrong_types_keeps_only_well_typed_fields(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({
        "name": 5, "corpus": 5, "steps": [], "best_val_loss": "x", "best_val_bpc": float("nan"),
        "elapsed_s": -1, "chars_per_token": "2", "best_step": 3, "hardware": "CPU", "unknown": 1,
        "tokenizer": {"type": "char", "vocab_size": "many", "notes": [1, "kept"]},
        "train_config": {"lr": 0.003, "odd": {"nested": 1}}}))
    bundle = tg.load(tmp_path)
    assert bundle.info == {"best_step": 3, "hardware": "CPU", "train_config": {"lr": 0.003},
                           "tokenizer": {"type": "char", "notes": ["kept"]}}
    assert bundle.name == tmp_path.name
    from ui.models import card_rows  # the app's model card formats every field it finds

    assert ("parameters", f"{bundle.model.num_parameters():,}") in card_rows(bundle)


@pytest.mark.parametrize("name", ["config.json", "run.json", "textgen_tokenizer.json"])
def test_deeply_nested_json_is_a_clear_error(tmp_path, name):
    write_folder(tmp_path)
    (tmp_path / name).write_text(DEEP)
    with pytest.raises(ModelFolderError, match=f"{name} is nested too deeply"):
        tg.load(tmp_path)


def test_a_config_without_arch_is_refused(tmp_path):
    write_folder(tmp_path, arch="lstm")
    config = json.loads((tmp_path / "config.json").read_text())
    del config["arch"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"config.json does not say which architecture \(arch\)"):
        tg.load(tmp_path)


def test_an_oversized_config_is_refused(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"arch": "gru", "pad": "x" * (2 << 20)}))
    with pytest.raises(ModelFolderError, match="more than the 1.0 MB such a file may hold"):
        tg.load(tmp_path)


def test_the_card_is_read_safely(tmp_path):
    write_folder(tmp_path)
    assert hub.read_card(tmp_path) == "# demo\n"
    (tmp_path / "README.md").unlink()
    assert hub.read_card(tmp_path) is None
    os.mkfifo(tmp_path / "README.md")
    outcome = within(10, lambda: hub.read_card(tmp_path))
    assert "named pipe" in str(outcome.get("error"))


def test_push_refuses_a_fifo_among_the_files_it_would_upload(tmp_path):
    from tests.test_hub import FakeHfApi

    write_folder(tmp_path)
    (tmp_path / "README.md").unlink()
    os.mkfifo(tmp_path / "README.md")
    api = FakeHfApi()
    outcome = within(10, lambda: hub.push_folder(tmp_path, "me/x", api=api))
    assert "named pipe" in str(outcome.get("error")) and api.calls == []


def test_uploads_and_downloads_carry_the_models_files_but_not_the_folders_bookkeeping(tmp_path):
    import io
    import zipfile

    from textgen_core.pretrained import resolve
    from ui.models import zip_model_folder

    folder = tmp_path / "model"
    assert main(["train", str(_song(tmp_path)), "--out", str(folder), "--preset", "tiny", "--max-steps", "4",
                 "--eval-every", "2", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]) == 0
    assert (folder / ".textgen-files.json").is_file()
    names = [p.name for p in hub.published_files(folder)]
    assert "model.safetensors" in names and "config.json" in names
    assert not any(n.startswith(".") or n == "checkpoint" for n in names)
    with zipfile.ZipFile(io.BytesIO(zip_model_folder(folder))) as archive:
        assert sorted(n.split("/", 1)[1] for n in archive.namelist()) == sorted(names)
    # an app session names models by repo id or pretrained name only, never by a path on the server
    with pytest.raises(ModelFolderError, match="not a Hub repo id"):
        resolve(str(folder), folders=False)
    assert resolve(str(folder))[0].model.num_parameters() > 0


def _song(tmp_path: Path) -> Path:
    path = tmp_path / "song.txt"
    path.write_text("the river runs to the sea and the sea runs to the sky\n" * 40)
    return path
