"""Corpus page (AppTest): upload, statistics, tokenizer preview, refusals with the engine's message."""
import pytest
from streamlit.testing.v1 import AppTest

from textgen_core import read_text

from app_support import APP, SONG, all_text, app_env, new_app, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app


def test_without_a_corpus_it_says_what_to_do(app_env):
    at = new_app()
    assert not at.exception
    assert any("Upload a `.txt` file" in t for t in texts(at.info))
    first = AppTest.from_file(APP, default_timeout=60).run()   # AppTest draws the sidebar on the first run only
    assert "No corpus yet" in " ".join(texts(first.sidebar.caption))


def test_upload_shows_statistics_preview_and_tokens(app_env):
    at = upload(new_app())
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"encoding": "utf-8", "characters": f"{len(SONG):,}",
                       "distinct characters": str(len(set(SONG))), "words": f"{len(SONG.split()):,}",
                       "lines": f"{SONG.count(chr(10)):,}"}
    assert "O bury me not" in at.code[0].value  # the preview
    shown = all_text(at)
    assert 'class="tok tok0"' in shown and f"vocabulary size **{len(set(SONG)) + 1}**" in shown


def test_the_sidebar_shows_the_corpus(app_env):
    # AppTest drops the sidebar of st.navigation apps after the first run, so start with the corpus
    # already in the session.
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["corpus"] = read_text(SONG.encode(), "song.txt")
    at.run()
    assert not at.exception
    assert "song.txt" in " ".join(texts(at.sidebar.markdown))


def test_word_and_sentencepiece_tokenizers(app_env):
    at = upload(new_app())
    at = set_values(at, tokenizer="word")
    assert not at.exception and not at.error
    assert "characters per token" in all_text(at) and "(1.00 characters per token)" not in all_text(at)
    at = set_values(set_values(at, tokenizer="sentencepiece"), vocab_sp=300)
    assert not at.exception and not at.error
    assert "vocabulary size" in all_text(at)
    at = set_values(at, val_fraction=0.2)
    assert f"validating on the last {int(len(SONG) * 0.2):,}" in all_text(at)


@pytest.mark.parametrize("data, name, message", [
    (b"", "empty.txt", "is empty (0 bytes)"),
    (b"\x00\x01\x02binary" * 50, "blob.txt", "looks like a binary file"),
    (b"too short", "short.txt", "has only 9 characters"),
])
def test_refused_uploads_show_the_engine_message(app_env, data, name, message):
    at = upload(new_app(), data, name)
    assert not at.exception
    assert len(at.error) == 1 and message in at.error[0].value and name in at.error[0].value


def test_without_built_in_corpora_it_names_the_data_folder(app_env, tmp_path, monkeypatch):
    empty = tmp_path / "no-texts"
    empty.mkdir()
    monkeypatch.setenv("TEXTGEN_DATA_DIR", str(empty))
    at = new_app()
    at.radio(key="corpus_source").set_value("Built-in corpus").run()
    assert not at.exception
    shown = " ".join(texts(at.info))
    assert "No built-in corpora here" in shown and "no-texts" in shown and "TEXTGEN_DATA_DIR" in shown
