"""A training run end to end: corpus -> tokenizer -> ids -> model -> Trainer -> model folder.

The CLI and the app's background jobs both call ``train_model``; resuming reads the tokenizer and
model config back from the folder and the optimizer state from its ``checkpoint/`` subfolder.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, cast

import torch

from . import checkpoint, hub
from .card import hardware_name, render_card
from .corpus import Corpus
from .corpus_file import FileCorpus
from .data import TokenSplit, encode_ids, split_ids
from .distributed import Distributed, FailedElsewhere
from .errors import ConfigError, TextgenError, TrainingDiverged
from .files import write_failure, write_json
from .memory import check_memory
from .models import LanguageModel, ModelConfig, build_model
from .outdir import (  # noqa: F401
    CHECKPOINT_DIR,
    RUN_FILES,
    FolderContents,
    FolderLock,
    claim,
    inspect_folder,
    remove_own_files,
    remove_temp_files,
)
from .sampling import SamplingOptions, stream_text
from .status import PREVIEW_CHARS, STATUS_FILE, RunRecorder, read_status
from .tokenizers import Tokenizer, load_tokenizer, make_tokenizer
from .tokens import split_token_file, token_file
from .training import Event, History, TrainConfig, Trainer, TrainingEnded, resolve_device


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


def corpus_split(tokenizer: Tokenizer, corpus: "Corpus | FileCorpus", settings: RunSettings) -> TokenSplit:
    """The corpus's ids split for training: a tensor in memory, or for a corpus read in pieces a token
    file (cached) whose windows are read from disk."""
    if isinstance(corpus, Corpus):
        return split_ids(encode_corpus(tokenizer, corpus.text), settings.val_fraction, settings.train.seq_len)
    return split_token_file(token_file(tokenizer, corpus), settings.val_fraction, settings.train.seq_len)


def chars_per_token(tokenizer: Tokenizer, ids: torch.Tensor) -> float:
    return max(1, len(tokenizer.decode(ids.tolist()))) / max(1, len(ids))


@dataclass
class PreparedRun:
    """Everything a run needs before ``trainer.fit``: callers may add callbacks that use the model.

    It holds the output folder's lock from ``prepare_run`` until ``release()``: call it when the
    folder is written (``train_model`` does), or the folder stays refused to other runs until this
    process ends.
    """
    corpus: Corpus | FileCorpus
    settings: RunSettings
    out_dir: Path
    tokenizer: Tokenizer
    model: LanguageModel
    trainer: Trainer
    name: str
    command: Optional[str] = None
    lock: Optional[FolderLock] = None
    notes: list[str] = field(default_factory=list)   # what the preparation decided, for the user
    recorder: Optional[RunRecorder] = None           # keeps status.json and the timeline current

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


# --- what a run is, so that a resume can check it is the same run -----------------------------------
def run_identity(corpus: Corpus | FileCorpus, settings: RunSettings, config: ModelConfig) -> dict:
    return {"corpus": {"name": corpus.name, "chars": corpus.chars, "sha256": corpus.sha256},
            "tokenizer": {"kind": settings.tokenizer, "vocab_size": settings.vocab_size},
            "model": config.to_dict(), "val_fraction": settings.val_fraction}


def _saved_identity(out_dir: Path) -> dict:
    """The identity in the folder's checkpoint; for checkpoints older than identities, what the
    folder itself says (tokenizer, config), without a corpus hash."""
    saved = checkpoint.read_state(out_dir / CHECKPOINT_DIR).get("run")
    if isinstance(saved, dict):
        return saved
    tokenizer = load_tokenizer(out_dir)
    config = hub.read_json(out_dir / hub.CONFIG_FILE)
    return {"tokenizer": {"kind": tokenizer.kind, "vocab_size": None}, "model": config, "val_fraction": None}


def resume_differences(saved: dict, corpus: Corpus | FileCorpus, settings: RunSettings,
                       config: ModelConfig) -> list[str]:
    """What differs between the saved run and the one asked for, in words (empty: the same run).

    Budgets, learning rate, batch and the rest of the training settings may change on a resume;
    the corpus, tokenizer, model and validation split may not.
    """
    differences = []
    old_corpus = saved.get("corpus") if isinstance(saved.get("corpus"), dict) else None
    if old_corpus and old_corpus.get("sha256") != corpus.sha256:
        differences.append(f"the corpus (the run was trained on {old_corpus.get('name')}, "
                           f"{old_corpus.get('chars', 0):,} characters; this is {corpus.name}, "
                           f"{corpus.chars:,} characters)")
    tokenizer = saved.get("tokenizer") or {}
    if tokenizer.get("kind") != settings.tokenizer:
        differences.append(f"the tokenizer ({tokenizer.get('kind')}, now {settings.tokenizer})")
    elif saved.get("corpus") and tokenizer.get("vocab_size") != settings.vocab_size:
        differences.append(f"the vocabulary size ({tokenizer.get('vocab_size') or 'the default'}, now "
                           f"{settings.vocab_size or 'the default'})")
    model = saved.get("model") or {}
    changed = [f"{key} {model.get(key)!r}, now {value!r}" for key, value in config.to_dict().items()
               if key != "vocab_size" and model.get(key) != value]
    if changed:
        differences.append(f"the model ({'; '.join(changed)})")
    old_fraction = saved.get("val_fraction")
    if old_fraction is not None and old_fraction != settings.val_fraction:
        differences.append(f"the validation fraction ({old_fraction:g}, now {settings.val_fraction:g}: the "
                           "validation text would overlap text it was trained on)")
    return differences


def settings_for_resume(out_dir: str | Path, **given) -> RunSettings:
    """The saved run's settings with the explicitly ``given`` RunSettings fields on top (None: not
    given), read the way a new run would read them: a given preset brings its own sizes."""
    out_dir = Path(out_dir)
    _check_resumable(out_dir)
    if not checkpoint.has_checkpoint(out_dir / CHECKPOINT_DIR):  # it will start again: as a new run would
        return RunSettings(**{k: v for k, v in given.items() if v is not None})
    saved = _saved_identity(out_dir)
    model, tokenizer = saved.get("model") or {}, saved.get("tokenizer") or {}
    pick = lambda name, value: given[name] if given.get(name) is not None else value  # noqa: E731
    size_names = ("embedding", "hidden", "layers", "context")
    saved_sizes = {} if given.get("preset") else {k: model.get(k) for k in size_names}
    return RunSettings(
        tokenizer=pick("tokenizer", tokenizer.get("kind", "char")),
        vocab_size=pick("vocab_size", tokenizer.get("vocab_size")),
        arch=pick("arch", model.get("arch", "gru")), preset=pick("preset", "small"),
        **{k: pick(k, saved_sizes.get(k)) for k in size_names},
        dropout=pick("dropout", model.get("dropout")),
        val_fraction=pick("val_fraction", saved.get("val_fraction") or 0.1),
        train=given.get("train") or TrainConfig())


# --- the output folder ------------------------------------------------------------------------
def _check_resumable(out_dir: Path) -> None:
    contents = inspect_folder(out_dir)
    if not contents.exists:
        raise ConfigError(f"nothing to resume: {out_dir} does not exist")
    if not contents.ours:
        raise ConfigError(f"nothing to resume: {out_dir} is not a model folder this project wrote")


def _check_new_target(out_dir: Path, contents: FolderContents, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that holds a model or the user's own files."""
    if overwrite:
        return
    if contents.has_checkpoint:
        raise ConfigError(f"{out_dir} already holds a model; resume it (--resume), replace it (--overwrite) "
                          "or choose another output folder")
    if contents.foreign:
        shown = ", ".join(contents.foreign[:5]) + (f" and {len(contents.foreign) - 5} more"
                                                   if len(contents.foreign) > 5 else "")
        raise ConfigError(f"{out_dir} holds files this project did not write ({shown}); choose a new or empty "
                          "folder, or pass --overwrite to write the model beside them (files of the model's "
                          "names are replaced, nothing else is touched)")


def _reserved_files(lock: Optional[FolderLock]) -> frozenset[str]:
    """What a job that holds ``lock`` already wrote into its folder: its waiting status."""
    return frozenset({STATUS_FILE}) if lock is not None and lock.held else frozenset()


def _take_folder(out_dir: Path, resume: bool, overwrite: bool, lock: Optional[FolderLock] = None) -> FolderLock:
    """Lock the output folder (or use ``lock``, already held on it) and make it ready for the run."""
    # A lock held already is a job's reservation: its status.json says the run waits, and stays until
    # the run's own first status replaces it (without it the folder would vanish from the run lists
    # while the run is prepared).
    keep = _reserved_files(lock)
    if lock is None or not lock.held:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(out_dir, exc) from exc
        lock = FolderLock(out_dir).acquire()
    try:
        contents = inspect_folder(out_dir)   # again, now that no other run can change it
        if resume and not contents.has_checkpoint:
            raise ConfigError(f"the checkpoint in {out_dir} went away while the run was prepared; start again")
        if not resume:
            _check_new_target(out_dir, contents, overwrite)
            remove_own_files(out_dir, contents, keep)
        claim(out_dir, set(RUN_FILES))   # a folder that cannot be written fails here, before training
        remove_temp_files(out_dir)
        checkpoint.remove_stale_units(out_dir / CHECKPOINT_DIR)
        return lock
    except BaseException:
        lock.release()
        raise


def prepare_run(corpus: Corpus | FileCorpus, settings: RunSettings, out_dir: str | Path, resume: bool = False,
                name: Optional[str] = None, command: Optional[str] = None,
                overwrite: bool = False, lock: Optional[FolderLock] = None,
                timeline_chars: int = PREVIEW_CHARS, dist: Optional[Distributed] = None) -> PreparedRun:
    """Fit (or reload) the tokenizer, encode, split and check the memory; then lock the output folder,
    build the model and its Trainer.

    A new run refuses a folder holding a model or files the project did not write, unless
    ``overwrite`` (which replaces the model's files and deletes nothing else); a folder whose run
    stopped before its first checkpoint is started again. A resume refuses a different corpus,
    tokenizer, model or validation split, naming what differs. Nothing is written before every
    check has passed. ``lock``: the folder's lock when the caller already holds it (a job that
    reserved its folder while it waited); ``timeline_chars``: the length of the sample kept at
    every evaluation (0: none). ``dist``: this process's place in a training on several processes:
    rank 0 prepares (and alone writes) the folder, then the other ranks read what it wrote.
    """
    out_dir = Path(out_dir)
    if dist is not None and dist.active:
        return _prepare_distributed(corpus, settings, out_dir, resume, name, command, overwrite, dist)
    return _prepare_main(corpus, settings, out_dir, resume, name, command, overwrite, lock, timeline_chars)


def _prepare_distributed(corpus: Corpus | FileCorpus, settings: RunSettings, out_dir: Path, resume: bool,
                         name: Optional[str], command: Optional[str], overwrite: bool,
                         dist: Distributed) -> PreparedRun:
    if dist.is_main:
        try:
            run = _prepare_main(corpus, settings, out_dir, resume, name, command, overwrite, dist=dist)
        except BaseException as exc:
            dist.share(("error", str(exc)))
            raise
        dist.share(("ok", run.trainer.step > 0))
        return run
    outcome, resumed = dist.share(None)
    if outcome != "ok":
        raise FailedElsewhere(resumed)
    settings.train.validated()
    tokenizer = load_tokenizer(out_dir)   # what rank 0 fitted and saved, or the saved run's
    config = ModelConfig.from_dict(hub.read_json(out_dir / hub.CONFIG_FILE))
    split = corpus_split(tokenizer, corpus, settings)
    check_memory(config, dist.split_batch(settings.train.batch_size), settings.train.seq_len,
                 resolve_device(settings.train.device).type)
    torch.manual_seed(settings.train.seed)
    model = build_model(config)
    trainer = Trainer(model, split, settings.train, chars_per_token(tokenizer, split.val), dist=dist,
                      failure_dir=out_dir)
    if resumed:
        trainer.resume(out_dir / CHECKPOINT_DIR)
    return PreparedRun(corpus, settings, out_dir, tokenizer, model, trainer, name or out_dir.name, command)


def _prepare_main(corpus: Corpus | FileCorpus, settings: RunSettings, out_dir: Path, resume: bool, name: Optional[str],
                  command: Optional[str], overwrite: bool, lock: Optional[FolderLock] = None,
                  timeline_chars: int = PREVIEW_CHARS, dist: Optional[Distributed] = None) -> PreparedRun:
    settings.train.validated()
    notes: list[str] = []
    if resume:
        _check_resumable(out_dir)
        if not checkpoint.has_checkpoint(out_dir / CHECKPOINT_DIR):
            notes.append(f"nothing to resume in {out_dir}: the run stopped before its first checkpoint; "
                         "training from the start")
            resume = False
    else:
        contents = inspect_folder(out_dir)
        _check_new_target(out_dir, contents, overwrite)
        if contents.ours - _reserved_files(lock) and not contents.has_checkpoint:
            notes.append(f"{out_dir} held a run that stopped before its first checkpoint; starting it again")
    tokenizer, config = (_saved_run(corpus, settings, out_dir, notes) if resume else
                         _new_run(corpus, settings))
    split = corpus_split(tokenizer, corpus, settings)
    # the model read from the folder when resuming, not the settings' sizes
    check_memory(config, (dist or Distributed()).split_batch(settings.train.batch_size), settings.train.seq_len,
                 resolve_device(settings.train.device).type)
    lock = _take_folder(out_dir, resume, overwrite, lock)
    try:
        torch.manual_seed(settings.train.seed)
        model = build_model(config)
        if not resume:  # tokenizer and config go first: the weights written at each new best need them
            tokenizer.save(out_dir)
            write_json(out_dir / hub.CONFIG_FILE, config.to_dict())
        trainer = Trainer(model, split, settings.train, chars_per_token(tokenizer, split.val),
                          checkpoint_dir=out_dir / CHECKPOINT_DIR, best_weights_path=out_dir / hub.WEIGHTS_FILE,
                          identity=run_identity(corpus, settings, config), dist=dist, failure_dir=out_dir)
        if resume:
            trainer.resume(out_dir / CHECKPOINT_DIR)
        run = PreparedRun(corpus, settings, out_dir, tokenizer, model, trainer, name or out_dir.name, command,
                          lock, notes)
        run.recorder = RunRecorder(run, timeline_chars)
        trainer.callbacks.insert(0, run.recorder)
        run.recorder.started()
    except BaseException:
        lock.release()
        raise
    return run


def _new_run(corpus: Corpus | FileCorpus, settings: RunSettings) -> tuple[Tokenizer, ModelConfig]:
    tokenizer = make_tokenizer(settings.tokenizer, settings.vocab_size)
    tokenizer = tokenizer.fit(corpus.text) if isinstance(corpus, Corpus) else tokenizer.fit_pieces(corpus.pieces())
    return tokenizer, settings.model_config(tokenizer.vocab_size)


def _saved_run(corpus: Corpus | FileCorpus, settings: RunSettings, out_dir: Path,
               notes: list[str]) -> tuple[Tokenizer, ModelConfig]:
    """The saved tokenizer and model config, once the settings are known to be the saved run's."""
    saved = _saved_identity(out_dir)
    tokenizer = load_tokenizer(out_dir)
    config = ModelConfig.from_dict(hub.read_json(out_dir / hub.CONFIG_FILE))
    differences = resume_differences(saved, corpus, settings, settings.model_config(tokenizer.vocab_size))
    if differences:
        raise ConfigError(f"cannot resume {out_dir}: these settings differ from the saved run's: "
                          f"{'; '.join(differences)}. Resume with the run's own settings, or start a new "
                          "run in another folder")
    if "corpus" not in saved:
        notes.append("this checkpoint predates corpus fingerprints: make sure the text is the one it "
                     "was trained on")
    return tokenizer, config


def finish_run(run: PreparedRun, history: History) -> RunResult:
    """Write the model folder (best weights, history, run.json, card) and return it loaded."""
    # a history that fit() returned: it ends with its TrainingEnded
    end, trainer, tokenizer, model = cast(TrainingEnded, history.end), run.trainer, run.tokenizer, run.model
    if end.best_step is None:
        error = TrainingDiverged(end.message) if end.reason == "diverged" else ConfigError(
            f"training ended before any validation ({end.message}); give it more steps")
        if run.recorder is not None:
            run.recorder.ended(end.reason if end.reason == "stopped" else "error", str(error), end.step, end.elapsed)
        raise error
    info = {
        "name": run.name,
        "corpus": {"name": run.corpus.name, "chars": run.corpus.chars, "encoding": run.corpus.encoding,
                   "sha256": run.corpus.sha256},
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
        "hardware": (f"{trainer.dist.world} x " if trainer.dist.active else "")
                    + hardware_name(trainer.device, trainer.threads),
        "precision": trainer.precision,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": run.command,
    }
    if trainer.dist.active:   # --batch-size is the global batch; each process trained on its share
        info["distributed"] = {"processes": trainer.dist.world, "backend": trainer.dist.backend,
                               "batch_per_process": trainer.local_batch}
    samples = card_samples(model, tokenizer, trainer.chars_per_token)
    hub.save_folder(run.out_dir, model, tokenizer, history.points, info, render_card(info, samples))
    if run.recorder is not None:   # last: a run is "finished" only once its folder is whole
        run.recorder.ended(end.reason, end.message, end.step, end.elapsed)
    bundle = hub.Bundle(model, tokenizer, info, history.points, run.out_dir, str(run.out_dir))
    return RunResult(bundle, history)


def execute(run: PreparedRun, stop_event: threading.Event, interrupts: Optional["Interrupts"] = None,
            before_finish: Optional[Callable[[History], History]] = None) -> RunResult:
    """Train a prepared run and write its folder; its status says how it ended, a failure included.

    ``interrupts``: the signals block it runs in (no signal cuts the final writes short);
    ``before_finish``: a last word on the history before it is written (e.g. why it was stopped).
    """
    if run.recorder is not None:
        run.recorder.stop_event = stop_event
    try:
        history = run.trainer.fit(stop_event)
        if interrupts is not None:
            interrupts.saving = True
        if before_finish is not None:
            history = before_finish(history)
        return finish_run(run, history)
    except BaseException as exc:
        # the end already written (finish_run says why nothing was saved) stays; otherwise say how it ended
        if run.recorder is not None and read_status(run.out_dir).get("status") == "running":
            if isinstance(exc, KeyboardInterrupt):
                run.recorder.write("stopped", "interrupted while the folder was being written", "stopped")
            else:
                run.recorder.failed(str(exc) if isinstance(exc, TextgenError) else f"{type(exc).__name__}: {exc}")
        raise


# --- interrupts -------------------------------------------------------------------------------
INTERRUPT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class Interrupts:
    """The signals an ``interrupts_stop`` block received; set ``saving`` once training has ended, so
    that a further signal no longer cuts the last writes short."""
    received: list[int] = field(default_factory=list)
    saving: bool = False


@contextlib.contextmanager
def interrupts_stop(stop_event: threading.Event, on_first: Optional[Callable[[int], None]] = None):
    """Within the block, Ctrl-C, SIGTERM and SIGHUP ask the run to stop after the current step (it then
    keeps its best weights and writes its folder); a second one during training stops at once
    (KeyboardInterrupt, which the Trainer also turns into a stop; the best weights are on disk
    already), and once ``saving`` is set, signals wait for the folder to be written. Yields the
    ``Interrupts``. Outside the main thread, where Python cannot take signals, it changes nothing."""
    interrupts = Interrupts()
    if threading.current_thread() is not threading.main_thread():
        yield interrupts
        return

    def handler(signum: int, frame) -> None:
        first = not interrupts.received
        interrupts.received.append(signum)
        if first:
            stop_event.set()
            if on_first is not None:
                on_first(signum)
        elif not interrupts.saving:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in INTERRUPT_SIGNALS}
    try:
        yield interrupts
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train_model(corpus: Corpus, settings: RunSettings, out_dir: str | Path,
                callbacks: tuple[Callable[[Event], None], ...] = (),
                stop_event: Optional[threading.Event] = None, resume: bool = False,
                name: Optional[str] = None, command: Optional[str] = None,
                overwrite: bool = False) -> RunResult:
    """Train (or resume) and write the model folder with the best weights; returns it loaded.

    Called from the main thread, Ctrl-C (or SIGTERM) stops the run after the current step and
    saves it, as in the command line; ``stop_event`` stops it from another thread.
    """
    stop_event = stop_event or threading.Event()
    run = prepare_run(corpus, settings, out_dir, resume, name, command, overwrite)
    try:
        run.trainer.callbacks.extend(callbacks)
        with interrupts_stop(stop_event) as interrupts:
            return execute(run, stop_event, interrupts)
    finally:
        run.release()


def card_samples(model, tokenizer: Tokenizer, chars_per_token: float, count: int = 3) -> list[str]:
    """``count`` samples of about 300 characters at temperature 0.8, seed 1, for the model card."""
    options = SamplingOptions(length=max(10, int(300 / chars_per_token)), temperature=0.8,
                              num_samples=count, seed=1)
    texts = [""] * count
    for pieces in stream_text(model, tokenizer, "", options):
        texts = [t + p for t, p in zip(texts, pieces)]
    return [t.strip("\n") for t in texts]
