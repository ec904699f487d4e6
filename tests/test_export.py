"""ONNX export: GRU and LSTM as a step function (ids, state) -> (logits, state), CNN and attention as
the full-sequence forward; 100 greedy tokens with onnxruntime are the text PyTorch generates."""
from __future__ import annotations

import sys

import pytest
import torch

import textgen_core as tg
from textgen_core import export, pretrained, sampling
from textgen_core.cli import main
from textgen_core.errors import ConfigError

BUNDLED = {entry.name: entry.folder for entry in pretrained.catalog(pretrained.PRETRAINED_DIR)}
INPUTS = {"gru": ["ids", "h"], "lstm": ["ids", "h", "c"], "cnn": ["ids"], "attention": ["ids"]}


@pytest.fixture(scope="module")
def onnxruntime():
    pytest.importorskip("onnx")
    return pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_greedy_text_from_onnxruntime_is_the_torch_text(tmp_path, onnxruntime, name):
    bundle = tg.load(BUNDLED[name])
    path = export.export_onnx(bundle.model, tmp_path / f"{name}.onnx")
    prompt = "ROMEO:" if name.startswith("shakespeare") else "The "
    expected = tg.generate(bundle, prompt, length=100, temperature=0)[0]
    ids = export.greedy_onnx(path, sampling.start_ids(bundle.tokenizer, prompt), 100, bundle.tokenizer.never_generate)
    assert prompt + bundle.tokenizer.decode(ids) == expected
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == INPUTS[bundle.model.config.arch]
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["textgen.kind"] == ("step" if bundle.model.config.arch in ("gru", "lstm") else "sequence")
    assert int(meta["textgen.vocab_size"]) == bundle.tokenizer.vocab_size


def test_the_step_function_takes_any_batch_and_length(tmp_path, onnxruntime):
    bundle = tg.load(BUNDLED["shakespeare-char-lstm"])
    path = export.export_onnx(bundle.model, tmp_path / "lstm.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids = torch.randint(0, bundle.tokenizer.vocab_size, (3, 11))
    h, c = (torch.randn_like(t) for t in bundle.model.init_state(3, "cpu"))
    logits, h_out, c_out = session.run(None, {"ids": ids.numpy(), "h": h.numpy(), "c": c.numpy()})
    with torch.no_grad():
        expected, (eh, ec) = bundle.model.eval()(ids, (h, c))
    for got, want in ((logits, expected), (h_out, eh), (c_out, ec)):
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4)


def test_the_cli_exports_and_keeps_the_model_as_it_was(tmp_path, onnxruntime, capsys):
    assert main(["export", str(BUNDLED["lyrics-char-cnn"]), "--onnx", str(tmp_path / "out" / "cnn.onnx")]) == 0
    assert (tmp_path / "out" / "cnn.onnx").is_file()
    assert "full-sequence forward" in capsys.readouterr().out
    bundle = tg.load(BUNDLED["shakespeare-char-gru"])
    bundle.model.train()
    export.export_onnx(bundle.model, tmp_path / "gru.onnx")
    assert bundle.model.training and bundle.model.device.type == "cpu"


def test_a_folder_as_the_file_is_refused(tmp_path, onnxruntime, capsys):
    assert main(["export", str(BUNDLED["shakespeare-char-gru"]), "--onnx", str(tmp_path)]) == 2
    assert "is a folder; give the ONNX file to write" in capsys.readouterr().err


def test_without_the_extra_it_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # import onnx then fails, as where it is not installed
    with pytest.raises(ConfigError, match=r"pip install onnx onnxruntime \(the project's \[export\] extra\)"):
        export.export_onnx(tg.load(BUNDLED["shakespeare-char-gru"]).model, tmp_path / "m.onnx")
