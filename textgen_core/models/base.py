"""The forward contract shared by every language model.

    logits, state = model(ids, state)      ids: (B, T) int64, logits: (B, T, vocab_size)

``state`` is whatever the architecture carries between calls (RNN hidden state, CNN input
history, attention key/value cache); ``None`` means "start of text". Feeding a sequence in pieces
and carrying the state gives the same logits as feeding it whole; generation relies on this.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..errors import ConfigError
from .config import ModelConfig

if TYPE_CHECKING:
    from ..tokenizers import Tokenizer

State = Any  # a tensor, a tuple of tensors, or a list of them, depending on the architecture


def state_leaves(state: State) -> list[torch.Tensor]:
    """The tensors of a state, in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    return [t for part in state for t in state_leaves(part)] if isinstance(state, (tuple, list)) else []


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: State) -> State:
    """``state`` with each of its tensors replaced by ``fn(tensor)``, in the state's own structure."""
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        mapped = [map_state(fn, part) for part in state]
        return tuple(mapped) if isinstance(state, tuple) else mapped
    return state


_IGNORED_MIXIN_OPTIONS = {"strict", "token", "force_download", "local_files_only", "proxies",
                          "resume_download"}
NO_TOKENIZER = ("the model has no tokenizer, and a model folder without one cannot be loaded by tg.load: "
                "pass tokenizer=..., or use a model from tg.load or tg.train_model (they come with theirs); "
                "save_pretrained(..., weights_only=True) writes the network alone, for from_pretrained")


class LanguageModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="textgen_core",
    tags=["text-generation", "textgen-core"],
    pipeline_tag="text-generation",
):
    """Base class: takes the JSON-able fields of ModelConfig as keyword arguments.

    Subclasses implement ``forward(ids, state=None) -> (logits, state)`` and
    ``init_state(batch, device) -> state`` (the state meaning "no text seen yet").

    A model loaded or trained as a ``Bundle`` knows its tokenizer, run record and history
    (``attach``), so ``save_pretrained`` and ``push_to_hub`` write a whole model folder.
    """

    tokenizer: Optional["Tokenizer"] = None
    run_info: Optional[dict] = None            # run.json's fields
    run_history: Optional[list[dict]] = None   # history.jsonl's points

    def __init__(self, arch: str, vocab_size: int, embedding: int = 64, hidden: int = 256,
                 layers: int = 2, dropout: float = 0.1, context: int = 128, heads: int = 4,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.config = ModelConfig(arch=arch, vocab_size=vocab_size, embedding=embedding,
                                  hidden=hidden, layers=layers, dropout=dropout, context=context,
                                  heads=heads, kernel_size=kernel_size).validated()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, revision: Optional[str] = None,
                        cache_dir: Optional[str | Path] = None, map_location: str | torch.device = "cpu",
                        **options: Any) -> "LanguageModel":
        """The model saved in a folder (or a Hub repo ``owner/name``), of the class its config names.

        ``LanguageModel.from_pretrained`` returns whichever subclass the folder's ``arch`` needs; a
        subclass refuses another architecture's folder. The weights are checked against the config
        (names, shapes, size, free memory) before anything is built, then always loaded strictly.
        The mixin's download options (``strict``, ``token``, ...) are accepted and have no effect.
        """
        from .. import hub  # hub builds models, so it is imported only when a model is loaded

        unknown = sorted(set(options) - _IGNORED_MIXIN_OPTIONS)
        if unknown:
            raise ConfigError(f"from_pretrained takes no {', '.join(unknown)}: the model's sizes come from "
                              "its config.json; build a new model to change them")
        return hub.load_model(pretrained_model_name_or_path, device=map_location, expect=cls,
                              revision=revision, cache_dir=None if cache_dir is None else str(cache_dir))

    def init_state(self, batch: int, device: torch.device | str | None = None) -> State:
        """The state meaning "no text seen yet", for ``batch`` sequences (each subclass has its own)."""
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- a whole model folder, locally and on the Hub ------------------------------------------
    def attach(self, tokenizer: "Tokenizer", info: Optional[dict] = None,
               history: Optional[list[dict]] = None) -> "LanguageModel":
        """Give the model what a model folder holds beside the network; returns the model."""
        self.tokenizer, self.run_info, self.run_history = tokenizer, info, history
        return self

    def save_pretrained(self, save_directory: str | Path, *, tokenizer: Optional["Tokenizer"] = None,
                        weights_only: bool = False, repo_id: Optional[str] = None, push_to_hub: bool = False,
                        config: Any = None, model_card_kwargs: Optional[dict] = None,
                        **push_options: Any) -> Optional[str]:
        """Write a model folder that ``tg.load`` reads: weights, config, tokenizer, history, run record
        and card (``model_card_kwargs``: ``language``). ``tokenizer`` defaults to the attached one;
        without either it is refused, unless ``weights_only`` (weights and config alone, which
        ``from_pretrained`` reads). ``push_to_hub=True`` then uploads it to ``repo_id`` (owner/name)."""
        from .. import checkpoint, files, hub

        _check_push_options(push_options)
        if config is not None and (config.to_dict() if hasattr(config, "to_dict") else dict(config)) \
                != self.config.to_dict():
            raise ConfigError("save_pretrained writes the model's own config; build a new model to change it")
        folder = Path(save_directory)
        if weights_only:
            folder.mkdir(parents=True, exist_ok=True)
            checkpoint.save_tensors(folder / hub.WEIGHTS_FILE, self.state_dict())
            files.write_json(folder / hub.CONFIG_FILE, self.config.to_dict())
        else:
            tokenizer = self._tokenizer_for_saving(tokenizer)
            info = self._card_info(folder, tokenizer)
            card = self._card(info, tokenizer, repo_id, model_card_kwargs or {})
            hub.save_folder(folder, self, tokenizer, list(self.run_history or []), info, card)
        if push_to_hub:
            return self._push_folder(folder, repo_id or folder.name, **push_options)
        return None

    def push_to_hub(self, repo_id: str, *, tokenizer: Optional["Tokenizer"] = None,
                    model_card_kwargs: Optional[dict] = None, config: Any = None, **options: Any) -> str:
        """Upload the model folder ``save_pretrained`` writes to the Hub repo ``repo_id`` (owner/name),
        through ``hub.push_folder`` (deadlines, clear errors, the token never shown); ``token`` and
        ``private`` are the options it takes. Returns the repo's URL."""
        _check_push_options(options)
        with tempfile.TemporaryDirectory(prefix="textgen-push-") as staging:
            folder = Path(staging) / repo_id.rsplit("/", 1)[-1]
            self.save_pretrained(folder, tokenizer=tokenizer, repo_id=repo_id, config=config,
                                 model_card_kwargs=model_card_kwargs)
            return self._push_folder(folder, repo_id, **options)

    @staticmethod
    def _push_folder(folder: Path, repo_id: str, token: Optional[str] = None, private: Optional[bool] = None) -> str:
        from .. import hub

        return hub.push_folder(folder, repo_id, token=token, private=bool(private))

    def _tokenizer_for_saving(self, tokenizer: Optional["Tokenizer"]) -> "Tokenizer":
        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise ConfigError(NO_TOKENIZER)
        if tokenizer.vocab_size != self.config.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model predicts "
                              f"{self.config.vocab_size}: give the tokenizer the model was trained with")
        return tokenizer

    def _card_info(self, folder: Path, tokenizer: "Tokenizer") -> dict:
        """run.json for the folder: the attached run record, or what the model itself tells."""
        known = {"name": folder.name, "model": self.config.to_dict(), "parameters": self.num_parameters(),
                 "tokenizer": {"type": tokenizer.kind, "vocab_size": tokenizer.vocab_size, "notes": tokenizer.notes}}
        return {**known, **(self.run_info or {})}

    def _card(self, info: dict, tokenizer: "Tokenizer", repo_id: Optional[str], options: dict) -> str:
        from ..card import render_card
        from ..runs import card_samples

        unknown = sorted(set(options) - {"language"})
        if unknown:
            raise ConfigError(f"model_card_kwargs takes only language, not {', '.join(unknown)}")
        typical = {"word": 4.0, "sentencepiece": 3.0}.get(tokenizer.kind, 1.0)   # characters per token
        samples = card_samples(self, tokenizer, info.get("chars_per_token") or typical)
        return render_card(info, samples, repo_id=repo_id, language=options.get("language"))


def _check_push_options(options: dict) -> None:
    unsupported = sorted(set(options) - {"token", "private"})
    if unsupported:
        raise ConfigError(f"push_to_hub takes no {', '.join(unsupported)}: it uploads the whole model folder to "
                          "the main branch in one commit (its options: token, private)")
