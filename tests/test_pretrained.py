"""Pretrained catalog: Hub first (cache), the bundled copy when the Hub fails, and the push command."""
from __future__ import annotations

import json
import socket
import time

import huggingface_hub
import pytest

from textgen_core import pretrained
from textgen_core.cli import main
from textgen_core.errors import ModelFolderError

from tests.test_hub import FakeHfApi, make_hub_cache, write_folder


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    directory = tmp_path / "pretrained"
    write_folder(directory / "tiny-char")
    (directory / "catalog.json").write_text(json.dumps([
        {"name": "tiny-char", "repo_id": "playground/tiny-char", "folder": "tiny-char", "description": "demo"},
        {"name": "absent", "repo_id": "playground/absent", "folder": "absent"},
    ]))
    monkeypatch.setenv("TEXTGEN_PRETRAINED_DIR", str(directory))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    return directory


def closed_port_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_catalog_lists_only_folders_that_exist(bundled):
    entries = pretrained.catalog()
    assert [e.name for e in entries] == ["tiny-char"]
    assert pretrained.find("playground/tiny-char").name == "tiny-char"


def test_owner_can_be_swapped(bundled, monkeypatch):
    monkeypatch.setenv("TEXTGEN_HUB_OWNER", "someone-else")
    assert pretrained.catalog()[0].repo_id == "someone-else/tiny-char"


def test_folder_outside_the_pretrained_dir_is_refused(bundled):
    (bundled / "catalog.json").write_text(json.dumps([{"name": "x", "repo_id": "a/b", "folder": "../x"}]))
    with pytest.raises(ModelFolderError, match="directly inside"):
        pretrained.catalog()


def test_unreachable_hub_falls_back_to_the_bundled_copy_quickly(bundled, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_endpoint())
    start = time.perf_counter()
    bundle, note = pretrained.load_pretrained(pretrained.find("tiny-char"))
    assert time.perf_counter() - start < 5
    assert "cannot reach" in note and "bundled copy" in note
    assert bundle.path == bundled / "tiny-char"


def test_hub_cache_is_preferred_when_present(bundled, tmp_path, monkeypatch):
    write_folder(tmp_path / "hub-version", text="a different text for the hub copy\n" * 20)
    make_hub_cache(tmp_path / "cache", "playground/tiny-char", tmp_path / "hub-version")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle, note = pretrained.load_pretrained(pretrained.find("tiny-char"))
    assert "from the Hugging Face Hub" in note
    assert bundle.tokenizer.encode("hub") != [0, 0, 0]  # the hub copy's vocabulary has these letters


def test_cli_samples_a_pretrained_model_by_name(bundled, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["sample", "tiny-char", "--length", "10", "--seed", "1", "--prompt", "to"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("to") and "bundled copy" in captured.err
    assert main(["pretrained"]) == 0
    assert "playground/tiny-char" in capsys.readouterr().out


def test_cli_push_uses_the_token_without_showing_it(bundled, monkeypatch, capsys):
    fake = FakeHfApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda **_: fake)
    monkeypatch.setenv("HF_TOKEN", "hf_very_secret")
    assert main(["push", str(bundled / "tiny-char"), "--repo", "me/tiny"]) == 0
    captured = capsys.readouterr()
    assert "me/tiny" in captured.out
    assert "hf_very_secret" not in captured.out + captured.err
    assert fake.calls[0] == ("create_repo", "me/tiny", "hf_very_secret")


# --- one resolver for the API, the CLI and the app ---------------------------------------------
def test_tg_load_knows_pretrained_names_and_falls_back_offline(bundled, monkeypatch):
    import textgen_core as tg

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    by_name = tg.load("tiny-char")
    by_repo = tg.load("playground/tiny-char")  # not cached, Hub off: the bundled copy
    assert by_name.path == by_repo.path == bundled / "tiny-char"
    bundle, note = pretrained.resolve("playground/tiny-char")
    assert "not in the local Hub cache" in note and "bundled copy" in note
    bundle, note = pretrained.resolve(str(bundled / "tiny-char"))
    assert "model folder" in note and bundle.path == bundled / "tiny-char"


@pytest.mark.parametrize("source", ["", "   ", "\n"])
def test_a_blank_source_says_what_to_give(source, capsys):
    import textgen_core as tg

    with pytest.raises(ModelFolderError, match=r"no model given: give a model folder, a pretrained name "
                                               r"\(see `python -m textgen_core pretrained`\) or a Hub repo id"):
        tg.load(source)
    assert main(["sample", source]) == 2
    err = capsys.readouterr().err
    assert "no model given" in err and "has no model.safetensors" not in err


def test_an_unknown_name_names_all_three_kinds_of_source(bundled):
    with pytest.raises(ModelFolderError, match="neither a model folder nor a Hub repo id.*no pretrained model"):
        pretrained.resolve("tiny-chars")
