"""Model folders: identical logits after save/load, clear refusals, the Hub cache, fast failure."""
from __future__ import annotations

import json
import shutil
import socket
import time

import huggingface_hub.constants
import pytest
import torch

import textgen_core as tg
from textgen_core import hub
from textgen_core.errors import ConfigError, HubError, ModelFolderError
from textgen_core.models import ARCHITECTURES, ModelConfig, build_model
from textgen_core.tokenizers import TOKENIZER_KINDS, make_tokenizer


def write_folder(folder, arch="gru", kind="char", text=None):
    text = text or "to be or not to be, that is the question.\n" * 20
    tokenizer = make_tokenizer(kind, 300 if kind == "sentencepiece" else None).fit(text)
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(arch, "tiny", tokenizer.vocab_size)).eval()
    hub.save_folder(folder, model, tokenizer, [{"kind": "eval", "step": 1, "train_loss": 2.0,
                                                 "val_loss": 2.1, "val_bpc": 3.0}],
                    {"name": "demo"}, "# demo\n")
    return model, tokenizer


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_save_load_gives_identical_logits(tmp_path, arch, kind):
    model, tokenizer = write_folder(tmp_path, arch, kind)
    bundle = tg.load(tmp_path)
    ids = torch.tensor([tokenizer.encode("to be or not")])
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(ids)[0], model(ids)[0], rtol=0, atol=0)
    assert bundle.tokenizer.encode("question") == tokenizer.encode("question")
    assert bundle.history[0]["val_bpc"] == 3.0 and bundle.info["name"] == "demo"


def test_missing_weights_and_pickle_only_folder(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError, match="no model.safetensors"):
        tg.load(tmp_path)
    # A pickle file that would run code if unpickled: it must never be opened.
    (tmp_path / "pytorch_model.bin").write_bytes(b"cos\nsystem\n(S'touch /tmp/pwned'\ntR.")
    with pytest.raises(ModelFolderError, match="pickle file, which is never loaded"):
        tg.load(tmp_path)


def test_config_that_does_not_match_the_weights(tmp_path):
    write_folder(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden"] = 64
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="does not match config.json"):
        tg.load(tmp_path)


def test_tokenizer_from_another_model(tmp_path):
    write_folder(tmp_path / "a", text="abc " * 100)
    write_folder(tmp_path / "b", text="completely different letters xyz\n" * 20)
    shutil.copy(tmp_path / "b" / "textgen_tokenizer.json", tmp_path / "a" / "textgen_tokenizer.json")
    with pytest.raises(ModelFolderError, match="different models"):
        tg.load(tmp_path / "a")


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"arch": "gru", "colour": 1}'])
def test_malformed_config(tmp_path, content):
    write_folder(tmp_path)
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ModelFolderError, match="config.json"):
        tg.load(tmp_path)


@pytest.mark.parametrize("source", ["no/such/folder/here", "../no-such-folder-xyz", "not a repo id", "a/b/c"])
def test_neither_folder_nor_repo_id(source):
    with pytest.raises(ModelFolderError, match="neither a model folder nor a Hub repo id"):
        tg.load(source)


def make_hub_cache(cache_dir, repo_id, source_folder, revision_hash="0" * 40):
    """The layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<hash>/...}."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(revision_hash)
    shutil.copytree(source_folder, repo_dir / "snapshots" / revision_hash)


def test_repo_id_resolves_from_the_cache_offline(tmp_path, monkeypatch):
    model, tokenizer = write_folder(tmp_path / "src")
    make_hub_cache(tmp_path / "cache", "someone/tiny-char", tmp_path / "src")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = tg.load("someone/tiny-char", cache_dir=str(tmp_path / "cache"))
    ids = torch.tensor([tokenizer.encode("to be")])
    with torch.no_grad():
        torch.testing.assert_close(bundle.model(ids)[0], model(ids)[0])


def test_offline_and_not_cached_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="not in the local Hub cache"):
        tg.load("someone/missing", cache_dir=str(tmp_path))


def hub_online_at(monkeypatch, port: int) -> None:
    """The Hub switched on, at a loopback port."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")


def test_unreachable_hub_fails_fast(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub_online_at(monkeypatch, port)
    start = time.perf_counter()
    with pytest.raises(HubError, match="cannot reach the Hugging Face Hub"):
        tg.load("someone/elsewhere", cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5


class FakeHfApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, token=None, private=False, exist_ok=False):
        self.calls.append(("create_repo", repo_id, token))
        return f"https://hub.example/{repo_id}"

    def upload_folder(self, folder_path, repo_id, token=None, allow_patterns=None,
                      ignore_patterns=None, commit_message=""):
        self.calls.append(("upload_folder", repo_id, token, tuple(allow_patterns), tuple(ignore_patterns)))


def test_push_uploads_the_folder_without_checkpoint_or_token(tmp_path):
    write_folder(tmp_path)
    api = FakeHfApi()
    url = hub.push_folder(tmp_path, "me/my-model", token="hf_secret_token", api=api)
    assert url.endswith("me/my-model")
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert "checkpoint/*" in api.calls[1][4] and "*.safetensors" in api.calls[1][3]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"hf_secret_token" not in path.read_bytes()


def test_push_refuses_bad_repo_id_and_broken_folder(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(ConfigError, match="owner/name"):
        hub.push_folder(tmp_path, "not a repo", api=FakeHfApi())
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ModelFolderError):
        hub.push_folder(tmp_path, "me/x", api=FakeHfApi())


def test_a_hub_that_accepts_but_never_answers_fails_within_seconds(tmp_path, monkeypatch):
    with socket.socket() as sock:  # listening, never accepting: connections open, requests hang
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        hub_online_at(monkeypatch, sock.getsockname()[1])
        start = time.perf_counter()
        with pytest.raises(HubError, match="did not answer in time|failed"):
            tg.load("someone/silent", cache_dir=str(tmp_path))
        assert time.perf_counter() - start < 10


# --- the mixin's from_pretrained: the folder's architecture, strictly loaded -------------------
def test_from_pretrained_on_the_base_class_returns_the_folders_architecture(tmp_path):
    from textgen_core.models import CNNLanguageModel, LanguageModel, RNNLanguageModel

    model, tokenizer = write_folder(tmp_path, arch="lstm")
    loaded = LanguageModel.from_pretrained(tmp_path)
    assert type(loaded) is RNNLanguageModel and loaded.config.arch == "lstm"
    assert loaded.num_parameters() == model.num_parameters()
    ids = torch.tensor([tokenizer.encode("to be or")])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids)[0], model(ids)[0], rtol=0, atol=0)
    assert type(RNNLanguageModel.from_pretrained(tmp_path)) is RNNLanguageModel
    with pytest.raises(ModelFolderError, match="holds a lstm model, which CNNLanguageModel cannot load"):
        CNNLanguageModel.from_pretrained(tmp_path)


def test_from_pretrained_refuses_weights_of_another_size_and_size_overrides(tmp_path):
    from textgen_core.models import LanguageModel

    write_folder(tmp_path, arch="cnn")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden": 64}))
    with pytest.raises(ModelFolderError, match="does not match config.json"):
        LanguageModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="takes no hidden"):
        LanguageModel.from_pretrained(tmp_path, hidden=64)


# --- pushing: a deadline on every call, and what went wrong in words ---------------------------
def test_push_to_a_hub_that_never_answers_fails_within_its_deadline(tmp_path, monkeypatch):
    write_folder(tmp_path)
    monkeypatch.setattr(hub, "HUB_CALL_DEADLINE_S", 1.5)
    with socket.socket() as sock:  # listening, never accepting: connections open, requests hang
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        hub_online_at(monkeypatch, sock.getsockname()[1])
        start = time.perf_counter()
        with pytest.raises(HubError, match="did not answer in time") as caught:
            hub.push_folder(tmp_path, "me/silent", token="hf_secret_token")
        assert time.perf_counter() - start < 6
    assert "hf_secret_token" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_push_while_offline_says_the_hub_cannot_be_reached(tmp_path, monkeypatch, capsys):
    from textgen_core.cli import main

    write_folder(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://nonexistent.invalid")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    assert main(["push", str(tmp_path), "--repo", "me/offline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach the Hugging Face Hub at "
                                               "http://nonexistent.invalid"), err
    assert "offline" in err[0] and "Errno" not in err[0] and "hf_secret_token" not in err[0]


def test_push_without_a_folder_says_what_to_give(capsys):
    from textgen_core.cli import main

    assert main(["push", " ", "--repo", "me/x"]) == 2
    assert "no model folder given" in capsys.readouterr().err
