"""Trainer: the loop, schedule, evaluation, early stopping, best weights and resume.

It never prints and knows no UI: progress leaves as plain dataclass events passed to callbacks.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Optional, cast

import torch
import torch.nn.functional as F

from . import checkpoint, gru_layer
from .data import StreamWindows, TokenSplit, random_windows
from .devices import resolve_precision
from .distributed import Distributed, is_peer_failure, note_failure, take_failure_note
from .errors import ConfigError, ModelFolderError
from .evaluation import autocast_for, bits_per_char, total_nats
from .memory import is_out_of_memory
from .models import LanguageModel, State
from .models.base import map_state, state_leaves


@dataclass
class TrainConfig:
    batch_size: int = 64               # windows per optimizer step
    seq_len: int = 128                 # tokens per window (backpropagation length)
    carry_state: bool = False          # each batch row reads on through one stream of the text, the model's
                                       # state carried between steps; False: random windows, each from no context
    lr: float = 3e-3                   # peak learning rate for AdamW
    weight_decay: float = 0.01         # decoupled weight decay, matrices and embeddings only
    warmup_steps: int = 50             # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.1          # floor of the cosine schedule, as a share of lr
    grad_clip: float = 1.0             # max global gradient norm (0 disables clipping)
    max_steps: Optional[int] = None    # budget in optimizer steps (counted over resumes)
    epochs: Optional[float] = None     # budget in passes over the training tokens
    max_minutes: Optional[float] = None  # budget in wall-clock minutes (counted over resumes)
    eval_every: int = 100              # steps between validation passes
    log_every: int = 10                # steps between train-loss reports (read without waiting on a GPU)
    patience: Optional[int] = None     # stop after this many evaluations without improvement
    eval_streams: int = 64             # parallel streams the validation split is read in
    device: str = "auto"               # "auto" (CUDA when present), "cpu" or "cuda"
    precision: str = "auto"            # "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32", "bf16"
    cpu_threads: Optional[int] = None  # torch threads while training on the CPU (None: torch's default)
    seed: int = 0                      # fixes batches and dropout; with the model seed, the run

    def validated(self) -> "TrainConfig":
        def check(name: str, ok: bool, rule: str) -> None:
            if not ok:
                raise ConfigError(f"{name.replace('_', ' ')} {rule} (got {getattr(self, name)!r})")

        for name in ("batch_size", "seq_len", "eval_every", "log_every", "eval_streams"):
            check(name, isinstance(getattr(self, name), int) and 1 <= getattr(self, name) <= 1_000_000,
                  "must be a whole number from 1 to 1000000")
        check("lr", isinstance(self.lr, (int, float)) and 0 < self.lr <= 10, "must be above 0 and at most 10")
        check("weight_decay", 0 <= self.weight_decay <= 10, "must be from 0 to 10")
        check("warmup_steps", self.warmup_steps >= 0, "must not be negative")
        check("grad_clip", self.grad_clip >= 0, "must not be negative")
        check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "must be from 0 to 1")
        check("max_steps", self.max_steps is None or self.max_steps >= 1, "must be at least 1")
        check("epochs", self.epochs is None or self.epochs > 0, "must be above 0")
        check("max_minutes", self.max_minutes is None or self.max_minutes > 0, "must be above 0")
        check("patience", self.patience is None or self.patience >= 1, "must be at least 1")
        check("device", self.device in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda")
        check("precision", self.precision in ("auto", "fp32", "bf16"), "must be auto, fp32 or bf16")
        check("cpu_threads",
              self.cpu_threads is None or (isinstance(self.cpu_threads, int) and 1 <= self.cpu_threads <= 1024),
              "must be a whole number from 1 to 1024")
        check("carry_state", isinstance(self.carry_state, bool), "must be true or false")
        check("seed", isinstance(self.seed, int) and -2**63 <= self.seed < 2**64, "must be a 64-bit integer")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but no CUDA GPU is available; use auto or cpu")
        if self.max_steps is None and self.epochs is None and self.max_minutes is None:
            self.max_steps = 1000
        return self

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def release_memory(device: torch.device) -> None:
    """Give cached GPU memory back after an out-of-memory error so that the app keeps working."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrainProgress:
    """Every ``log_every`` steps: the mean training loss since the last report."""
    step: int
    epoch: float
    train_loss: float
    lr: float
    tokens_per_s: float
    elapsed: float       # wall seconds of this run, resumes included
    progress: float      # share of the budget used, 0..1
    kind: str = "train"


@dataclass
class EvalResult:
    """Every ``eval_every`` steps and at the end: a full pass over the validation split."""
    step: int
    epoch: float
    train_loss: float    # mean training loss since the previous evaluation
    val_loss: float      # nats per token
    val_bpc: float       # bits per character
    lr: float
    tokens_per_s: float
    elapsed: float
    progress: float
    is_best: bool
    best_val_loss: float
    kind: str = "eval"


@dataclass
class TrainingEnded:
    step: int
    reason: str          # max_steps | epochs | time | early_stopping | stopped | diverged | out_of_memory
    message: str
    best_step: Optional[int]
    best_val_loss: Optional[float]
    best_val_bpc: Optional[float]
    elapsed: float
    kind: str = "end"


Event = TrainProgress | EvalResult | TrainingEnded


@dataclass
class History:
    points: list[dict] = field(default_factory=list)   # TrainProgress / EvalResult as dicts
    end: Optional[TrainingEnded] = None

    @property
    def evals(self) -> list[dict]:
        return [p for p in self.points if p["kind"] == "eval"]


@dataclass
class ClosedWindow:
    """The summed loss of a window of training steps, on its way to the host with its progress report.

    On a GPU the sum is copied into pinned memory without waiting, and an event marks when it has
    landed: the loop reads it later instead of stalling the GPU's queue of work with ``.item()``.
    """
    progress: TrainProgress                 # the report, its train_loss filled in when read
    steps: int                              # training steps in the window
    loss_sum: torch.Tensor                  # () on the host
    landed: Optional["torch.cuda.Event"]    # recorded after the copy; None: already on the host

    @classmethod
    def close(cls, loss_sum: torch.Tensor, steps: int, progress: TrainProgress) -> "ClosedWindow":
        if loss_sum.device.type != "cuda":
            return cls(progress, steps, loss_sum.clone(), None)
        host = torch.empty((), dtype=loss_sum.dtype, pin_memory=True)
        host.copy_(loss_sum, non_blocking=True)
        landed = torch.cuda.Event()
        landed.record()
        return cls(progress, steps, host, landed)

    def ready(self) -> bool:
        return self.landed is None or self.landed.query()

    def mean_loss(self) -> float:
        if self.landed is not None:
            self.landed.synchronize()
        return self.loss_sum.item() / self.steps


class Trainer:
    def __init__(self, model: LanguageModel, split: TokenSplit, config: TrainConfig,
                 chars_per_token: float = 1.0, callbacks: tuple[Callable[[Event], None], ...] = (),
                 checkpoint_dir: str | Path | None = None, best_weights_path: str | Path | None = None,
                 identity: Optional[dict] = None, dist: Optional[Distributed] = None,
                 failure_dir: str | Path | None = None) -> None:
        """``checkpoint_dir``: where resume checkpoints go at every evaluation; ``best_weights_path``:
        a file kept current with the best weights at every new best (the model folder's weights, so
        that a run killed at any moment leaves a model to sample from); ``identity``: what the run is
        (corpus hash, tokenizer, model, split), stored in every checkpoint so a resume can check it;
        ``dist``: this process's place in a training on several processes (``distributed.py``; only
        rank 0 should get a checkpoint folder and weights path); ``failure_dir``: where a rank that
        fails leaves its reason for rank 0."""
        self.config = config.validated()
        self.dist = dist or Distributed()
        self.local_batch = self.dist.split_batch(config.batch_size)   # this rank's share of every batch
        self.failure_dir = Path(failure_dir) if failure_dir else None
        self.device = self.dist.device(resolve_device(config.device))
        self.precision = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)
        # DDP over the model with several ranks, made when training starts: wrapping is a collective,
        # and the ranks reach fit() together but may prepare at different speeds
        self.step_model: Optional[torch.nn.Module] = None if self.dist.active else self.model
        self.train_ids = split.train.to(self.device)
        self.val_ids = split.val.to(self.device)
        self.chars_per_token = chars_per_token
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.best_weights_path = Path(best_weights_path) if best_weights_path else None
        self.identity = identity
        # the threads this run trains on: the configured count, else torch's setting now
        self.threads = (config.cpu_threads or torch.get_num_threads()) if self.device.type == "cpu" else None
        self.optimizer = self._make_optimizer()
        self.generator = torch.Generator().manual_seed(config.seed)
        # carry_state: the batches, one stream of the text per row (all ranks' rows), and the model's state
        # after the last step's windows (detached: backpropagation stops at the window's start)
        self.streams = StreamWindows(self.train_ids, config.batch_size, config.seq_len, self.generator,
                                     part=(self.dist.rank, self.dist.world)) if config.carry_state else None
        self.carried: State = None
        torch.manual_seed(config.seed + self.dist.rank)  # dropout masks: each rank its own
        self.tokens_per_step = config.batch_size * config.seq_len
        self.total_steps = self._total_steps()
        self.step = 0
        self.elapsed_before = 0.0       # seconds spent in earlier sessions of this run
        self.history = History()
        self.best_val_loss = math.inf
        self.best_step: Optional[int] = None
        self.best_state: Optional[dict[str, torch.Tensor]] = None
        self.evals_since_best = 0
        self._since_eval_loss, self._since_eval_steps = 0.0, 0   # training loss read since the last evaluation
        # A loss this far above uniform guessing (ln V) means the weights blew up, even if finite.
        self.divergence_limit = 2 * math.log(model.config.vocab_size) + 1
        self.diverged_loss = math.nan
        self.peer_failure: Optional[str] = None   # what a failed rank said, for the end message

    # --- set-up ------------------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": self.config.weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # fused: one pass over each parameter (on a CPU too: 0.8 against 2.4 ms a step for a GRU 2x256 on one core)
        fused = self.device.type in ("cuda", "cpu")
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.99), fused=fused)

    def _total_steps(self) -> Optional[int]:
        budgets = []
        if self.config.max_steps is not None:
            budgets.append(self.config.max_steps)
        if self.config.epochs is not None:
            budgets.append(math.ceil(self.config.epochs * len(self.train_ids) / self.tokens_per_step))
        return min(budgets) if budgets else None

    # --- schedule ----------------------------------------------------------------------------
    def _progress(self, elapsed: float) -> float:
        shares = []
        if self.total_steps:
            shares.append(self.step / self.total_steps)
        if self.config.max_minutes:
            shares.append(elapsed / (60 * self.config.max_minutes))
        return min(1.0, max(shares)) if shares else 0.0

    def _lr(self, progress: float) -> float:
        cfg = self.config
        warmup = min(cfg.warmup_steps, (self.total_steps or cfg.warmup_steps * 10) // 10)
        if self.step < warmup:
            return cfg.lr * (self.step + 1) / warmup
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)

    def _budget_reason(self, elapsed: float) -> Optional[str]:
        if self.total_steps is not None and self.step >= self.total_steps:
            return "max_steps" if self.total_steps == self.config.max_steps else "epochs"
        if self.config.max_minutes and elapsed >= 60 * self.config.max_minutes:
            return "time"
        return None

    # --- the loop ----------------------------------------------------------------------------
    def fit(self, stop_event: Optional[threading.Event] = None) -> History:
        """Train until a budget, early stopping, divergence, out of memory or ``stop_event`` ends it."""
        threads = self.config.cpu_threads if self.device.type == "cpu" else None
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)  # this thread's and new threads' setting; set back at the end
        try:
            return self._fit(stop_event)
        finally:
            if threads:
                torch.set_num_threads(before)
            if self.device.type == "cpu":
                gru_layer.release_buffers()   # the GRU loop's buffers, kept from step to step

    def _fit(self, stop_event: Optional[threading.Event]) -> History:
        if self.step_model is None:
            self.step_model = self.dist.wrap(self.model, self.device)
        start = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - start  # noqa: E731
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        self._since_eval_loss, self._since_eval_steps = 0.0, 0
        pending: deque[ClosedWindow] = deque()    # closed log windows whose losses are not read yet
        last_eval_step = self.step if self.history.evals else -1
        try:
            reason = self._loop(stop_event, elapsed, loss_sum, pending, last_eval_step)
        except RuntimeError as exc:
            if not (self.dist.active and is_peer_failure(exc)):
                raise
            self.dist.broken = True   # another rank is gone: end here, with the last checkpoint kept
            note = take_failure_note(self.failure_dir) if self.dist.is_main else None
            self.peer_failure = note.get("message") if isinstance(note, dict) else None
            return self._finish("peer_failed", elapsed())
        except KeyboardInterrupt:
            # An interrupt that was not turned into a stop request (a second Ctrl-C, or one outside the
            # main thread's handler) may land mid-step: the weights then are not a state to evaluate or
            # checkpoint, so the run ends with the best weights kept and the last checkpoint as it is.
            return self._finish("stopped", elapsed())
        return self._finish(reason, elapsed())

    def _loop(self, stop_event: Optional[threading.Event], elapsed: Callable[[], float], loss_sum: torch.Tensor,
              pending: "deque[ClosedWindow]", last_eval_step: int) -> str:
        cfg = self.config
        window_start, window_steps, lr, tokens_per_s = time.perf_counter(), 0, cfg.lr, math.nan
        reason = None
        while reason is None:
            reason = self._stop_reason(stop_event, elapsed())
            if reason is not None:
                break
            lr = self._lr(self._progress(elapsed()))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            try:
                loss_sum += self._train_step()
            except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
                if not is_out_of_memory(exc):
                    raise
                if self.dist.active:   # the other ranks learn of it when this process leaves
                    self.dist.broken = True
                    note_failure(self.failure_dir, self.dist.rank, self._end_message("out_of_memory", None))
                self.optimizer.zero_grad(set_to_none=True)
                self.carried = None
                release_memory(self.device)
                reason = "out_of_memory"
                break
            self.step += 1
            window_steps += 1
            if self.step % cfg.log_every and self.step % cfg.eval_every:
                continue
            tokens_per_s = window_steps * self.tokens_per_step / (time.perf_counter() - window_start)
            self.dist.mean_(loss_sum)   # the loss over every rank's share of the batches
            pending.append(ClosedWindow.close(loss_sum, window_steps, TrainProgress(
                self.step, self._epoch(), math.nan, lr, tokens_per_s, elapsed(), self._progress(elapsed()))))
            loss_sum.zero_()     # after the copy on the device's stream: the copy sees this window's sum
            window_steps = 0
            at_eval = self.step % cfg.eval_every == 0
            reason = self._report_windows(pending, wait_all=at_eval)
            if reason is None and at_eval:
                reason = self._evaluate(self._since_eval_loss / self._since_eval_steps, lr, tokens_per_s,
                                        elapsed(), self._progress(elapsed()))
                last_eval_step = self.step
                self._since_eval_loss, self._since_eval_steps = 0.0, 0
            window_start = time.perf_counter()
        if reason != "diverged":
            reason = self._report_windows(pending, wait_all=True) or reason
        if reason not in ("diverged", "out_of_memory") and last_eval_step != self.step and self.step > 0:
            steps = self._since_eval_steps
            train_loss = self._since_eval_loss / steps if steps else math.nan
            self._evaluate(train_loss, lr, tokens_per_s, elapsed(), self._progress(elapsed()))
        return reason

    def _stop_reason(self, stop_event: Optional[threading.Event], elapsed: float) -> Optional[str]:
        """Why training stops before the next step, if it does; with several ranks, all agree (one
        small collective a step): a step or epoch budget is the same everywhere, the time budget is
        rank 0's clock, and a stop request (Ctrl-C, SIGTERM) on any rank stops them all."""
        reason = self._budget_reason(elapsed)
        if not self.dist.active:
            if reason is None and stop_event is not None and stop_event.is_set():
                reason = "stopped"
            return reason
        codes = {None: 0, "stopped": 1, "time": 2, "max_steps": 3, "epochs": 3}
        code = codes[reason] if (reason != "time" or self.dist.is_main) else 0
        if stop_event is not None and stop_event.is_set():
            code = max(code, 1)
        agreed = self.dist.agree_max(code, self.device)
        return reason if agreed == 3 else {0: None, 1: "stopped", 2: "time"}[agreed]

    def _report_windows(self, pending: "deque[ClosedWindow]", wait_all: bool) -> Optional[str]:
        """Emit the progress of closed windows whose losses have reached the host, oldest first.

        On a GPU the newest window is left to arrive while training goes on, unless ``wait_all``
        (before an evaluation and at the end); waiting for an older one only waits until the GPU
        has done that window's steps, so the queue of work already sent to it is never drained.
        Returns "diverged" when a window's mean loss shows the weights blew up.
        """
        while pending and (wait_all or len(pending) > 1 or pending[0].ready()):
            window = pending.popleft()
            mean_loss = window.mean_loss()
            if not math.isfinite(mean_loss) or mean_loss > self.divergence_limit:
                self.diverged_loss = mean_loss
                pending.clear()
                return "diverged"
            self._since_eval_loss += mean_loss * window.steps
            self._since_eval_steps += window.steps
            window.progress.train_loss = mean_loss
            self._emit(window.progress)
        return None

    def _train_step(self) -> torch.Tensor:
        cfg = self.config
        if self.streams is None:
            inputs, targets = random_windows(self.train_ids, cfg.batch_size, cfg.seq_len, self.generator,
                                             part=(self.dist.rank, self.dist.world))
            state = None
        else:
            inputs, targets, new_pass = self.streams.next()
            state = None if new_pass else self.carried
        if inputs.device != self.device:   # windows read from a token file on disk
            inputs, targets = inputs.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
        with autocast_for(self.device, self.precision):
            logits, state = cast(torch.nn.Module, self.step_model)(inputs, state)   # _fit made it before the loop
        if self.streams is not None:
            self.carried = map_state(torch.Tensor.detach, state)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def _epoch(self) -> float:
        return self.step * self.tokens_per_step / len(self.train_ids)

    def _evaluate(self, train_loss: float, lr: float, tokens_per_s: float, elapsed: float,
                  progress: float) -> Optional[str]:
        """One validation pass (rank 0's, shared with the others); returns "early_stopping" when
        patience has run out."""
        val_loss = None
        if self.dist.is_main:
            nats, count = total_nats(self.model, self.val_ids, self.config.seq_len,
                                     self.config.eval_streams, self.precision)
            val_loss = nats / count
        val_loss = self.dist.share(val_loss)
        is_best = val_loss < self.best_val_loss
        if is_best:
            self.best_val_loss, self.best_step, self.evals_since_best = val_loss, self.step, 0
            if self.dist.is_main:   # only rank 0 writes weights
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        else:
            self.evals_since_best += 1
        self._emit(EvalResult(self.step, self._epoch(), train_loss, val_loss,
                              bits_per_char(val_loss, self.chars_per_token), lr, tokens_per_s,
                              elapsed, progress, is_best, self.best_val_loss))
        if self.checkpoint_dir is not None:
            self.save_checkpoint(elapsed, save_best=is_best)
        if is_best and self.best_weights_path is not None:  # after the checkpoint, which resumes it
            # set just above: only rank 0, which keeps the best weights, has a best_weights_path
            checkpoint.save_tensors(self.best_weights_path, cast(dict[str, torch.Tensor], self.best_state))
        patience = self.config.patience
        return "early_stopping" if patience and self.evals_since_best >= patience else None

    def _emit(self, event: Event) -> None:
        if not isinstance(event, TrainingEnded):
            self.history.points.append(asdict(event))
        for callback in self.callbacks:
            callback(event)

    def _finish(self, reason: str, elapsed: float) -> History:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        best_bpc = None if self.best_step is None else bits_per_char(self.best_val_loss, self.chars_per_token)
        message = self._end_message(reason, best_bpc)
        end = TrainingEnded(self.step, reason, message, self.best_step,
                            None if self.best_step is None else self.best_val_loss, best_bpc, elapsed)
        self.history.end = end
        self.elapsed_before = elapsed
        self._emit(end)
        return self.history

    def _end_message(self, reason: str, best_bpc: Optional[float]) -> str:
        best = ("no validation result yet" if self.best_step is None else
                f"best validation loss {self.best_val_loss:.4f} nats/token ({best_bpc:.3f} bits/char) "
                f"at step {self.best_step}")
        return {
            "max_steps": f"reached the step budget ({self.total_steps} steps); {best}",
            "epochs": f"reached the epoch budget ({self.config.epochs} epochs, {self.total_steps} steps); {best}",
            "time": f"reached the time budget ({self.config.max_minutes} min) at step {self.step}; {best}",
            "early_stopping": (f"early stopping: validation loss did not improve in {self.config.patience} "
                               f"evaluations; {best}"),
            "stopped": f"stopped by request at step {self.step}; {best}",
            "out_of_memory": (f"ran out of {'GPU ' if self.device.type == 'cuda' else ''}memory at step "
                              f"{self.step} with batches of {self.config.batch_size} x {self.config.seq_len} "
                              f"tokens; {best}. Lower the batch size, sequence length or model size"
                              f"{', or train on the CPU' if self.device.type == 'cuda' else ''}"),
            "peer_failed": (f"another process of this training ended at step {self.step} ("
                            f"{self.peer_failure or 'it was killed or lost its connection'}); {best}. Its last "
                            "checkpoint is kept: resume it with --resume, with any number of processes"),
            "diverged": (f"training diverged at step {self.step} (loss {self.diverged_loss:.4g}, worse than "
                         f"uniform guessing at {math.log(self.model.config.vocab_size):.2f}); "
                         f"{'kept the best weights: ' + best if self.best_step is not None else 'nothing was kept'}. "
                         f"Lower the learning rate (now {self.config.lr:g})"),
        }[reason]

    # --- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(self, elapsed: float, save_best: bool) -> None:
        folder = cast(Path, self.checkpoint_dir)   # called only for a trainer with a checkpoint folder
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        optim_tensors, optim_scalars = checkpoint.optimizer_to_flat(self.optimizer.state_dict())
        tensors.update(optim_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.batches"] = self.generator.get_state()
        if torch.cuda.is_available():
            tensors["rng.cuda"] = torch.cuda.get_rng_state()
        if self.carried is not None and not self.dist.active:   # several ranks: each holds only its rows
            tensors.update({f"carried.{i}": t for i, t in enumerate(state_leaves(self.carried))})
        checkpoint.write_resume(folder, tensors, {
            "step": self.step, "elapsed": elapsed, "optimizer": optim_scalars,
            "best_val_loss": self.best_val_loss if self.best_step is not None else None,
            "best_step": self.best_step, "history": self.history.points,
            "stream_position": self.streams.position if self.streams else None,
            "train_config": asdict(self.config), "run": self.identity,
        }, best=self.best_state, best_changed=save_best)

    def resume(self, folder: str | Path) -> None:
        """Continue from a checkpoint folder: weights, optimizer, step, RNG, history, best so far."""
        folder = Path(folder)
        tensors, state, best = checkpoint.read_resume(folder)
        missing = [name for name in ("rng.torch", "rng.batches") if name not in tensors]
        if missing:
            raise ModelFolderError(f"the checkpoint in {folder} lacks {', '.join(missing)}; it is damaged: "
                                   "start the run again (--overwrite)")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            self.optimizer.load_state_dict(checkpoint.optimizer_from_flat(tensors, state["optimizer"]))
            if best is not None:
                _check_fits(self.model, best)  # the best weights must fit the model as well
            torch.set_rng_state(tensors["rng.torch"])
            self.generator.set_state(tensors["rng.batches"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ModelFolderError(f"the checkpoint in {folder} does not fit this model and optimizer "
                                   f"({str(exc).splitlines()[0][:200]}); start the run again (--overwrite)") from exc
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        self.step, self.elapsed_before = state["step"], float(state["elapsed"])
        if self.dist.rank:   # every rank its own dropout masks, also after a resume
            torch.manual_seed(self.config.seed + self.dist.rank + self.step)
        self.history = History(points=state["history"])
        if state["best_step"] is not None:
            self.best_step, self.best_val_loss = state["best_step"], state["best_val_loss"]
            self.best_state = best
        self.evals_since_best = 0  # a resumed run gets its full patience again
        if self.streams is not None:
            self._resume_streams(self.streams, state.get("stream_position"), tensors)

    def _resume_streams(self, streams: StreamWindows, position: Optional[int],
                        tensors: dict[str, torch.Tensor]) -> None:
        """Read on where the checkpointed run was in its streams, with its carried state where the
        checkpoint has one for every row (one process wrote it and one resumes it; else from no context).
        A checkpoint without a stream position, or with one past these streams' end, starts a new pass."""
        if not isinstance(position, int) or not 0 <= position < streams.stream_len:
            return
        streams.position = position
        template = self.model.init_state(self.local_batch, self.device)
        leaves = [tensors.get(f"carried.{i}") for i in range(len(state_leaves(template)))]
        if self.dist.active or any(t is None for t in leaves) or f"carried.{len(leaves)}" in tensors:
            return
        saved = cast(list[torch.Tensor], leaves)
        # the same sizes as a fresh state's (an attention cache's length, 0 there, may be any); a changed
        # batch size makes other streams
        if all(t.dim() == want.dim() and all(got == size for got, size in zip(t.shape, want.shape) if size)
               for t, want in zip(saved, state_leaves(template))):
            leaves_left = iter(saved)
            self.carried = map_state(lambda _: next(leaves_left).to(self.device), template)


def _check_fits(model: LanguageModel, weights: dict[str, torch.Tensor]) -> None:
    """Raise KeyError/ValueError unless ``weights`` has exactly the model's names and shapes."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    got = {name: tuple(value.shape) for name, value in weights.items()}
    if expected.keys() != got.keys():
        raise KeyError(f"best weights name {sorted(set(got) ^ set(expected))[:3]} differently")
    wrong = [name for name in expected if expected[name] != got[name]]
    if wrong:
        raise ValueError(f"best weights for {wrong[0]} have shape {got[wrong[0]]}, not {expected[wrong[0]]}")
