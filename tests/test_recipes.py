"""Recipes: all five are defined, their settings are valid, and one runs end to end from the CLI."""
from __future__ import annotations

import pytest

from textgen_core import recipes
from textgen_core.cli import main
from textgen_core.models import build_model

from tests.conftest import DATA_DIR

NAMES = ["shakespeare-gru", "alice-lstm", "lyrics-gru-cnn-attention", "word-gru-paragraph", "overfitting-lab"]


def test_list_names_all_five(capsys):
    assert main(["recipe", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_valid_and_corpus_loads(name):
    item = recipes.recipe(name)
    for run in item.runs:
        run.settings.train.validated()
        assert build_model(run.settings.model_config(vocab_size=100)).num_parameters() > 0
    if item.corpus.startswith("inline:") or (DATA_DIR / item.corpus).is_file():
        corpus = recipes.load_corpus(item, DATA_DIR)
        assert len(corpus.text) > 500
        if item.lowercase:
            assert corpus.text == corpus.text.lower()
        if item.corpus_chars:
            assert len(corpus.text) == item.corpus_chars


def test_paragraph_recipe_runs_from_the_cli(tmp_path, capsys):
    args = ["recipe", "word-gru-paragraph", "--out", str(tmp_path), "--max-minutes", "0.03", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "=== reference (temperature 0.8, seed 1) ===\nA model" in out
    assert (tmp_path / "word-gru-paragraph" / "reference" / "model.safetensors").is_file()


def test_unknown_recipe_exits_2(capsys):
    assert main(["recipe", "no-such-recipe"]) == 2
    assert "choose one of" in capsys.readouterr().err
