"""Generation one token at a time, with the distribution at every step in view.

    explorer = Explorer(bundle, "ROMEO:", seed=1)
    explorer.distribution(0.8, top_k=None, top_p=None)      # (V,) what the sampler would draw from
    explorer.step(SamplingOptions(temperature=0.8))         # draw one token, like tg.generate
    explorer.step(options, pick=explorer.token_id("A"))     # or write a token of one's own choosing

The prompt is read once; each step feeds only the newest token, through the sampler's own CPU path,
so with the same seed and options and no token picked by hand the text is ``tg.generate``'s, token
for token. A picked token draws nothing from the seeded generator, so the same seed, options and picks
replay the same text (``Explorer.replay``). The logits of every position are kept, so a distribution
under other settings is recomputed from them without running the model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..errors import ConfigError
from ..hub import Bundle
from ..sampling import (
    SamplingOptions,
    _cpu_rnn_fast_path,
    _one_thread,
    _rnn_step,
    active_top_p,
    check_finite,
    next_token_probs,
    pick_next,
    read_prompt,
    start_ids,
)

UNDO_STEPS = 32           # positions kept for undo (each holds the model's state: up to ~1 MB)
MAX_EXPLORER_STEPS = 10_000


@dataclass(frozen=True)
class Step:
    token_id: int
    piece: str                    # the token's text (a byte of a multi-byte character as e.g. <0xE4>)
    picked: bool                  # written by hand rather than drawn
    options: SamplingOptions      # the settings of this step (a picked token ignores them)
    logits: torch.Tensor          # (V,) float32 at the position the token was chosen for


@dataclass(frozen=True)
class Choice:
    token_id: int
    piece: str
    probability: float            # under the settings asked for (0 where a filter drops it)


def probabilities(logits: torch.Tensor, temperature: float, top_k: Optional[int] = None,
                  top_p: Optional[float] = None, banned: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(V,) logits -> (V,) the probabilities ``pick_next`` draws from: banned ids removed, then the
    temperature (0: all of it on the most likely token), top-k and top-p (1 or None: off)."""
    options = SamplingOptions(length=1, temperature=temperature, top_k=top_k, top_p=top_p).validated()
    logits = logits.float()
    if banned is not None:
        logits = logits.masked_fill(banned, float("-inf"))
    if options.temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(), logits.shape[-1]).float()
    return next_token_probs(logits[None], options.temperature, options.top_k, active_top_p(options))[0]


class Explorer:
    """One sample, a step at a time, on the bundle's model (which it never changes)."""

    def __init__(self, bundle: Bundle, prompt: str = "", seed: Optional[int] = None) -> None:
        SamplingOptions(length=1, seed=seed).validated()   # the seed's checks, with their messages
        self.bundle, self.prompt, self.seed = bundle, prompt, seed
        self.model, self.tokenizer = bundle.model, bundle.tokenizer
        device = self.model.device
        self.generator = torch.Generator(device=device)
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed % 2**64)
        self.prompt_ids = start_ids(self.tokenizer, prompt)
        vocab = self.model.config.vocab_size
        banned = [i for i in self.tokenizer.never_generate if 0 <= i < vocab]
        self.banned: Optional[torch.Tensor] = None          # (V,) bool, as the sampler builds it
        if banned and len(banned) < vocab:
            self.banned = torch.zeros(vocab, dtype=torch.bool, device=device)
            self.banned[banned] = True
        self.steps: list[Step] = []
        self._undo: list[tuple[torch.Tensor, Any, torch.Tensor]] = []   # (logits, state, RNG) before a step
        with self._sampler_path():
            last, self.state = read_prompt(self.model, self._forward, self.prompt_ids, 1)    # (1, V)
        check_finite(last)
        self.logits = last[0]                                # (V,) at the position to fill next

    # --- the sampler's path: the same kernels, threads and flags as sample_ids on this device -------
    @contextlib.contextmanager
    def _sampler_path(self):
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), _cpu_rnn_fast_path(self.model, 1):
                self._forward = self._step_forward = self.model
                if self.model.device.type == "cpu":
                    self._forward = _one_thread(self.model, 1)
                    self._step_forward = _one_thread(_rnn_step(self.model) or self.model, 1)
                yield
        finally:
            self.model.train(was_training)

    def distribution(self, temperature: float = 1.0, top_k: Optional[int] = None,
                     top_p: Optional[float] = None, logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(V,) probabilities of the next token under these settings (or of ``logits``, e.g. a past
        ``Step.logits``), from the stored logits: the model does not run."""
        return probabilities(self.logits if logits is None else logits, temperature, top_k, top_p, self.banned)

    def top(self, probs: torch.Tensor, n: int = 10, always: Optional[int] = None) -> list[Choice]:
        """The ``n`` most likely tokens of ``probs`` (V,), most likely first; ``always`` (a token id) is
        added at the end when it is not among them."""
        n = max(1, min(n, probs.shape[-1]))
        ids = torch.topk(probs, n).indices.tolist()
        if always is not None and always not in ids:
            ids.append(always)
        return [Choice(i, self.piece(i), float(probs[i])) for i in ids]

    def piece(self, token_id: int) -> str:
        return self.tokenizer.token_strings([token_id])[0]

    def token_id(self, piece: str) -> int:
        """The id of a vocabulary entry given as text (one token, e.g. "A" or " the")."""
        ids = self.tokenizer.encode(piece) if isinstance(piece, str) and piece else []
        if len(ids) != 1 or self.piece(ids[0]) != piece:
            raise ConfigError(f"{piece!r} is not one token of this model's vocabulary; pick one of the listed tokens")
        return ids[0]

    def step(self, options: Optional[SamplingOptions] = None, pick: Optional[int] = None) -> Step:
        """Choose the next token (drawn under ``options``, or ``pick``), feed it, and return the step."""
        options = (options or SamplingOptions()).validated()
        if len(self.steps) >= MAX_EXPLORER_STEPS:
            raise ConfigError(f"this text already has {MAX_EXPLORER_STEPS:,} steps; start again from a new prompt")
        vocab = self.logits.shape[-1]
        if pick is not None and (not isinstance(pick, int) or isinstance(pick, bool) or not 0 <= pick < vocab):
            raise ConfigError(f"a picked token must be a token id from 0 to {vocab - 1} (got {pick!r})")
        logits = self.logits
        self._undo.append((logits, self.state, self.generator.get_state()))
        del self._undo[:-UNDO_STEPS]
        if pick is None:
            masked = logits if self.banned is None else logits.masked_fill(self.banned, float("-inf"))
            token = int(pick_next(masked[None], options, self.generator)[0])
        else:
            token = pick
        with self._sampler_path():
            out, self.state = self._step_forward(torch.tensor([[token]], device=logits.device), self.state)
        self.logits = out[0, -1]
        check_finite(self.logits)
        step = Step(token, self.piece(token), pick is not None, options, logits.float())
        self.steps.append(step)
        return step

    def run(self, options: SamplingOptions, length: int) -> list[Step]:
        """``length`` drawn steps."""
        return [self.step(options) for _ in range(length)]

    @property
    def can_undo(self) -> bool:
        return bool(self._undo) and bool(self.steps)

    def undo(self) -> Step:
        """Take the last step back (logits, state and the generator's state as before it)."""
        if not self.can_undo:
            raise ConfigError("there is no step to take back")
        self.logits, self.state, rng = self._undo.pop()
        self.generator.set_state(rng)
        return self.steps.pop()

    @property
    def generated_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]

    @property
    def text(self) -> str:
        """The prompt and what was generated, as ``tg.generate`` returns it."""
        return self.prompt + self.tokenizer.decode(self.generated_ids)

    @property
    def moves(self) -> list[tuple[SamplingOptions, Optional[int]]]:
        """What ``replay`` needs: each step's options and its picked token (None: drawn)."""
        return [(s.options, s.token_id if s.picked else None) for s in self.steps]

    @classmethod
    def replay(cls, bundle: Bundle, prompt: str, seed: Optional[int],
               moves: list[tuple[SamplingOptions, Optional[int]]]) -> "Explorer":
        """A new explorer that makes the same moves: with a seed, the same text."""
        explorer = cls(bundle, prompt, seed)
        for options, pick in moves:
            explorer.step(options, pick)
        return explorer
