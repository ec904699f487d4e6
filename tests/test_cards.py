"""Model cards the Hub understands, and complete Hub repos from every way to push.

Cards: huggingface_hub's ModelCard reads back every field (license, language, datasets, library,
tags, model-index with bits per char and nats per token on the held-out split), and the usage
snippet names the distribution and the repo. Pushes (CLI, ``hub.push_folder`` as the Models page
calls it, the mixin's ``push_to_hub`` / ``save_pretrained``) go to a fake Hub that keeps what it
is sent; ``tg.load`` then reads the repo back from a Hub cache made of it, offline.
"""
from __future__ import annotations

import json
import re
import shutil
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard

import textgen_core as tg
from textgen_core import card, hub, pretrained
from textgen_core.cli import main
from textgen_core.errors import ConfigError
from textgen_core.models import ModelConfig, build_model
from textgen_core.tokenizers import TOKENIZER_FILE, make_tokenizer

from tests.test_hub import make_hub_cache, write_folder

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENTRIES = json.loads((pretrained.PRETRAINED_DIR / pretrained.CATALOG_FILE).read_text(encoding="utf-8"))


def run_info(**changes) -> dict:
    info = json.loads((pretrained.PRETRAINED_DIR / "shakespeare-char-lstm" / "run.json").read_text())
    return {**info, **changes}


def load_card(tmp_path: Path, text: str) -> ModelCard:
    path = tmp_path / "README.md"
    path.write_text(text, encoding="utf-8")
    return ModelCard.load(path)


def assert_card_fields(loaded: ModelCard, info: dict) -> None:
    """Every metadata field of a card written from ``info``, as huggingface_hub reads it back."""
    data = loaded.data
    assert data.license == "mit" and data.library_name == "textgen_core"
    assert data.pipeline_tag == "text-generation"
    assert {"text-generation", "textgen-core", info["model"]["arch"]} <= set(data.tags)
    assert data.model_name == info["name"]
    results = {r.metric_type: r for r in data.eval_results}
    assert results["bpc"].metric_value == round(info["best_val_bpc"], 4)
    assert results["nats_per_token"].metric_value == round(info["best_val_loss"], 4)
    for result in results.values():
        assert result.task_type == "text-generation"
        assert result.dataset_name == info["corpus"]["name"]
        assert result.dataset_split == f"last 10% of {info['corpus']['name']}"


# --- the card's metadata ----------------------------------------------------------------------
def test_a_card_round_trips_through_model_card_with_every_field(tmp_path):
    info = run_info()
    loaded = load_card(tmp_path, card.render_card(info, ["ROMEO:\nsample"], repo_id="me/shakespeare"))
    assert_card_fields(loaded, info)
    assert loaded.data.language == "en" and loaded.data.datasets == ["tiny_shakespeare"]
    assert "```text\nROMEO:\nsample\n```" in loaded.text


def test_language_comes_from_the_run_or_the_option_and_is_left_out_when_unknown(tmp_path):
    other = run_info(corpus={"name": "lyrics.txt", "chars": 1000})
    assert load_card(tmp_path, card.render_card(other, [])).data.language is None
    assert load_card(tmp_path, card.render_card(other, [], language="de")).data.language == "de"
    assert load_card(tmp_path, card.render_card({**other, "language": "fr"}, [])).data.language == "fr"
    assert load_card(tmp_path, card.render_card(other, [])).data.datasets is None   # no Hub dataset known


def test_the_card_license_is_the_projects():
    assert PYPROJECT["project"]["license"] == "MIT" and card.LICENSE == "mit"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the textgen playground authors" in text


def test_the_usage_installs_the_distribution_and_loads_the_repo():
    text = card.render_card(run_info(), [], repo_id="me/shakespeare")
    assert f"```bash\npip install {PYPROJECT['project']['name']}\n```" in text
    assert 'bundle = tg.load("me/shakespeare")' in text and 'textgen sample "me/shakespeare"' in text
    local = card.render_card(run_info(), [])
    assert f'tg.load("{card.LOCAL_SOURCE}")' in local
    assert card.for_repo(local, "you/model") == card.render_card(run_info(), [], repo_id="you/model")


def test_a_run_record_with_fields_missing_still_gives_a_card(tmp_path):
    loaded = load_card(tmp_path, card.render_card({"name": "bare"}, []))
    assert loaded.data.model_name == "bare" and loaded.data.eval_results is None
    assert "# bare" in loaded.text and "## Use" in loaded.text


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["name"] for e in ENTRIES])
def test_bundled_cards_are_this_versions_cards_and_read_back(tmp_path, entry):
    folder = pretrained.PRETRAINED_DIR / entry["folder"]
    text = (folder / "README.md").read_text(encoding="utf-8")
    info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert text == card.render_card(info, card.card_samples_of(text), repo_id=entry["repo_id"]), \
        "regenerate with scripts/make_cards.py"
    loaded = ModelCard.load(folder / "README.md")
    assert_card_fields(loaded, info)
    assert loaded.data.language == "en"
    assert (loaded.data.datasets == ["tiny_shakespeare"]) == info["corpus"]["name"].startswith("tinyshakespeare")
    assert f'tg.load("{entry["repo_id"]}")' in text and len(card.card_samples_of(text)) == 3


def test_the_usage_snippet_of_a_bundled_card_runs_offline(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("TEXTGEN_PRETRAINED_DIR", raising=False)
    text = (pretrained.PRETRAINED_DIR / "shakespeare-char-gru" / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", text, flags=re.S).group(1)
    exec(compile(snippet.replace("length=200", "length=30"), "card", "exec"), {})
    assert len(capsys.readouterr().out) > 30


# --- complete repos from every way to push ------------------------------------------------------
class FakeHub:
    """Stands in for huggingface_hub.HfApi on a loopback of files: a repo is a folder of what was sent."""
    root: Path

    def __init__(self, *args, **kwargs) -> None:
        pass

    def create_repo(self, repo_id, token=None, private=False, exist_ok=False):
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return f"https://hub.example/{repo_id}"

    def upload_folder(self, folder_path, repo_id, token=None, allow_patterns=None, ignore_patterns=None, **kwargs):
        for path in Path(folder_path).rglob("*"):
            name = path.relative_to(folder_path).as_posix()
            if path.is_file() and any(fnmatch(name, p) for p in allow_patterns or ["*"]) and \
                    not any(fnmatch(name, p) for p in ignore_patterns or []):
                target = self.root / repo_id / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())


@pytest.fixture()
def fake_hub(monkeypatch, tmp_path):
    FakeHub.root = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    return FakeHub.root


def pulled(tmp_path: Path, hub_root: Path, repo_id: str, monkeypatch) -> tg.Bundle:
    """What anyone who pulls ``repo_id`` gets: tg.load through a Hub cache of the repo, offline."""
    files = sorted(p.name for p in (hub_root / repo_id).iterdir())
    for name in ("config.json", "model.safetensors", TOKENIZER_FILE, "history.jsonl", "README.md"):
        assert name in files, f"{repo_id} lacks {name}: {files}"
    cache = tmp_path / f"cache-{repo_id.replace('/', '-')}"
    make_hub_cache(cache, repo_id, hub_root / repo_id)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bundle = tg.load(repo_id, cache_dir=str(cache))
    text = (hub_root / repo_id / "README.md").read_text(encoding="utf-8")
    assert f'tg.load("{repo_id}")' in text and card.LOCAL_SOURCE not in text
    return bundle


def same_model(a: tg.Bundle, b: tg.Bundle) -> None:
    ids = a.tokenizer.encode("to be or not")
    assert b.tokenizer.encode("to be or not") == ids
    with torch.no_grad():
        torch.testing.assert_close(a.model.eval()(torch.tensor([ids]))[0], b.model.eval()(torch.tensor([ids]))[0],
                                   rtol=0, atol=0)


def test_the_cli_push_uploads_a_repo_that_loads(tmp_path, fake_hub, monkeypatch):
    shutil.copytree(pretrained.PRETRAINED_DIR / "shakespeare-char-gru", tmp_path / "m")
    before = (tmp_path / "m" / "README.md").read_text()
    assert main(["push", str(tmp_path / "m"), "--repo", "me/cli-model"]) == 0
    same_model(tg.load(tmp_path / "m"), pulled(tmp_path, fake_hub, "me/cli-model", monkeypatch))
    assert (tmp_path / "m" / "README.md").read_text() == before   # the folder is not changed


def test_a_card_of_ones_own_is_pushed_as_it_is(tmp_path, fake_hub):
    write_folder(tmp_path / "m", kind="word")   # its README.md is "# demo"
    hub.push_folder(tmp_path / "m", "me/demo")
    assert (fake_hub / "me/demo" / "README.md").read_text() == "# demo\n"


def test_push_folder_as_the_models_page_calls_it_uploads_a_repo_that_loads(tmp_path, fake_hub, monkeypatch):
    folder = pretrained.PRETRAINED_DIR / "lyrics-sp-lstm"
    hub.push_folder(folder, "me/lyrics", token="hf_secret")
    bundle = pulled(tmp_path, fake_hub, "me/lyrics", monkeypatch)
    same_model(tg.load(folder), bundle)
    assert "tokenizer.model" in [p.name for p in (fake_hub / "me/lyrics").iterdir()]
    assert bundle.history and bundle.info["best_val_bpc"] > 0


def test_the_mixins_push_to_hub_of_a_loaded_model_uploads_a_repo_that_loads(tmp_path, fake_hub, monkeypatch):
    source = tg.load(pretrained.PRETRAINED_DIR / "alice-word-gru")
    url = source.model.push_to_hub("me/alice", model_card_kwargs={"language": "en"})
    assert url == "https://hub.example/me/alice"
    bundle = pulled(tmp_path, fake_hub, "me/alice", monkeypatch)
    same_model(source, bundle)
    assert bundle.info["best_val_loss"] == source.info["best_val_loss"] and len(bundle.history) == len(source.history)
    loaded = ModelCard.load(fake_hub / "me/alice" / "README.md")
    assert_card_fields(loaded, source.info)
    assert len(card.card_samples_of(loaded.text)) == 3


def test_a_trained_model_saves_and_pushes_with_its_tokenizer(tmp_path, fake_hub, monkeypatch):
    corpus = tg.read_text(("the cat sat on the mat.\n" * 60).encode(), name="cats.txt")
    settings = tg.RunSettings(arch="lstm", preset="tiny", train=tg.TrainConfig(
        max_steps=4, eval_every=2, batch_size=4, seq_len=16, device="cpu"))
    result = tg.train_model(corpus, settings, tmp_path / "run")
    model = result.bundle.model
    assert model.save_pretrained(tmp_path / "saved") is None
    same_model(result.bundle, tg.load(tmp_path / "saved"))
    assert tg.load(tmp_path / "saved").info["steps"] == 4
    model.save_pretrained(tmp_path / "again", push_to_hub=True, repo_id="me/cats")
    same_model(result.bundle, pulled(tmp_path, fake_hub, "me/cats", monkeypatch))


def test_a_model_without_a_tokenizer_is_refused_or_given_one(tmp_path, fake_hub):
    tokenizer = make_tokenizer("char").fit("abcabc")
    model = build_model(ModelConfig.from_preset("gru", "tiny", tokenizer.vocab_size))
    with pytest.raises(ConfigError, match="has no tokenizer.*pass tokenizer="):
        model.push_to_hub("me/bare")
    with pytest.raises(ConfigError, match="has no tokenizer"):
        model.save_pretrained(tmp_path / "bare")
    assert not (fake_hub / "me" / "bare").exists()
    other = make_tokenizer("char").fit("completely different letters")
    with pytest.raises(ConfigError, match="give the tokenizer the model was trained with"):
        model.save_pretrained(tmp_path / "wrong", tokenizer=other)
    model.save_pretrained(tmp_path / "given", tokenizer=tokenizer, model_card_kwargs={"language": "xx"})
    assert tg.load(tmp_path / "given").tokenizer.encode("cab") == tokenizer.encode("cab")
    assert ModelCard.load(tmp_path / "given" / "README.md").data.language == "xx"
    with pytest.raises(ConfigError, match="push_to_hub takes no branch"):
        model.push_to_hub("me/bare", tokenizer=tokenizer, branch="dev")
