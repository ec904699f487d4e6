"""ONNX export of a model's network, to run it without PyTorch (onnxruntime and others).

    textgen export shakespeare-char-lstm --onnx lstm.onnx      (needs the [export] extra: onnx, onnxruntime)

GRU and LSTM export their **step function**: inputs ``ids`` (batch, time) int64 and the state ``h``
(layers, batch, hidden), plus ``c`` for an LSTM; outputs ``logits`` (batch, time, vocab) and the new
state ``h_out`` (and ``c_out``). Read the prompt in one call from zero states, then feed one token
at a time with the state carried: the logits are the PyTorch model's, up to rounding.

CNN and attention models export the **full-sequence forward**: ``ids`` (batch, time) -> ``logits``.
The last position sees at most ``receptive_field`` tokens back (the ONNX file's metadata says how
many), so feeding the last ``receptive_field`` tokens at every step gives the same next token as
the model with its state. ``greedy_onnx`` is the loop for both kinds.

The file's metadata (``textgen.*`` keys) name the architecture, the kind, the vocabulary size, the
state's inputs and the receptive field. The tokenizer stays in the model folder: load it with
``tg.load`` (or ``load_tokenizer``) to turn text into ids and back.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .errors import ConfigError
from .models import LanguageModel

OPSET = 17
STEP, SEQUENCE = "step", "sequence"
STATE_NAMES = {"gru": ("h",), "lstm": ("h", "c")}
EXTRA_HINT = "ONNX export needs the onnx package: pip install onnx onnxruntime (the project's [export] extra)"


class _Step(nn.Module):
    """(ids, *state tensors) -> (logits, *new state tensors): the RNN's forward with a flat state."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        carried: Any = state if len(state) == 2 else state[0]
        logits, new_state = self.model(ids, carried)
        return (logits, *(new_state if isinstance(new_state, tuple) else (new_state,)))


class _Sequence(nn.Module):
    """ids -> logits over the whole sequence, from the start of the text."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)[0]


def export_kind(model: LanguageModel) -> str:
    return STEP if model.config.arch in STATE_NAMES else SEQUENCE


def _example_inputs(model: LanguageModel) -> tuple[torch.Tensor, ...]:
    # two time steps: a trace at one step would take the CNN's single-step shortcut for every length
    ids = torch.zeros(1, 2, dtype=torch.long)
    if export_kind(model) == SEQUENCE:
        return (ids,)
    state = model.init_state(1, "cpu")
    return (ids, *(state if isinstance(state, tuple) else (state,)))


def _names(model: LanguageModel) -> tuple[list[str], list[str], dict[str, dict[int, str]]]:
    """Input names, output names and their dynamic axes."""
    states = STATE_NAMES.get(model.config.arch, ())
    inputs, outputs = ["ids", *states], ["logits", *(f"{name}_out" for name in states)]
    axes = {"ids": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    axes.update({name: {1: "batch"} for name in [*inputs[1:], *outputs[1:]]})
    return inputs, outputs, axes


def _metadata(model: LanguageModel) -> dict[str, str]:
    from . import __version__

    return {"textgen.version": __version__, "textgen.arch": model.config.arch, "textgen.kind": export_kind(model),
            "textgen.vocab_size": str(model.config.vocab_size),
            "textgen.state": ",".join(STATE_NAMES.get(model.config.arch, ())),
            "textgen.receptive_field": str(getattr(model, "receptive_field", 0))}


def _add_metadata(path: Path, values: dict[str, str]) -> None:
    try:
        import onnx
    except ImportError:
        raise ConfigError(EXTRA_HINT) from None
    proto = onnx.load(str(path))
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))


def export_onnx(model: LanguageModel, path: str | Path) -> Path:
    """Write ``model``'s step function (GRU, LSTM) or full-sequence forward (CNN, attention) to ``path``."""
    try:
        import onnx  # noqa: F401  (the exporter writes, onnx adds the metadata)
    except ImportError:
        raise ConfigError(EXTRA_HINT) from None
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; give the ONNX file to write, e.g. {path / 'model.onnx'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).to("cpu").eval()   # the caller's model keeps its device and mode
    wrapper = (_Step(model) if export_kind(model) == STEP else _Sequence(model)).eval()
    inputs, outputs, axes = _names(model)
    with warnings.catch_warnings():
        # the trace fixes the shape checks of nn.GRU / nn.LSTM and the CNN's step shortcut, which is
        # what is wanted here; the batch warning is about h0 not being an input, and here it is one
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        # The TorchScript exporter: 0.1-1.5 s per model here and exact; torch's newer exporter (dynamo=True)
        # also exports all four architectures, but takes 10 s a model and needs onnxscript. Switch to it
        # when the upper bound on torch moves past the TorchScript exporter's removal.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(wrapper, _example_inputs(model), str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    _add_metadata(path, _metadata(model))
    return path


def greedy_onnx(path: str | Path, prompt_ids: list[int], length: int,
                banned_ids: tuple[int, ...] = ()) -> list[int]:
    """``length`` greedy next ids from an exported file with onnxruntime (``banned_ids`` never chosen)."""
    import numpy as np
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("running an ONNX file needs onnxruntime: pip install onnxruntime (the project's [export] "
                          "extra)") from None

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    window = int(meta.get("textgen.receptive_field", "0")) or None
    state: Optional[list] = None
    if meta.get("textgen.kind") == STEP:
        shapes = {i.name: i.shape for i in session.get_inputs()}
        state = [np.zeros([1 if dim == "batch" else dim for dim in shapes[name]], dtype=np.float32)
                 for name in meta["textgen.state"].split(",")]
    names = [i.name for i in session.get_inputs()]
    ids, feed, produced = list(prompt_ids), list(prompt_ids), []
    for _ in range(length):
        if state is None:   # the full-sequence forward: the last receptive_field tokens
            outputs = session.run(None, {"ids": np.array([ids[-window:] if window else ids], dtype=np.int64)})
        else:               # the step function: the new tokens and the carried state
            outputs = session.run(None, dict(zip(names, [np.array([feed], dtype=np.int64), *state])))
            state = list(outputs[1:])
        last = outputs[0][0, -1].astype(np.float64)
        last[list(banned_ids)] = -np.inf
        next_id = int(last.argmax())
        produced.append(next_id)
        ids.append(next_id)
        feed = [next_id]
    return produced
