"""Recipes: classic text-generation experiments as ready-made runs, each beside its reference figure.

A recipe names a corpus and one or more runs (a faithful reproduction of the original setup, and
this project's tuned variant or the comparison the original made). The CLI runs them with
``python -m textgen_core recipe NAME``; the app fills its pages from the same definitions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from .corpus import Corpus, read_file, read_text
from .errors import ConfigError, CorpusError
from .runs import RunResult, RunSettings, train_model
from .training import TrainConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# A ten-line paragraph written for the word-level recipe (the original used its own short text).
ML_PARAGRAPH = """Machine learning is the study of programs that improve with experience.
A model learns patterns from examples instead of following rules written by hand.
Training shows the model many examples and nudges its weights to reduce its error.
The error on examples it has never seen tells us whether it has really learned.
A model that only memorises its training examples fails on new ones.
More data, smaller models and regularisation help a model to generalise.
Language models learn which word is likely to follow the words before it.
Recurrent networks read a sentence one word at a time and carry a memory along.
Sampling from a language model writes new sentences one word at a time.
A small paragraph teaches a model little more than the paragraph itself.
"""


@dataclass(frozen=True)
class RecipeRun:
    label: str              # shown in tables and charts, e.g. "reference" or "gru"
    settings: RunSettings


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    reference: str                      # the original setup and the figures it reported
    corpus: str                         # a file in the shared data folder, or "inline:ml-paragraph"
    runs: tuple[RecipeRun, ...]
    lowercase: bool = False             # the original lower-cased its text
    corpus_chars: Optional[int] = None  # use only the first N characters (a deliberately small corpus)
    prompt: str = ""                    # prompt for the samples shown after training
    notes: str = ""                     # what to look for

    def with_device(self, device: str) -> "Recipe":
        runs = tuple(replace(r, settings=replace(r.settings, train=replace(r.settings.train, device=device)))
                     for r in self.runs)
        return replace(self, runs=runs)


def _train(**values) -> TrainConfig:
    base: dict[str, Any] = dict(weight_decay=0.0, warmup_steps=0, min_lr_ratio=1.0, grad_clip=0.0)  # plain Adam
    base.update(values)
    return TrainConfig(**base)


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe(
        name="shakespeare-gru",
        title="TensorFlow text-generation tutorial: char GRU on tiny Shakespeare",
        reference=("embedding 256, one GRU layer of 1024, sequences of 100, batch 64, Adam, 30 epochs; "
                   "training loss 2.68 after epoch 1, 1.24 after epoch 10, 0.71 after epoch 29, about "
                   "8.7 s per epoch on a 2020 GPU; no validation reported"),
        corpus="tinyshakespeare.txt", prompt="ROMEO:",
        runs=(
            RecipeRun("reference", RunSettings(arch="gru", preset="large", embedding=256, hidden=1024,
                                               layers=1, dropout=0.0, train=_train(
                                                   batch_size=64, seq_len=100, lr=1e-3, epochs=30,
                                                   eval_every=170))),
            RecipeRun("tuned", RunSettings(arch="gru", preset="large", embedding=256, hidden=1024,
                                           layers=1, dropout=0.3, train=TrainConfig(
                                               batch_size=64, seq_len=100, lr=2e-3, epochs=30,
                                               eval_every=170, patience=3))),
        ),
        notes="The training loss keeps falling far below the validation loss: that gap is memorisation.",
    ),
    Recipe(
        name="alice-lstm",
        title="Keras char LSTM on Alice in Wonderland (lower-cased)",
        reference=("windows of 100 characters predicting the next one, LSTM 256 (two layers in the larger "
                   "variant), 50 epochs; best training loss 1.2534 at epoch 49 after about 7 hours; "
                   "100 epochs 1.2341 (11.7 h); 200 epochs 1.2428; samples were repetitive"),
        corpus="alice.txt", lowercase=True, prompt="alice was ",
        runs=(
            RecipeRun("reference", RunSettings(arch="lstm", preset="small", embedding=32, hidden=256,
                                               layers=1, dropout=0.2, train=_train(
                                                   batch_size=128, seq_len=100, lr=1e-3, epochs=50,
                                                   eval_every=100))),
            RecipeRun("larger", RunSettings(arch="lstm", preset="small", embedding=32, hidden=256,
                                            layers=2, dropout=0.2, train=_train(
                                                batch_size=128, seq_len=100, lr=1e-3, epochs=50,
                                                eval_every=100))),
            RecipeRun("tuned", RunSettings(arch="lstm", preset="small", embedding=64, hidden=256,
                                           layers=2, dropout=0.2, train=TrainConfig(
                                               batch_size=32, seq_len=128, lr=3e-3, epochs=50,
                                               eval_every=100, patience=4))),
        ),
        notes="Every position of a window is a training target here, not only the last one.",
    ),
    Recipe(
        name="lyrics-gru-cnn-attention",
        title="GRU vs CNN vs attention on a lyrics file",
        reference=("char level, hidden 64, one layer, chunks of 200, learning rate 0.001, 1000 iterations; "
                   "minimum training losses on pop lyrics: GRU 1.56 (1 min 35 s), CNN 1.17 (1 min 34 s), "
                   "attention 0.89 (2 min 34 s), attention with hidden 32: 1.64"),
        corpus="lyrics_public_domain.txt", prompt="Oh ",
        runs=tuple(
            RecipeRun(label, RunSettings(arch=arch, preset="tiny", embedding=hidden, hidden=hidden,
                                         layers=1, dropout=0.0, context=200, train=_train(
                                             batch_size=1, seq_len=200, lr=1e-3, max_steps=1000,
                                             eval_every=100)))
            for label, arch, hidden in [("gru", "gru", 64), ("cnn", "cnn", 64),
                                        ("attention", "attention", 64), ("attention-32", "attention", 32)]
        ),
        notes="Training loss alone flatters models that can copy from their window; compare validation bits per char.",
    ),
    Recipe(
        name="word-gru-paragraph",
        title="Keras word-level GRU on one paragraph",
        reference=("word level, a ten-line paragraph, embedding 64, GRU 128, 100 epochs, then 20 words "
                   "from a two-word prompt; accuracy about 0.3 and loss 2.9 at epoch 39 of 100"),
        corpus="inline:ml-paragraph", prompt="A model",
        runs=(
            RecipeRun("reference", RunSettings(tokenizer="word", arch="gru", preset="tiny", embedding=64,
                                               hidden=128, layers=1, dropout=0.0, val_fraction=0.2,
                                               train=_train(batch_size=8, seq_len=8, lr=1e-3, epochs=100,
                                                            eval_every=10))),
        ),
        notes="With 150 words there is nothing to generalise from: validation loss rises early while "
              "training loss falls, and samples repeat the paragraph.",
    ),
    Recipe(
        name="overfitting-lab",
        title="Overfitting lab: large CNN and GRU on a small subword corpus, then the remedies",
        reference=("Conv1D vs GRU on subword tokens: validation loss rose from 0.29 to 0.84 over 10 epochs "
                   "while training accuracy reached 0.99"),
        corpus="lyrics_public_domain.txt", corpus_chars=30_000, prompt="The ",
        runs=(
            RecipeRun("cnn-large", RunSettings(tokenizer="sentencepiece", vocab_size=500, arch="cnn",
                                               preset="medium", dropout=0.0, train=_train(
                                                   batch_size=16, seq_len=64, lr=2e-3, epochs=60,
                                                   eval_every=20))),
            RecipeRun("gru-large", RunSettings(tokenizer="sentencepiece", vocab_size=500, arch="gru",
                                               preset="medium", dropout=0.0, train=_train(
                                                   batch_size=16, seq_len=64, lr=2e-3, epochs=60,
                                                   eval_every=20))),
            RecipeRun("gru-dropout", RunSettings(tokenizer="sentencepiece", vocab_size=500, arch="gru",
                                                 preset="medium", dropout=0.5, train=_train(
                                                     batch_size=16, seq_len=64, lr=2e-3, epochs=60,
                                                     eval_every=20))),
            RecipeRun("gru-weight-decay", RunSettings(tokenizer="sentencepiece", vocab_size=500, arch="gru",
                                                      preset="medium", dropout=0.0, train=_train(
                                                          batch_size=16, seq_len=64, lr=2e-3, epochs=60,
                                                          eval_every=20, weight_decay=0.5))),
            RecipeRun("gru-early-stopping", RunSettings(tokenizer="sentencepiece", vocab_size=500,
                                                        arch="gru", preset="medium", dropout=0.0,
                                                        train=_train(batch_size=16, seq_len=64, lr=2e-3,
                                                                     epochs=60, eval_every=20,
                                                                     patience=2))),
        ),
        notes="Watch validation turn up while training loss keeps falling; the star marks the best "
              "point, which is what gets saved. 'More data': run the same GRU on the whole file.",
    ),
]}


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"no recipe '{name}'; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


def load_corpus(item: Recipe, data_dir: Optional[Path] = None) -> Corpus:
    """The recipe's text: the shared corpus (or the inline paragraph), lower-cased or cut as the recipe says."""
    if item.corpus.startswith("inline:"):
        corpus = read_text(ML_PARAGRAPH.encode(), name="ml-paragraph.txt", min_chars=2)
    else:
        from_env: str | Path = os.environ.get("TEXTGEN_DATA_DIR", SHARED_DATA)
        directory = Path(data_dir or from_env)
        path = directory / item.corpus
        if not path.is_file():
            raise CorpusError(f"recipe '{item.name}' needs {item.corpus}, which is not in {directory}; "
                              "set TEXTGEN_DATA_DIR to the folder that holds it")
        corpus = read_file(path)
    text = corpus.text[: item.corpus_chars] if item.corpus_chars else corpus.text
    if item.lowercase:
        text = text.lower()
    return Corpus(text=text, encoding=corpus.encoding, name=corpus.name)


def with_time_cap(settings: RunSettings, max_minutes: Optional[float]) -> RunSettings:
    """The same run with at most ``max_minutes`` of training (on a CPU the originals take hours)."""
    if max_minutes is None:
        return settings
    cap = min(max_minutes, settings.train.max_minutes or max_minutes)
    return replace(settings, train=replace(settings.train, max_minutes=cap))


def run_recipe(item: Recipe, out_dir: str | Path, max_minutes: Optional[float] = None,
               labels: Optional[list[str]] = None, callbacks=()) -> list[tuple[RecipeRun, RunResult]]:
    """Train each run of the recipe into ``out_dir/<recipe>/<label>``; returns the results in order."""
    corpus = load_corpus(item)
    chosen = [r for r in item.runs if labels is None or r.label in labels]
    if not chosen:
        raise ConfigError(f"recipe '{item.name}' has no run named {', '.join(labels or [])}; "
                          f"it has {', '.join(r.label for r in item.runs)}")
    results = []
    for run in chosen:
        folder = Path(out_dir) / item.name / run.label
        result = train_model(corpus, with_time_cap(run.settings, max_minutes), folder,
                             callbacks=callbacks, name=f"{item.name}-{run.label}",
                             command=f"python -m textgen_core recipe {item.name} --runs {run.label}")
        results.append((run, result))
        assert result.history.end is not None   # train_model returns a finished run
        if result.history.end.reason == "stopped":  # Ctrl-C (or a stop request) ends the whole recipe
            break
    return results
