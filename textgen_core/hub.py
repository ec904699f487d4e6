"""Model folders: write them, read them back, and find them locally or on the Hugging Face Hub.

A model folder holds ``config.json`` (ModelConfig), ``model.safetensors``, the tokenizer files,
``history.jsonl``, ``run.json`` (what the run was and what it reached) and a ``README.md`` card.
Only JSON, safetensors and the SentencePiece model proto are ever read: never pickle. Every file
is read through ``files`` (regular files only, size caps, no symlink out of the folder), and the
weights file's header is checked against the config and the free memory before a model is built.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import torch
from safetensors.torch import load_file

from . import checkpoint, files, memory
from .errors import ConfigError, HubError, ModelFolderError, UnsafeFileError
from .models import MODEL_CLASSES, LanguageModel, ModelConfig, build_model
from .tokenizers import Tokenizer, load_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
HISTORY_FILE = "history.jsonl"
RUN_FILE = "run.json"
CARD_FILE = "README.md"
HUB_FILE_PATTERNS = ["*.json", "*.jsonl", "*.safetensors", "*.model", "README.md"]
HUB_IGNORE_PATTERNS = ["checkpoint/*", ".*", "status.json"]   # resume state, the lock, file list, live status
PICKLE_FILES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "model.ckpt")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
HUB_CONNECT_TIMEOUT_S = 3.0
DOWNLOAD_DEADLINE_S = 120.0  # a whole model download (a bundled-size model is at most about 15 MB)
HUB_CALL_DEADLINE_S = 30.0   # one Hub API call (create a repo, ask for its metadata)
UPLOAD_DEADLINE_S = 60.0     # an upload's fixed part; it grows with the folder's size, below
UPLOAD_MIN_BYTES_PER_S = 250_000
MAX_WEIGHTS_HEADER_BYTES = 16 << 20  # a safetensors header (this project's models: a few KB)
FLOAT_DTYPES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8}  # safetensors dtype -> bytes per value
LOADED_BYTES_PER_PARAMETER = 4  # models are built in fp32, whatever the file stores
NO_SOURCE = ("give a model folder, a pretrained name (see `python -m textgen_core pretrained`) "
             "or a Hub repo id owner/name")


@dataclass
class Bundle:
    """A loaded model with everything needed to sample from it and describe it."""
    model: LanguageModel
    tokenizer: Tokenizer
    info: dict = field(default_factory=dict)          # run.json's well-typed fields (read_run_info)
    history: list[dict] = field(default_factory=list)  # history.jsonl lines (its tail, see read_history)
    path: Optional[Path] = None                        # the folder it was read from
    source: str = ""                                   # what the user asked for (path or repo id)

    def __post_init__(self) -> None:
        # the model then saves (save_pretrained, push_to_hub) a whole folder, tokenizer included
        if isinstance(self.model, LanguageModel):
            self.model.attach(self.tokenizer, self.info, self.history)

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
    files.write_json(folder / CONFIG_FILE, model.config.to_dict())
    tokenizer.save(folder)
    files.write_jsonl(folder / HISTORY_FILE, history)
    files.write_json(folder / RUN_FILE, info)
    checkpoint.atomic_write_text(folder / CARD_FILE, card)
    return folder


# --- reading the small files ---------------------------------------------------------------
def read_json(path: Path, max_bytes: int = files.MAX_CONFIG_BYTES) -> dict:
    """The JSON object in the regular file ``path``; a ModelFolderError that names it otherwise."""
    try:
        return files.read_json(path, max_bytes)
    except FileNotFoundError as exc:
        raise ModelFolderError(f"{path.parent} is not a model folder: {path.name} is missing") from exc
    except OSError as exc:
        raise ModelFolderError(f"{path} cannot be read ({exc.strerror or exc})") from exc


def _present(folder: Path, name: str) -> Optional[Path]:
    """``folder / name`` when it exists (refused when it leads out of the folder), else None."""
    path = folder / name
    if not os.path.lexists(path):
        return None
    files.inside(folder, name)
    return path if path.exists() else None


def read_config(folder: str | Path) -> ModelConfig:
    """The validated ModelConfig of ``folder``'s config.json."""
    folder = Path(folder)
    path = files.inside(folder, CONFIG_FILE)
    values = read_json(path)
    try:
        return ModelConfig.from_dict(values)
    except (ConfigError, TypeError) as exc:
        raise ModelFolderError(f"{path} is not a valid model config: {exc}") from None


def read_history(folder: str | Path) -> list[dict]:
    """The points of history.jsonl, from at most its last ``files.MAX_HISTORY_BYTES`` (a longer file's
    cut first line is dropped); damaged lines are skipped: they lose one point of a chart, not the model."""
    path = _present(Path(folder), HISTORY_FILE)
    if path is None:
        return []
    cap = files.MAX_HISTORY_BYTES
    data = files.read_bytes(path, cap + 1, tail=True)
    if len(data) > cap:  # the file is longer than the cap: its first line here is cut
        cut = data.find(b"\n")
        data = data[cut + 1:] if cut >= 0 else b""
    lines = [line for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return [point for point in _parse_lines(lines, str(path)) if isinstance(point, dict)]


def _parse_lines(lines: list[str], origin: str) -> list:
    """The JSON value of each line, skipping damaged ones; parsed as one array when every line is
    sound (several times faster than line by line), else one line at a time."""
    try:
        values = files.parse_json("[" + ",".join(lines) + "]", origin)
        if len(values) == len(lines):  # else a line held several values: count them line by line
            return values
    except UnsafeFileError:
        pass
    values = []
    for line in lines:
        try:
            values.append(files.parse_json(line, origin))
        except UnsafeFileError:
            continue
    return values


# The fields of run.json and their kinds: read_run_info keeps only the fields of the right kind.
_TEXT, _WHOLE, _NUMBER, _TEXTS, _SCALARS = "text", "whole", "number", "texts", "scalars"
RUN_FIELDS: dict[str, Any] = {
    "name": _TEXT,
    "corpus": {"name": _TEXT, "chars": _WHOLE, "encoding": _TEXT, "sha256": _TEXT},
    "tokenizer": {"type": _TEXT, "vocab_size": _WHOLE, "notes": _TEXTS},
    "model": _SCALARS, "train_config": _SCALARS,
    "parameters": _WHOLE, "val_fraction": _NUMBER, "chars_per_token": _NUMBER, "steps": _WHOLE,
    "elapsed_s": _NUMBER, "best_step": _WHOLE, "best_val_loss": _NUMBER, "best_val_bpc": _NUMBER,
    "stop_reason": _TEXT, "stop_message": _TEXT, "hardware": _TEXT, "precision": _TEXT,
    "created": _TEXT, "command": _TEXT,
    "distributed": {"processes": _WHOLE, "backend": _TEXT, "batch_per_process": _WHOLE},
}
_DROP = object()


def _finite_float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _clean(value: Any, kind: Any) -> Any:
    """``value`` if it is of ``kind`` (dicts: their fields of the right kinds), else _DROP."""
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return _DROP
        kept = {key: _clean(value[key], sub) for key, sub in kind.items() if key in value}
        return {key: item for key, item in kept.items() if item is not _DROP}
    if kind == _TEXT:
        return value if isinstance(value, str) else _DROP
    if kind == _WHOLE:
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else _DROP
    if kind == _NUMBER:
        number = _finite_float(value)
        return number if number is not None and number >= 0 else _DROP
    if kind == _TEXTS:
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else _DROP
    if not isinstance(value, dict):  # _SCALARS: a flat settings dict
        return _DROP
    return {key: item for key, item in value.items()
            if item is None or isinstance(item, (str, bool, int)) or _finite_float(item) is not None}


def clean_run_info(values: Any) -> dict:
    """The well-typed known fields of a run.json value (numbers finite and not negative): safe to
    format (``f"{info['best_val_loss']:.4f}"``) whenever present."""
    cleaned = _clean(values, RUN_FIELDS)
    return {} if cleaned is _DROP else cleaned


def read_run_info(folder: str | Path) -> dict:
    """``folder``'s run.json, keeping only its well-typed known fields ({} without one).

    A run.json that is not a regular file, too large, not JSON or a symlink out of the folder is
    refused (UnsafeFileError, a ModelFolderError); fields of the wrong kind are dropped.
    """
    path = _present(Path(folder), RUN_FILE)
    return {} if path is None else clean_run_info(read_json(path))


def read_card(folder: str | Path) -> Optional[str]:
    """The README.md model card's text (None without one), read like every other file of a folder."""
    path = _present(Path(folder), CARD_FILE)
    if path is None:
        return None
    return files.read_bytes(path, files.MAX_CARD_BYTES).decode("utf-8", errors="replace")


def _read_tokenizer(folder: Path) -> Tokenizer:
    try:
        return load_tokenizer(folder)
    except ConfigError as exc:
        raise ModelFolderError(f"{folder}'s tokenizer files are not valid: {exc}") from None


# --- checking the weights before anything is built -----------------------------------------
def weights_path(folder: Path) -> Path:
    """``folder``'s model.safetensors; refuses a folder without one (naming a pickle file it holds)."""
    path = folder / WEIGHTS_FILE
    if not os.path.lexists(path):
        pickles = [name for name in PICKLE_FILES if (folder / name).exists()]
        hint = (f"; it holds {pickles[0]}, a pickle file, which is never loaded because it can run "
                "code: convert it to safetensors" if pickles else "")
        raise ModelFolderError(f"{folder} has no {WEIGHTS_FILE}{hint}")
    return files.inside(folder, WEIGHTS_FILE)


def _damaged(path: Path, what: str) -> ModelFolderError:
    return ModelFolderError(f"{path} is damaged or not a safetensors file: {what}; save or download "
                            "the model again")


def _header_entry(path: Path, name: str, entry: Any, data_bytes: int) -> tuple[str, tuple[int, ...]]:
    """(dtype, shape) of one tensor of a safetensors header, after checking it fits the file."""
    def whole(n: Any) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n >= 0

    shape = entry.get("shape") if isinstance(entry, dict) else None
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (isinstance(shape, list) and all(whole(n) for n in shape) and isinstance(offsets, list)
            and len(offsets) == 2 and all(whole(n) for n in offsets)):
        raise _damaged(path, f"the header gives tensor {name[:80]!r} no valid shape and data offsets")
    dtype = entry.get("dtype")
    if dtype not in FLOAT_DTYPES:
        raise ModelFolderError(f"{path} stores tensor {name[:80]!r} as {str(dtype)[:20]!r}, not as "
                               "floating-point numbers (F32, F16, BF16 or F64): it does not hold model "
                               "weights this project can load")
    begin, end = offsets
    needed = math.prod(shape) * FLOAT_DTYPES[dtype]
    if end > data_bytes:
        raise _damaged(path, f"tensor {name[:80]!r} would end at byte {end:,} of a data part of only "
                             f"{data_bytes:,} bytes (the file is cut short)")
    if end - begin != needed:
        raise _damaged(path, f"tensor {name[:80]!r} of shape {shape} needs {needed:,} bytes but the "
                             f"header gives it {end - begin:,}")
    return dtype, tuple(shape)


def read_weights_header(path: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], int]:
    """({tensor name: (dtype, shape)}, bytes of tensor data) from a safetensors file's header alone:
    its 8-byte length and JSON header, checked against the file's size; no tensor is read."""
    prefix, size = files.read_prefix(path, 8)
    if len(prefix) < 8:
        raise _damaged(path, f"it holds only {size} bytes")
    length = int.from_bytes(prefix, "little")
    if length > size - 8:
        raise _damaged(path, f"its header says it is {length:,} bytes long, but the whole file holds "
                             f"only {size:,} bytes")
    if length > MAX_WEIGHTS_HEADER_BYTES:
        raise _damaged(path, f"its header is {files.size_text(length)}, more than the "
                             f"{files.size_text(MAX_WEIGHTS_HEADER_BYTES)} any model's header needs")
    raw, _ = files.read_prefix(path, 8 + length)
    try:
        text = raw[8:].decode("utf-8")
    except UnicodeDecodeError:
        raise _damaged(path, "its header is not UTF-8 text") from None
    header = files.parse_json(text, f"the header of {path}")
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    data_bytes = size - 8 - length
    tensors = {name: _header_entry(path, name, entry, data_bytes)
               for name, entry in header.items() if name != "__metadata__"}
    return tensors, data_bytes


def expected_tensors(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{name: shape} of every tensor the model of ``config`` saves, from a model built on the meta
    device (nothing allocated, no random fills: the same build as memory.count_parameters)."""
    with torch.device("meta"), memory._NoRandomFill():
        model = build_model(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _some(names: list[str]) -> str:
    shown = ", ".join(repr(name[:80]) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _compare(path: Path, config: ModelConfig, expected: dict[str, tuple[int, ...]],
             found: dict[str, tuple[str, tuple[int, ...]]]) -> None:
    """Raise a ModelFolderError when the file's tensors are not exactly those ``config`` needs."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    reshaped = [name for name in expected if name in found and found[name][1] != expected[name]]
    if not (missing or unexpected or reshaped):
        return
    want = sum(math.prod(shape) for shape in expected.values())
    have = sum(math.prod(shape) for _, shape in found.values())
    problems = ([f"no {_some(missing)}"] if missing else []) + (
        [f"unexpected {_some(unexpected)}"] if unexpected else [])
    if reshaped:
        name = reshaped[0]
        problems.append(f"{len(reshaped)} of another shape, e.g. {name!r}: {list(found[name][1])} in the "
                        f"file, {list(expected[name])} by the config")
    raise ModelFolderError(f"{path} does not match {CONFIG_FILE}: the config describes a {config.arch} model "
                           f"with {want:,} parameters, the weights file holds {have:,} "
                           f"({'; '.join(problems)}); the two files come from different models: copy "
                           "both from the same model folder")


def _check_free_memory(folder: Path, parameters: int, data_bytes: int, device: str | torch.device) -> None:
    """Refuse a model that would not fit: the fp32 model plus the file's tensors while they are
    copied in, in this machine's free memory (and the model alone on a GPU when loading to one)."""
    need = LOADED_BYTES_PER_PARAMETER * parameters + data_bytes
    free = memory.free_memory_bytes("cpu")
    if free is not None and need > free:
        raise ModelFolderError(f"the model in {folder} has {parameters:,} parameters and needs about "
                               f"{files.size_text(need)} of memory to load, more than the "
                               f"{files.size_text(free)} free on this machine; close other programs or "
                               "use a smaller model")
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        need, free = LOADED_BYTES_PER_PARAMETER * parameters, memory.free_memory_bytes("cuda")
        if free is not None and need > free:
            raise ModelFolderError(f"the model in {folder} has {parameters:,} parameters and needs about "
                                   f"{files.size_text(need)} on the GPU, more than the "
                                   f"{files.size_text(free)} free there; load it on the CPU")


def check_weights(folder: str | Path, config: ModelConfig, device: str | torch.device = "cpu") -> Path:
    """``folder``'s weights file, after checking from its header alone that it holds exactly the
    float tensors ``config`` needs, fits the file, and fits in free memory. Nothing is built."""
    folder = Path(folder)
    path = weights_path(folder)
    found, data_bytes = read_weights_header(path)
    expected = expected_tensors(config)
    _compare(path, config, expected, found)
    parameters = sum(math.prod(shape) for shape in expected.values())
    _check_free_memory(folder, parameters, data_bytes, device)
    return path


def _check_finite(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    for name, tensor in tensors.items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ModelFolderError(f"{path} holds {bad:,} NaN or infinite values in tensor {name!r}: the "
                                   "training run that wrote it diverged, so the model cannot produce text; "
                                   "train it again (a lower learning rate helps) or use an earlier copy")


def build_checked(folder: str | Path, config: ModelConfig, device: str | torch.device = "cpu") -> LanguageModel:
    """The model of ``config`` with ``folder``'s weights: checked first (check_weights), then every
    tensor must be finite, then loaded strictly (every tensor, nothing left random)."""
    path = check_weights(folder, config, device)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise _damaged(path, (str(exc).splitlines() or [type(exc).__name__])[0][:200]) from None
    _check_finite(path, tensors)
    model = build_model(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ModelFolderError(f"{path} does not match {CONFIG_FILE}: {str(exc)[:300]}") from None
    return model.to(device).eval()


def load_folder(folder: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Read a model folder; every inconsistency is a ModelFolderError that names the file.

    Every small file is read and checked first, then the weights' header against the config and
    the free memory; only then is the model built and its weights loaded.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder")
    weights_path(folder)
    config = read_config(folder)
    tokenizer = _read_tokenizer(folder)
    if tokenizer.vocab_size != config.vocab_size:
        raise ModelFolderError(f"the tokenizer has {tokenizer.vocab_size} tokens but {CONFIG_FILE} says "
                               f"{config.vocab_size}: the files come from different models")
    info, history = read_run_info(folder), read_history(folder)
    model = build_checked(folder, config, device)
    return Bundle(model, tokenizer, info, history, folder, str(folder))


def load_model(source: str | Path, device: str | torch.device = "cpu", expect: type = LanguageModel,
               revision: Optional[str] = None, cache_dir: Optional[str] = None) -> LanguageModel:
    """The network alone (no tokenizer needed) of a model folder or Hub repo, of class ``expect`` or a
    subclass: the class comes from config.json's ``arch``; another architecture's folder is refused."""
    folder = _local_folder(source, revision, cache_dir)
    config = read_config(folder)
    model_class = MODEL_CLASSES[config.arch]
    if not issubclass(model_class, expect):
        raise ModelFolderError(f"{folder} holds a {config.arch} model, which {expect.__name__} cannot load; "
                               f"use {model_class.__name__}.from_pretrained, or LanguageModel.from_pretrained "
                               "to get whichever class a folder needs")
    return build_checked(folder, config, device)


# --- finding ---------------------------------------------------------------------------------
def is_repo_id(source: str) -> bool:
    return bool(REPO_ID.match(source)) and ".." not in source


def hub_endpoint() -> str:
    """The Hub's address: HF_ENDPOINT as it is now (huggingface_hub reads it only at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _local_folder(source: str | Path, revision: Optional[str], cache_dir: Optional[str]) -> Path:
    """A folder on disk for ``source``: itself when it exists, else the Hub repo's snapshot."""
    text = str(source).strip()
    path = Path(text).expanduser()
    if text and path.exists():
        return path
    if is_repo_id(text):
        return download(text, revision, cache_dir)
    if not text:
        raise ModelFolderError(f"no model given: {NO_SOURCE}")
    raise ModelFolderError(f"'{text[:200]}' is neither a model folder nor a Hub repo id of the form owner/name")


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

    kwargs: dict[str, Any] = dict(repo_id=repo_id, revision=revision, cache_dir=cache_dir,
                                  allow_patterns=HUB_FILE_PATTERNS)
    try:
        return Path(snapshot_download(local_files_only=True, **kwargs))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        not_cached = exc  # go on to the network, unless it is switched off
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if offline or constants.HF_HUB_OFFLINE:
        raise HubError(f"{repo_id} is not in the local Hub cache and the Hub is switched off "
                       "(HF_HUB_OFFLINE); use a local model folder") from not_cached
    endpoint = hub_endpoint()
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


def _call_with_deadline(call: Callable[[], Any], seconds: float) -> Any:
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
    """Load a model from a local folder, or from the Hub by repo id (``owner/name``).

    ``pretrained.resolve`` also knows the pretrained names and falls back to their bundled copies.
    """
    bundle = load_folder(_local_folder(source, revision, cache_dir), device)
    bundle.source = str(source)
    return bundle


# --- publishing ------------------------------------------------------------------------------
def published_files(folder: str | Path) -> list[Path]:
    """The files of a model folder that an upload or a download of it carries: the model's own
    (weights, config, tokenizer, history, run record, card), not the checkpoint nor the folder's
    bookkeeping (dot files: the lock, the list of the project's files). Each must be a regular file
    inside the folder (a FIFO, a device or a symlink out of it is refused)."""
    from fnmatch import fnmatch

    folder = Path(folder)
    chosen = []
    for path in sorted(folder.iterdir()):
        if not any(fnmatch(path.name, pattern) for pattern in HUB_IGNORE_PATTERNS) and \
                any(fnmatch(path.name, pattern) for pattern in HUB_FILE_PATTERNS):
            files.inside(folder, path.name)
            files.read_prefix(path, 0)  # refuses a FIFO, a device or a folder without blocking
            chosen.append(path)
    return chosen


def _upload_bytes(folder: Path) -> int:
    """Bytes of the files an upload sends."""
    return sum(path.stat().st_size for path in published_files(folder))


def _network_reason(exc: BaseException) -> Optional[str]:
    """In words, why a connection to the Hub failed (None: the failure is not a connection's)."""
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "its name cannot be looked up: this machine seems to be offline, or HF_ENDPOINT is wrong"
        if isinstance(seen, ConnectionRefusedError):
            return "nothing answers there"
        if type(seen).__name__ in ("ConnectError", "ConnectTimeout", "ConnectionError", "NewConnectionError"):
            return "the connection failed"
        seen = seen.__cause__ or seen.__context__
    return None


def _push_failure(exc: BaseException, repo_id: str, endpoint: str, token: Optional[str]) -> HubError:
    """A HubError saying in words why the upload failed and what to do; never holding the token."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    reason = _network_reason(exc)
    if isinstance(exc, TimeoutError):
        message = (f"the Hugging Face Hub at {endpoint} did not answer in time ({exc}), so {repo_id} was not "
                   "uploaded (or only partly); check the connection and push again later")
    elif reason:
        message = (f"cannot reach the Hugging Face Hub at {endpoint} ({reason}), so {repo_id} was not "
                   "uploaded; check the internet connection and push again")
    elif type(exc).__name__ == "OfflineModeIsEnabled":
        message = (f"the Hugging Face Hub is switched off here (HF_HUB_OFFLINE is set), so {repo_id} was not "
                   "uploaded; unset HF_HUB_OFFLINE and push again")
    elif status in (401, 403):
        message = (f"the Hugging Face Hub refused the upload to {repo_id} (HTTP {status}): log in with "
                   "`hf auth login` or set HF_TOKEN to a token that may write to it")
    else:
        first = (str(exc).splitlines() or [""])[0][:200]
        message = f"uploading to {repo_id} failed: {type(exc).__name__}: {first}"
    return HubError(message.replace(token, "***") if token else message)


def _upload_copy(folder: Path, bundle: Bundle, repo_id: str, staging: Path) -> Path:
    """The folder as the Hub repo gets it, in ``staging``: its published files, the tokenizer written
    anew (under today's file names, whatever version wrote the folder) and the card's usage loading
    ``repo_id`` (a card is written when the folder has none)."""
    from . import card
    from .tokenizers import LEGACY_TOKENIZER_FILE, TOKENIZER_FILE
    from .tokenizers.sentencepiece import MODEL_FILE

    rewritten = {TOKENIZER_FILE, LEGACY_TOKENIZER_FILE, MODEL_FILE, CARD_FILE}
    for path in published_files(folder):
        if path.name not in rewritten:
            shutil.copyfile(path, staging / path.name)
    bundle.tokenizer.save(staging)
    text = read_card(folder)
    text = card.for_repo(text, repo_id) if text else card.render_card(
        {"name": bundle.name, "model": bundle.model.config.to_dict(), **bundle.info}, [], repo_id=repo_id)
    checkpoint.atomic_write_text(staging / CARD_FILE, text)
    return staging


def push_folder(folder: str | Path, repo_id: str, token: Optional[str] = None, private: bool = False,
                api=None) -> str:
    """Upload a model folder (not its resume checkpoint) to a Hub model repo; returns the repo URL.

    ``token`` falls back to HF_TOKEN or the Hub login; it is passed to huggingface_hub only and
    never printed, logged or written to the folder. Each call to the Hub has a deadline (the
    upload's grows with the folder's size), so a Hub that never answers fails instead of hanging.
    The folder itself is not changed: a copy with the card naming ``repo_id`` is uploaded.
    """
    import tempfile

    from huggingface_hub import HfApi

    if not str(folder).strip():
        raise ModelFolderError("no model folder given: give the folder of the model to upload")
    folder = Path(folder)
    bundle = load_folder(folder)  # refuse to publish a folder that would not load
    if not is_repo_id(repo_id):
        raise ConfigError(f"'{repo_id}' is not a Hub repo id; use the form owner/name")
    upload_deadline = UPLOAD_DEADLINE_S + _upload_bytes(folder) / UPLOAD_MIN_BYTES_PER_S
    endpoint = hub_endpoint()
    api = api or HfApi(endpoint=endpoint)
    with tempfile.TemporaryDirectory(prefix="textgen-upload-") as staging:
        upload = _upload_copy(folder, bundle, repo_id, Path(staging))
        try:
            url = _call_with_deadline(lambda: api.create_repo(repo_id, token=token, private=private,
                                                              exist_ok=True), HUB_CALL_DEADLINE_S)
            _call_with_deadline(lambda: api.upload_folder(
                folder_path=str(upload), repo_id=repo_id, token=token, allow_patterns=HUB_FILE_PATTERNS,
                ignore_patterns=HUB_IGNORE_PATTERNS, commit_message=f"Upload {folder.name} with textgen_core"),
                upload_deadline)
        except Exception as exc:  # network and auth errors vary by transport
            raise _push_failure(exc, repo_id, endpoint, token) from exc
    return str(url)
