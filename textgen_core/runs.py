"""A training run end to end: corpus -> tokenizer -> ids -> model -> Trainer -> model folder.

The CLI and the app's background jobs both call ``train_model``; resuming reads the tokenizer and
model config back from the folder and the optimizer state from its ``checkpoint/`` subfolder.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from . import hub
from .checkpoint import atomic_write_text
from .card import hardware_name, render_card
from .corpus import Corpus
from .data import encode_ids, split_ids
from .errors import ConfigError, TrainingDiverged
from .memory import check_memory
from .models import LanguageModel, ModelConfig, build_model
from .sampling import SamplingOptions, stream_text
from .tokenizers import Tokenizer, load_tokenizer, make_tokenizer
from .training import Event, History, TrainConfig, Trainer, resolve_device

CHECKPOINT_DIR = "checkpoint"


@dataclass
class RunSettings:
    tokenizer: str = "char"              # char | word | sentencepiece
    vocab_size: Optional[int] = None     # word cap / SentencePiece size (None: tokenizer default)
    arch: str = "gru"                    # gru | lstm | cnn | attention
    preset: str = "small"                # tiny | small | medium | large
    embedding: Optional[int] = None      # explicit sizes override the preset's
    hidden: Optional[int] = None
    layers: Optional[int] = None
    dropout: Optional[float] = None
    context: Optional[int] = None
    val_fraction: float = 0.1            # last share of the text held out for validation
    train: TrainConfig = field(default_factory=TrainConfig)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig.from_preset(self.arch, self.preset, vocab_size, embedding=self.embedding,
                                       hidden=self.hidden, layers=self.layers, dropout=self.dropout,
                                       context=self.context)


@dataclass
class RunResult:
    bundle: hub.Bundle
    history: History


def encode_corpus(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The text's ids as one compact tensor, encoded a megabyte at a time (BENCHMARKS.md: scale)."""
    return encode_ids(tokenizer, text)


def chars_per_token(tokenizer: Tokenizer, ids: torch.Tensor) -> float:
    return max(1, len(tokenizer.decode(ids.tolist()))) / max(1, len(ids))


def has_model(folder: Path) -> bool:
    return (folder / hub.CONFIG_FILE).exists() or (folder / CHECKPOINT_DIR).exists()


@dataclass
class PreparedRun:
    """Everything a run needs before ``trainer.fit``: callers may add callbacks that use the model."""
    corpus: Corpus
    settings: RunSettings
    out_dir: Path
    tokenizer: Tokenizer
    model: LanguageModel
    trainer: Trainer
    name: str
    command: Optional[str] = None


def prepare_run(corpus: Corpus, settings: RunSettings, out_dir: str | Path, resume: bool = False,
                name: Optional[str] = None, command: Optional[str] = None) -> PreparedRun:
    """Fit (or reload) the tokenizer, encode, split, build the model and its Trainer."""
    out_dir = Path(out_dir)
    if resume:
        if not (out_dir / CHECKPOINT_DIR).is_dir():
            raise ConfigError(f"nothing to resume in {out_dir}: it has no {CHECKPOINT_DIR}/ folder")
        tokenizer = load_tokenizer(out_dir)
        config = ModelConfig.from_dict(hub.read_json(out_dir / hub.CONFIG_FILE))
    else:
        if out_dir.exists() and has_model(out_dir):
            raise ConfigError(f"{out_dir} already holds a model; resume it or choose another output folder")
        tokenizer = make_tokenizer(settings.tokenizer, settings.vocab_size).fit(corpus.text)
        config = settings.model_config(tokenizer.vocab_size)
    ids = encode_corpus(tokenizer, corpus.text)
    split = split_ids(ids, settings.val_fraction, settings.train.seq_len)
    # the model read from the folder when resuming, not the settings' sizes
    check_memory(config, settings.train.batch_size, settings.train.seq_len,
                 resolve_device(settings.train.validated().device).type)
    torch.manual_seed(settings.train.seed)
    model = build_model(config)
    if not resume:  # tokenizer and config go first, so that a crash mid-run can still be resumed
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(out_dir)
        atomic_write_text(out_dir / hub.CONFIG_FILE, json.dumps(config.to_dict(), indent=2))
    trainer = Trainer(model, split, settings.train, chars_per_token(tokenizer, split.val),
                      checkpoint_dir=out_dir / CHECKPOINT_DIR)
    if resume:
        trainer.resume(out_dir / CHECKPOINT_DIR)
    return PreparedRun(corpus, settings, out_dir, tokenizer, model, trainer, name or out_dir.name, command)


def finish_run(run: PreparedRun, history: History) -> RunResult:
    """Write the model folder (best weights, history, run.json, card) and return it loaded."""
    end, trainer, tokenizer, model = history.end, run.trainer, run.tokenizer, run.model
    if end.best_step is None:
        raise TrainingDiverged(end.message) if end.reason == "diverged" else ConfigError(
            f"training ended before any validation ({end.message}); give it more steps")
    info = {
        "name": run.name,
        "corpus": {"name": run.corpus.name, "chars": len(run.corpus.text), "encoding": run.corpus.encoding},
        "tokenizer": {"type": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "notes": tokenizer.notes},
        "model": model.config.to_dict(),
        "parameters": model.num_parameters(),
        "train_config": asdict(trainer.config),
        "val_fraction": run.settings.val_fraction,
        "chars_per_token": trainer.chars_per_token,
        "steps": end.step,
        "elapsed_s": end.elapsed,
        "best_step": end.best_step,
        "best_val_loss": end.best_val_loss,
        "best_val_bpc": end.best_val_bpc,
        "stop_reason": end.reason,
        "stop_message": end.message,
        "hardware": hardware_name(trainer.device),
        "precision": trainer.precision,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": run.command,
    }
    samples = card_samples(model, tokenizer, trainer.chars_per_token)
    hub.save_folder(run.out_dir, model, tokenizer, history.points, info, render_card(info, samples))
    bundle = hub.Bundle(model, tokenizer, info, history.points, run.out_dir, str(run.out_dir))
    return RunResult(bundle, history)


def train_model(corpus: Corpus, settings: RunSettings, out_dir: str | Path,
                callbacks: tuple[Callable[[Event], None], ...] = (),
                stop_event: Optional[threading.Event] = None, resume: bool = False,
                name: Optional[str] = None, command: Optional[str] = None) -> RunResult:
    """Train (or resume) and write the model folder with the best weights; returns it loaded."""
    run = prepare_run(corpus, settings, out_dir, resume, name, command)
    run.trainer.callbacks.extend(callbacks)
    return finish_run(run, run.trainer.fit(stop_event))


def card_samples(model, tokenizer: Tokenizer, chars_per_token: float, count: int = 3) -> list[str]:
    """``count`` samples of about 300 characters at temperature 0.8, seed 1, for the model card."""
    options = SamplingOptions(length=max(10, int(300 / chars_per_token)), temperature=0.8,
                              num_samples=count, seed=1)
    texts = [""] * count
    for pieces in stream_text(model, tokenizer, "", options):
        texts = [t + p for t, p in zip(texts, pieces)]
    return [t.strip("\n") for t in texts]
