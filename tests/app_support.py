"""Helpers for the Streamlit AppTest suites (tests/test_app_*.py): isolated folders, tiny settings."""
import json
import re
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from textgen_core import RunSettings, TrainConfig, read_text, train_model
from textgen_core.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")

SONG = ("O bury me not on the lone prairie,\nThese words came low and mournfully\n"
        "From the pallid lips of a youth who lay\nOn his dying bed at the close of day.\n\n"
        "Home, home on the range, where the deer and the antelope play,\n"
        "Where seldom is heard a discouraging word and the skies are not cloudy all day.\n\n") * 25
PRAIRIE = ("The wind blows over the prairie and the cattle low in the night.\n"
           "Sing me a song of the trail, of the river and the long ride home.\n") * 40


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    """Runs and pretrained folders under tmp_path, the Hub switched off, one torch thread (tiny
    models gain nothing from more, and the suite shares the machine); no job outlives the test."""
    monkeypatch.setenv("TEXTGEN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("TEXTGEN_PRETRAINED_DIR", str(tmp_path / "pretrained"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)
    for job in get_registry().active_jobs():
        job.stop()
        job.join(60)


def new_app(page: str = "corpus") -> AppTest:
    """A new session opened at ``app_pages/<page>.py`` (the app's own default is the home page)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.switch_page(f"app_pages/{page}.py")
    return at.run()


def upload(at: AppTest, data: bytes = SONG.encode(), name: str = "song.txt") -> AppTest:
    at.file_uploader(key="corpus_upload").set_value([(name, data, "text/plain")])
    return at.run()


def set_values(at: AppTest, **values) -> AppTest:
    """Set widgets by key (number inputs, selectboxes, radios, sliders, toggles), then rerun. A widget
    that an earlier value brings onto the page (``budget_steps`` after ``budget_kind="steps"``) is set
    after a rerun."""
    for key, value in values.items():
        try:
            widget = at.get_by_key(key)
        except KeyError:
            at.run()
            widget = at.get_by_key(key)
        widget.set_value(value)
    return at.run()


def click(at: AppTest, label: str) -> AppTest:
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0].click().run()


def press(at: AppTest, label: str, **values) -> AppTest:
    """Set widgets by key and click the button ``label`` in the same run: the fields of a form (the
    Generate prompt) count only when its submit button is pressed with them."""
    for key, value in values.items():
        at.get_by_key(key).set_value(value)
    return click(at, label)


def join(jobs, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for job in jobs:
        assert job.join(max(1.0, deadline - time.monotonic())), f"{job.name} still {job.status}"


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def shown_texts(at: AppTest) -> list[str]:
    """The page's code blocks outside its expanders (there the Generate page lists earlier generations)."""
    inside = {id(code) for expander in at.expander for code in expander.code}
    return [code.value for code in at.code if id(code) not in inside]


def plain(markdown: str) -> str:
    """Markdown's backslash escapes undone: the text as the browser shows it (names and engine
    messages reach Markdown escaped)."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)


def all_text(at: AppTest) -> str:
    """Everything the page shows as text (markdown, alerts, code, captions, metrics, inputs)."""
    parts = []
    for kind in ("markdown", "caption", "code", "error", "warning", "info", "success", "title",
                 "subheader", "text"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    parts += [str(t.value) for t in at.text_input]
    return "\n".join(parts)


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def tiny_settings(steps: int = 20) -> RunSettings:
    return RunSettings(arch="gru", preset="tiny", train=TrainConfig(
        batch_size=8, seq_len=32, max_steps=steps, eval_every=10, log_every=5, eval_streams=4, warmup_steps=2))


@pytest.fixture(scope="session")
def trained_folder(tmp_path_factory) -> Path:
    """A tiny trained model folder, made once for the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        folder = tmp_path_factory.mktemp("models") / "song-gru-tiny"
        train_model(read_text(SONG.encode(), "song.txt"), tiny_settings(), folder, name="song-gru-tiny")
    finally:
        torch.set_num_threads(threads)
    return folder


@pytest.fixture()
def pretrained(app_env, trained_folder) -> Path:
    """The tiny model as the only folder of pretrained/."""
    import shutil
    target = app_env / "pretrained" / trained_folder.name
    shutil.copytree(trained_folder, target, ignore=shutil.ignore_patterns("checkpoint"))
    return target
