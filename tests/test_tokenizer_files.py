"""Tokenizer files mean what their names say: the project's own format is textgen_tokenizer.json
(tokenizer.json is the Hugging Face `tokenizers` name), SentencePiece keeps tokenizer.model, and
folders written before with a tokenizer.json of the project's format still load, resume and push."""
from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch

import textgen_core as tg
from textgen_core import hub, outdir, pretrained
from textgen_core.cli import main
from textgen_core.errors import ModelFolderError
from textgen_core.tokenizers import (
    LEGACY_TOKENIZER_FILE,
    TOKENIZER_FILE,
    TOKENIZER_KINDS,
    load_tokenizer,
    make_tokenizer,
)

from tests.test_hub import write_folder

TEXT = "to be or not to be, that is the question.\nWhether 'tis nobler in the mind to suffer\n" * 20
PROBE = "To be, or not? The question: zyzzyva!\n"
BUNDLED = [entry.folder for entry in pretrained.catalog(pretrained.PRETRAINED_DIR)]


def fitted(kind: str):
    return make_tokenizer(kind, 300 if kind == "sentencepiece" else None).fit(TEXT)


def as_old_folder(folder: Path) -> Path:
    """The folder as an earlier version wrote it: the project's format under tokenizer.json."""
    (folder / TOKENIZER_FILE).rename(folder / LEGACY_TOKENIZER_FILE)
    return folder


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_save_writes_the_projects_format_under_its_own_name(tmp_path, kind):
    tokenizer = fitted(kind)
    tokenizer.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([TOKENIZER_FILE] + (["tokenizer.model"] if kind == "sentencepiece" else []))
    state = json.loads((tmp_path / TOKENIZER_FILE).read_text(encoding="utf-8"))
    assert state["type"] == kind and "model" not in state   # not a `tokenizers` file, nor named like one
    assert load_tokenizer(tmp_path).encode(PROBE) == tokenizer.encode(PROBE)


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_a_folder_with_the_old_name_loads_the_same_tokenizer(tmp_path, kind):
    tokenizer = fitted(kind)
    tokenizer.save(tmp_path)
    loaded = load_tokenizer(as_old_folder(tmp_path))
    assert loaded.encode(PROBE) == tokenizer.encode(PROBE)
    assert loaded.decode(tokenizer.encode(PROBE)) == tokenizer.decode(tokenizer.encode(PROBE))


@pytest.mark.parametrize("folder", BUNDLED, ids=[f.name for f in BUNDLED])
def test_bundled_models_as_written_before_still_load(tmp_path, folder):
    """Each bundled model with its tokenizer under the old name: the same ids and logits."""
    old = as_old_folder(Path(shutil.copytree(folder, tmp_path / folder.name)))
    current, before = tg.load(folder), tg.load(old)
    ids = current.tokenizer.encode("ROMEO: the king")
    assert before.tokenizer.encode("ROMEO: the king") == ids
    with torch.no_grad():
        torch.testing.assert_close(before.model(torch.tensor([ids]))[0], current.model(torch.tensor([ids]))[0],
                                   rtol=0, atol=0)


def test_saving_again_replaces_the_old_file_and_leaves_a_foreign_one(tmp_path):
    tokenizer = fitted("word")
    tokenizer.save(tmp_path)
    as_old_folder(tmp_path)
    tokenizer.save(tmp_path)   # e.g. a resumed run of an old folder
    assert not (tmp_path / LEGACY_TOKENIZER_FILE).exists() and (tmp_path / TOKENIZER_FILE).is_file()
    foreign = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}
    (tmp_path / LEGACY_TOKENIZER_FILE).write_text(json.dumps(foreign))
    tokenizer.save(tmp_path)
    assert json.loads((tmp_path / LEGACY_TOKENIZER_FILE).read_text()) == foreign   # not the project's: kept


def test_a_hugging_face_tokenizers_file_alone_is_refused_by_name(tmp_path):
    (tmp_path / LEGACY_TOKENIZER_FILE).write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    with pytest.raises(ModelFolderError, match="Hugging Face `tokenizers` file, not this project's tokenizer"):
        load_tokenizer(tmp_path)


def test_every_file_of_a_folder_is_a_run_file_and_published(tmp_path):
    write_folder(tmp_path, kind="sentencepiece")
    for path in tmp_path.iterdir():
        assert path.name in outdir.RUN_FILES, path.name
        assert any(fnmatch(path.name, pattern) for pattern in hub.HUB_FILE_PATTERNS), path.name
    assert TOKENIZER_FILE in [p.name for p in hub.published_files(tmp_path)]


TRAIN = ["--model", "gru", "--preset", "tiny", "--max-steps", "10", "--eval-every", "5", "--seq-len", "16",
         "--batch-size", "4", "--device", "cpu"]


def test_a_run_written_before_resumes_and_gets_the_new_name(tmp_path, capsys):
    corpus = tmp_path / "poem.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "run"
    assert main(["train", str(corpus), "--out", str(out), *TRAIN]) == 0
    as_old_folder(out)
    assert tg.load(out).tokenizer.kind == "char"
    assert main(["train", str(corpus), "--out", str(out), "--resume", *TRAIN[:4], "--max-steps", "15",
                 *TRAIN[6:]]) == 0, capsys.readouterr().err
    assert (out / TOKENIZER_FILE).is_file() and not (out / LEGACY_TOKENIZER_FILE).exists()
    assert tg.load(out).info["steps"] == 15


def test_an_old_folder_is_pushed_under_the_new_names(tmp_path):
    class Recorder:
        def create_repo(self, repo_id, **kwargs):
            return f"https://hub.example/{repo_id}"

        def upload_folder(self, folder_path, **kwargs):
            self.names = sorted(p.name for p in Path(folder_path).iterdir())

    write_folder(tmp_path / "old", kind="sentencepiece")
    as_old_folder(tmp_path / "old")
    api = Recorder()
    hub.push_folder(tmp_path / "old", "me/old-model", api=api)
    assert TOKENIZER_FILE in api.names and "tokenizer.model" in api.names
    assert LEGACY_TOKENIZER_FILE not in api.names
    assert (tmp_path / "old" / LEGACY_TOKENIZER_FILE).is_file()   # the folder itself is left as it was
