"""Model folders: write them, read them back, and find them locally or on the Hugging Face Hub.

A model folder holds ``config.json`` (ModelConfig), ``model.safetensors``, the tokenizer files,
``history.jsonl``, ``run.json`` (what the run was and what it reached) and a ``README.md`` card.
Only JSON, safetensors and the SentencePiece model proto are ever read: never pickle.
"""
from __future__ import annotations

import json
import os
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
from safetensors.torch import load_model

from . import checkpoint
from .errors import ConfigError, HubError, ModelFolderError
from .models import LanguageModel, ModelConfig, build_model
from .tokenizers import Tokenizer, load_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.jsonl"
RUN_FILE = "run.json"
CARD_FILE = "README.md"
HUB_FILE_PATTERNS = ["*.json", "*.jsonl", "*.safetensors", "*.model", "README.md"]
PICKLE_FILES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
HUB_CONNECT_TIMEOUT_S = 3.0
DOWNLOAD_DEADLINE_S = 120.0  # a whole model download (a bundled-size model is at most about 15 MB)


@dataclass
class Bundle:
    """A loaded model with everything needed to sample from it and describe it."""
    model: LanguageModel
    tokenizer: Tokenizer
    info: dict = field(default_factory=dict)          # run.json: corpus, settings, results
    history: list[dict] = field(default_factory=list)  # history.jsonl lines
    path: Optional[Path] = None                        # the folder it was read from
    source: str = ""                                   # what the user asked for (path or repo id)

    @property
    def name(self) -> str:
        return self.info.get("name") or (self.path.name if self.path else self.source)


# --- writing -------------------------------------------------------------------------------
def save_folder(folder: str | Path, model: LanguageModel, tokenizer: Tokenizer,
                history: list[dict], info: dict, card: str) -> Path:
    """Write every file of a model folder, each one atomically (temporary name, then rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint.save_tensors(folder / WEIGHTS_FILE, model.state_dict())
    checkpoint.atomic_write_text(folder / CONFIG_FILE, json.dumps(model.config.to_dict(), indent=2))
    tokenizer.save(folder)
    checkpoint.atomic_write_text(folder / HISTORY_FILE, "".join(json.dumps(p) + "\n" for p in history))
    checkpoint.atomic_write_text(folder / RUN_FILE, json.dumps(info, indent=2, ensure_ascii=False))
    checkpoint.atomic_write_text(folder / CARD_FILE, card)
    return folder


# --- reading -------------------------------------------------------------------------------
def read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelFolderError(f"{path.parent} is not a model folder: {path.name} is missing") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path} must hold a JSON object")
    return value


def read_history(folder: Path) -> list[dict]:
    path = folder / HISTORY_FILE
    if not path.is_file():
        return []
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # a damaged line loses one point of the chart, not the model
    return lines


def load_folder(folder: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Read a model folder; every inconsistency is a ModelFolderError that names the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        pickles = [name for name in PICKLE_FILES if (folder / name).exists()]
        hint = (f"; it holds {pickles[0]}, a pickle file, which is never loaded because it can run "
                "code: convert it to safetensors" if pickles else "")
        raise ModelFolderError(f"{folder} has no {WEIGHTS_FILE}{hint}")
    try:
        config = ModelConfig.from_dict(read_json(folder / CONFIG_FILE))
    except (ConfigError, TypeError) as exc:
        raise ModelFolderError(f"{folder / CONFIG_FILE} is not a valid model config: {exc}") from exc
    tokenizer = load_tokenizer(folder)
    if tokenizer.vocab_size != config.vocab_size:
        raise ModelFolderError(f"the tokenizer has {tokenizer.vocab_size} tokens but {CONFIG_FILE} says "
                               f"{config.vocab_size}: the files come from different models")
    model = build_model(config)
    try:
        load_model(model, str(weights), strict=True)
    except Exception as exc:  # safetensors raises RuntimeError/SafetensorError for mismatches
        raise ModelFolderError(f"{weights} does not match {CONFIG_FILE}: {str(exc)[:300]}") from exc
    model.to(device).eval()
    info = read_json(folder / RUN_FILE) if (folder / RUN_FILE).is_file() else {}
    return Bundle(model, tokenizer, info, read_history(folder), folder, str(folder))


# --- finding ---------------------------------------------------------------------------------
def is_repo_id(source: str) -> bool:
    return bool(REPO_ID.match(source)) and ".." not in source


def _hub_reachable(endpoint: str, timeout: float) -> bool:
    """Whether a TCP connection to the endpoint opens within ``timeout`` (DNS lookup included)."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((url.hostname, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    # A thread, because the name lookup inside create_connection ignores the timeout.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def download(repo_id: str, revision: Optional[str] = None, cache_dir: Optional[str] = None,
             timeout: float = HUB_CONNECT_TIMEOUT_S) -> Path:
    """The local snapshot folder of a Hub repo: from the cache when there, else downloaded.

    Fails within about ``timeout`` seconds when the Hub cannot be reached, instead of retrying.
    """
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    kwargs = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=HUB_FILE_PATTERNS)
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        not_cached = exc  # go on to the network, unless it is switched off
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or constants.HF_HUB_OFFLINE:
        raise HubError(f"{repo_id} is not in the local Hub cache and the Hub is switched off "
                       "(HF_HUB_OFFLINE); use a local model folder") from not_cached
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    if not _hub_reachable(endpoint, timeout):
        raise HubError(f"cannot reach the Hugging Face Hub at {endpoint} (no answer within {timeout:g} s) "
                       f"and {repo_id} is not cached; check the connection or use a local model folder")
    try:
        # huggingface_hub's API calls wait forever for a server that accepts connections but never
        # answers: ask for the repo's metadata with a timeout first, then download within a deadline.
        _call_with_deadline(lambda: HfApi(endpoint=endpoint).model_info(repo_id, revision=revision,
                                                                        timeout=timeout), timeout + 1)
        return Path(_call_with_deadline(lambda: snapshot_download(etag_timeout=timeout, **kwargs),
                                        DOWNLOAD_DEADLINE_S))
    except TimeoutError as exc:
        raise HubError(f"the Hugging Face Hub at {endpoint} accepted the connection but did not answer in "
                       f"time, and {repo_id} is not cached; try again later or use a local model folder") from exc
    except RepositoryNotFoundError as exc:
        raise HubError(f"no model {repo_id} on the Hub (or it is private: log in first)") from exc
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as exc:
        raise HubError(f"downloading {repo_id} failed: {str(exc).splitlines()[0][:200]}") from exc
    except Exception as exc:  # the HTTP client's own errors (timeouts, protocol errors) by another name
        raise HubError(f"downloading {repo_id} failed: {type(exc).__name__}: "
                       f"{(str(exc).splitlines() or [''])[0][:200]}") from exc


def _call_with_deadline(call, seconds: float):
    """``call()``'s result, or TimeoutError after ``seconds`` (the call goes on in a daemon thread)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"no result within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def load(source: str | Path, revision: Optional[str] = None, device: str | torch.device = "cpu",
         cache_dir: Optional[str] = None) -> Bundle:
    """Load a model from a local folder, or from the Hub by repo id (``owner/name``)."""
    path = Path(source).expanduser()
    if path.exists():
        bundle = load_folder(path, device)
    elif is_repo_id(str(source)):
        bundle = load_folder(download(str(source), revision, cache_dir), device)
    else:
        raise ModelFolderError(f"'{source}' is neither a model folder nor a Hub repo id of the form owner/name")
    bundle.source = str(source)
    return bundle


# --- publishing ------------------------------------------------------------------------------
def push_folder(folder: str | Path, repo_id: str, token: Optional[str] = None, private: bool = False,
                api=None) -> str:
    """Upload a model folder (not its resume checkpoint) to a Hub model repo; returns the repo URL.

    ``token`` falls back to HF_TOKEN or the Hub login; it is passed to huggingface_hub only and
    never printed, logged or written to the folder.
    """
    from huggingface_hub import HfApi

    folder = Path(folder)
    load_folder(folder)  # refuse to publish a folder that would not load
    if not is_repo_id(repo_id):
        raise ConfigError(f"'{repo_id}' is not a Hub repo id; use the form owner/name")
    api = api or HfApi()
    try:
        url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, token=token,
                          allow_patterns=HUB_FILE_PATTERNS, ignore_patterns=["checkpoint/*"],
                          commit_message=f"Upload {folder.name} with textgen_core")
    except Exception as exc:  # network and auth errors vary by transport; the token never appears in them
        raise HubError(f"uploading to {repo_id} failed: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc
    return str(url)
