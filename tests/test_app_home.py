"""Home page (AppTest): the first page of the app, a one-click try of a bundled model, the three steps
as links that keep the workspace, and the workspace's running jobs."""
import time
import urllib.parse

import pytest
from streamlit.testing.v1 import AppTest

import textgen_core as tg
from textgen_core import pretrained
from ui.sampling import tokens_for_chars
from ui.text import escape_markdown

from app_support import APP, app_env, click, join, new_app, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app
TRY_CHARS = 400


def home() -> AppTest:
    return AppTest.from_file(APP, default_timeout=60).run()   # the app's default page


def test_home_is_the_first_page_and_links_the_steps_in_this_workspace(app_env):
    at = home()
    assert not at.exception
    assert [t.value for t in at.title] == ["Welcome"]
    main = [link.proto for link in at.main.get("page_link")]
    steps = {link.label: link for link in main if link.label[:2] in ("1.", "2.", "3.")}
    assert {label: link.page for label, link in steps.items()} == {
        "1. Upload a corpus": "corpus", "2. Train": "train", "3. Generate": "generate"}
    owner = at.session_state["owner"]
    assert all(urllib.parse.parse_qs(link.query_string) == {"w": [owner]} for link in main)
    # the sidebar lists every page, in order, each link keeping the workspace too
    sidebar = [link.proto for link in at.sidebar.get("page_link")]
    assert [link.label for link in sidebar] == ["Home", "Corpus", "Train", "Compare", "Recipes", "Generate",
                                                "Inspect", "Models", "Runs"]
    assert all(urllib.parse.parse_qs(link.query_string) == {"w": [owner]} for link in sidebar)
    assert "Nothing is training in this workspace." in texts(at.caption)
    # no bundled model here (the test's pretrained folder is empty): it says what to do instead
    assert any("No pretrained model comes with this installation" in t for t in texts(at.info))


def test_the_try_writes_with_a_bundled_model(app_env, monkeypatch):
    monkeypatch.setenv("TEXTGEN_PRETRAINED_DIR", str(pretrained.PRETRAINED_DIR))
    at = home()
    first = pretrained.catalog()[0]
    assert at.selectbox(key="home_model").value == first.name
    assert at.selectbox(key="home_model").options == [e.name for e in pretrained.catalog()]
    assert not at.code                                       # nothing loaded or sampled before the click
    started = time.monotonic()
    at = click(at, "Generate")
    took = time.monotonic() - started
    assert not at.exception and not at.error
    (text,) = texts(at.code)
    bundle = tg.load(first.folder)
    assert text == tg.generate(bundle, "", tokens_for_chars(bundle, TRY_CHARS), 0.8, seed=1)[0]
    assert len(text) >= 200 and took < 5, took
    at.text_area(key="home_prompt").set_value("ROMEO:")      # the next try: with a prompt, a new seed
    at = click(at, "Generate")
    (again,) = texts(at.code)
    assert again == tg.generate(bundle, "ROMEO:", tokens_for_chars(bundle, TRY_CHARS), 0.8, seed=2)[0]
    at.run()                                                  # a rerun shows the text again
    assert texts(at.code) == [again]


def test_home_shows_what_is_training(app_env):
    at = upload(new_app())
    at.switch_page("app_pages/train.py")
    at = click(set_values(at.run(), preset="tiny", batch=8, seq_len=32, eval_every=10, budget_kind="steps",
                          budget_steps=100_000), "Start")
    job = at.session_state["train_job"]
    at.switch_page("app_pages/home.py")
    at = at.run()
    assert not at.exception
    (bar,) = at.main.get("progress")
    assert bar.proto.text.startswith(f"**{escape_markdown(job.name)}** · ") and "step " in bar.proto.text
    job.stop()
    join([job])
