"""The models bundled in pretrained/: complete folders, honest cards, readable samples, and the
Shakespeare LSTM's validation loss on the standard last-10% split."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from textgen_core import api, hub, pretrained
from textgen_core.cli import main

from tests.conftest import shared_corpus

ROOT = pretrained.PRETRAINED_DIR
ENTRIES = json.loads((ROOT / pretrained.CATALOG_FILE).read_text()) if (ROOT / pretrained.CATALOG_FILE).is_file() else []
NAMES = [e["name"] for e in ENTRIES]
CORPUS_OF = {"shakespeare": "tinyshakespeare.txt", "alice": "alice.txt", "lyrics": "lyrics_public_domain.txt"}
MODEL_FILES = ("config.json", "model.safetensors", "textgen_tokenizer.json", "history.jsonl", "run.json", "README.md")


def folder(name: str) -> Path:
    return ROOT / next(e["folder"] for e in ENTRIES if e["name"] == name)


def test_catalog_names_at_least_four_bundled_models_of_every_kind():
    entries = pretrained.catalog(ROOT)
    assert len(entries) >= 4 and len(entries) == len(ENTRIES)
    kinds = {hub.load_folder(e.folder).tokenizer.kind for e in entries}
    assert kinds == {"char", "word", "sentencepiece"}
    assert all(hub.is_repo_id(e.repo_id) for e in entries)


@pytest.mark.parametrize("name", NAMES)
def test_folder_is_complete_and_small(name):
    path = folder(name)
    for file in MODEL_FILES:
        assert (path / file).is_file(), f"{name} lacks {file}"
    leftovers = [p.name for p in path.iterdir() if p.is_dir() or p.name.endswith(".tmp")]
    assert not leftovers, f"{name} holds {leftovers} (no resume checkpoint or temp files in bundled copies)"
    size = sum(p.stat().st_size for p in path.iterdir())
    assert size < 15e6


def test_all_bundled_models_fit_the_size_budget():
    assert sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file()) < 60e6


@pytest.mark.parametrize("name", NAMES)
def test_card_gives_command_hardware_figures_and_three_samples(name):
    card = (folder(name) / "README.md").read_text(encoding="utf-8")
    info = json.loads((folder(name) / "run.json").read_text())
    assert f"python -m textgen_core train ../shared/data/{Path(info['corpus']['name']).name}" in card
    assert info["command"].startswith("python -m textgen_core train ")
    assert re.search(rf"--out (\S+/)?pretrained(_models)?/{name} ", info["command"])
    for label in ("| hardware |", "| training time |", "| parameters |", "| best validation loss |",
                  "| best validation bits per char |"):
        assert label in card
    assert f"{info['parameters']:,}" in card and f"{info['best_val_bpc']:.4f}" in card
    assert card.count("```text") == 3


def words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text.lower())


@pytest.mark.parametrize("name", NAMES)
def test_samples_are_made_of_the_corpus_words(name):
    """Readable: most words of a sample at temperature 0.7 are words of the training text."""
    corpus = shared_corpus(CORPUS_OF[name.split("-")[0]])
    vocabulary = set(words(corpus.read_text(encoding="utf-8", errors="replace")))
    bundle = hub.load_folder(folder(name))
    length = 600 if bundle.tokenizer.kind == "char" else 150
    text = api.generate(bundle, "", length=length, temperature=0.7, seed=3)[0]
    sample = words(text)
    assert len(sample) >= 20, text
    known = sum(w in vocabulary for w in sample) / len(sample)
    assert known >= 0.8, f"{known:.0%} known words in: {text[:300]!r}"


def test_shakespeare_lstm_is_at_most_1_45_nats_per_char_on_the_last_tenth(tmp_path, capsys):
    text = shared_corpus("tinyshakespeare.txt").read_text(encoding="utf-8")
    last_tenth = tmp_path / "val.txt"
    last_tenth.write_text(text[int(len(text) * 0.9):], encoding="utf-8")
    assert main(["evaluate", str(folder("shakespeare-char-lstm")), str(last_tenth)]) == 0
    loss = float(re.search(r"([0-9.]+) nats/char", capsys.readouterr().out).group(1))
    assert loss <= 1.45


def test_the_app_offers_the_bundled_models_on_first_start(monkeypatch, tmp_path):
    """No upload and no Hub: the Generate page lists the pretrained models and writes with the first."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TEXTGEN_PRETRAINED_DIR", str(ROOT))
    monkeypatch.setenv("TEXTGEN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60).run()
    at.switch_page("app_pages/generate.py")
    at = at.run()
    assert not at.exception
    listed = at.selectbox(key="gen_model").options
    assert listed[0] == f"{NAMES[0]} · pretrained" and len(listed) == len(NAMES)
    at.text_area(key="gen_prompt").set_value("ROMEO:")
    at = next(b for b in at.button if b.label == "Generate").click().run()
    assert not at.exception
    text = at.session_state["generated"]["results"][0][1][0]
    assert text.startswith("ROMEO:") and len(text) > 100


def test_tg_load_takes_a_bundled_name_or_repo_id_offline(monkeypatch, tmp_path):
    import huggingface_hub

    import textgen_core as tg

    monkeypatch.setenv("TEXTGEN_PRETRAINED_DIR", str(ROOT))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert tg.load("shakespeare-char-lstm").path == folder("shakespeare-char-lstm")
    repo_id = next(e["repo_id"] for e in ENTRIES if e["name"] == "shakespeare-char-gru")
    assert tg.load(repo_id).path == folder("shakespeare-char-gru")
