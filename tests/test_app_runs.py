"""Workspaces in the app (AppTest): the address keeps the workspace, a reload finds the corpus, the
choices and the runs again (a running job with its whole curve), and the Runs page lists, overlays,
renames, deletes, exports and resumes the workspace's runs; another workspace sees none of them."""
import csv
import io
import time

import pytest
from streamlit.testing.v1 import AppTest

from textgen_core import read_text, train_model
from textgen_core.jobs import runs_dir
from textgen_core.registry import get_registry
from textgen_core.workspace import Workspace, run_history

from app_support import (  # noqa: F401
    APP,
    PRAIRIE,
    SONG,
    all_text,
    app_env,
    click,
    join,
    new_app,
    plain,
    plotly_specs,
    press,
    set_values,
    texts,
    tiny_settings,
    upload,
)

pytestmark = pytest.mark.app
TINY = dict(arch="lstm", preset="tiny", batch=8, seq_len=32, eval_every=10, patience=0, budget_kind="steps",
            budget_steps=30)


def page(at, name: str):
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def reload(workspace_id: str, name: str = "corpus") -> AppTest:
    """The same address opened again: a new session with ``?w=<id>``, at ``app_pages/<name>.py`` (AppTest
    draws the sidebar only for the app's default page, home)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["w"] = workspace_id
    if name != "home":
        at.switch_page(f"app_pages/{name}.py")
    return at.run()


def workspace_with_runs(*specs) -> Workspace:
    """A workspace holding runs trained directly (name, corpus text, tokenizer, steps), oldest first."""
    workspace, _ = Workspace.for_app(runs_dir(), None)
    for name, text, tokenizer, steps in specs:
        settings = tiny_settings(steps)
        settings.tokenizer, settings.vocab_size = tokenizer, (300 if tokenizer == "word" else None)
        train_model(read_text(text.encode(), f"{name}.txt"), settings, workspace.root / name, name=name)
        time.sleep(1.05)   # distinct start times: newest first is well defined
    return workspace


def test_the_address_keeps_the_workspace_and_a_reload_finds_corpus_choices_and_runs(app_env):
    at = upload(new_app())
    workspace_id = at.session_state["owner"]
    assert at.query_params["w"] == workspace_id and len(workspace_id) == 32
    at = set_values(set_values(at, tokenizer="word"), vocab_word=500, val_fraction=0.2)
    at = click(set_values(page(at, "train"), **TINY), "Start")
    assert at.query_params["w"] == workspace_id   # a page switch keeps the address
    job = at.session_state["train_job"]
    assert job.out_dir.parent == runs_dir() / workspace_id
    join([job])

    again = reload(workspace_id)
    assert not again.exception and again.session_state["owner"] == workspace_id
    assert [h.value for h in again.subheader][0] == "song.txt"   # the corpus, from the workspace
    assert again.selectbox(key="tokenizer").value == "word"
    assert again.number_input(key="vocab_word").value == 500 and again.slider(key="val_fraction").value == 0.2
    upload(again, PRAIRIE.encode(), "prairie.txt")   # another text; the first stays in the workspace
    assert again.session_state["corpus"].name == "prairie.txt"
    again = set_values(again, corpus_source="Saved in this workspace")
    song = next(c["key"] for c in Workspace(runs_dir() / workspace_id).corpora() if c["name"] == "song.txt")
    again = click(set_values(again, saved_corpus=song), "Use this corpus")
    assert again.session_state["corpus"].name == "song.txt"
    again = page(again, "train")
    assert again.session_state["train_job"].out_dir == job.out_dir   # read from disk now
    assert any("finished: reached the step budget (30 steps)" in t for t in texts(again.success))
    traces = {t.get("name"): t for t in plotly_specs(again)[0]["data"]}
    assert traces["validation loss"]["x"] == [10, 20, 30]
    assert [d.proto.label for d in again.get("download_button")] == ["Download the model (.zip)"]

    again = press(page(again, "generate"), "Generate", gen_length=20, gen_prompt="Home")
    assert again.selectbox(key="gen_model").value.startswith("lstm-tiny-word · trained here at ")
    generated = texts(again.code)
    last = page(reload(workspace_id), "generate")   # the last generation comes back too
    assert generated and texts(last.code) == generated


@pytest.mark.parametrize("requested", ["../../etc", "0" * 32, "A" * 32, "x"])
def test_a_malformed_or_unknown_id_gets_a_new_workspace(app_env, requested):
    at = reload(requested)
    assert not at.exception
    owner = at.session_state["owner"]
    assert owner != requested and at.query_params["w"] == owner and len(owner) == 32
    assert [p.name for p in runs_dir().iterdir()] == [owner]   # nothing reached the disk with the bad id
    assert any("Upload a `.txt` file" in t for t in texts(at.info))


def test_a_reload_mid_training_shows_the_same_job_with_its_curve_and_stop_works(app_env):
    at = click(set_values(page(upload(new_app()), "train"), **{**TINY, "budget_steps": 100_000, "eval_every": 5}),
               "Start")
    job = at.session_state["train_job"]
    deadline = time.monotonic() + 60
    while len(job.snapshot().evals) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    again = reload(at.session_state["owner"], "home")
    assert "**Training:** 1 job of this workspace" in texts(again.sidebar.markdown)
    again = page(again, "train")
    assert again.session_state["train_job"] is job   # the live job, not a copy
    shown = {t.get("name"): t for t in plotly_specs(again)[0]["data"]}["validation loss"]["x"]
    assert len(shown) >= 2 and shown[:2] == [5, 10]   # the whole curve so far
    again = click(again, "Stop")
    join([job])
    again.run()
    assert any("stopped by request" in t for t in texts(again.warning))


def test_a_reload_finds_the_compare_runs_and_samples_from_them(app_env):
    at = page(upload(new_app()), "compare")
    at = set_values(at, cmp_arch_0="gru", cmp_arch_1="cnn", cmp_preset_0="tiny", cmp_preset_1="tiny",
                    cmp_steps=20, cmp_batch=8, cmp_seq_len=32, cmp_eval_every=10)
    jobs = click(at, "Start comparison").session_state["compare_jobs"]
    join(jobs)
    again = page(reload(at.session_state["owner"]), "compare")
    assert [j.out_dir for j in again.session_state["compare_jobs"]] == [j.out_dir for j in jobs]
    assert list(again.dataframe[0].value["configuration"]) == ["gru-tiny-char", "cnn-tiny-char"]
    again = click(set_values(again, cmp_prompt="Home", cmp_chars=40), "Sample from each")
    assert not again.exception and [t[:4] for t in texts(again.code)] == ["Home", "Home"]


# --- the Runs page -------------------------------------------------------------------------------------
def test_runs_page_lists_overlays_and_exports_the_history(app_env, monkeypatch):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    sent = []
    original = MemoryMediaFileStorage.load_and_get_id
    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id",
                        lambda self, data, mimetype, *a, **k: sent.append((mimetype, data))
                        or original(self, data, mimetype, *a, **k))
    workspace = workspace_with_runs(("song-char", SONG, "char", 20), ("prairie-word", PRAIRIE, "word", 30))
    at = page(reload(workspace.id), "runs")
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["run"]) == ["prairie-word", "song-char"]   # newest first
    assert list(table["status"]) == ["budget reached"] * 2 and list(table["tokenizer"]) == ["word", "char"]
    assert list(table["steps"]) == [30, 20] and all(table["best val bits/char"] > 0)
    assert "of this workspace's 2.0 GB used (2 runs)" in at.get("progress")[0].proto.text

    at = set_values(at, runs_overlay=["song-char", "prairie-word"])
    overlay = plotly_specs(at)[0]
    lines = [t for t in overlay["data"] if t.get("name")]
    assert [t["name"].split(" · ")[0] for t in lines] == ["song-char", "prairie-word"]
    for trace, folder in zip(lines, ("song-char", "prairie-word")):
        evals = [p for p in run_history(workspace.root / folder) if p["kind"] == "eval"]
        assert trace["y"] == [p["val_bpc"] for p in evals]   # bits per char: comparable across tokenizers
    assert overlay["layout"]["yaxis"]["title"]["text"] == "validation bits per character"

    at = set_values(at, runs_selected="song-char")
    samples = [s for s in at.get("select_slider") if s.label == "Sample after step"]
    assert samples and samples[0].options == ["10", "20"]
    csv_data = [data for mimetype, data in sent if mimetype == "text/csv"][-1]   # the selected run's
    rows = list(csv.DictReader(io.StringIO(csv_data.decode())))
    history = run_history(workspace.root / "song-char")
    assert len(rows) == len(history) and {r["kind"] for r in rows} == {"train", "eval"}
    assert [float(r["val_bpc"]) for r in rows if r["kind"] == "eval"] == [p["val_bpc"] for p in history
                                                                          if p["kind"] == "eval"]


def test_runs_page_renames_and_deletes_after_a_confirmation(app_env):
    workspace = workspace_with_runs(("first", SONG, "char", 10), ("second", SONG, "char", 10))
    at = set_values(page(reload(workspace.id), "runs"), runs_selected="first")
    name = "my **song** [x](y)"
    at.text_input(key="runs_new_name_first").set_value(name)
    at = click(at, "Rename")
    assert not at.exception and workspace.run("first").display_name == name
    assert list(at.dataframe[0].value["run"]) == ["second", name]
    assert any("Renamed first to" in plain(t) for t in texts(at.success))
    assert not any(name in e.value for e in at.success)   # shown escaped

    at = click(at, "Delete")
    assert any("Delete **my \\*\\*song" in t for t in texts(at.warning))
    at = click(at, "Cancel")
    assert (workspace.root / "first").is_dir() and not any("Delete **" in t for t in texts(at.warning))
    at = click(click(at, "Delete"), "Yes, delete")
    assert not at.exception and not (workspace.root / "first").exists()
    assert list(at.dataframe[0].value["run"]) == ["second"]
    assert any(f"Deleted {name}" in plain(t) for t in texts(at.success))


def test_deleting_a_training_run_stops_it_first(app_env):
    at = click(set_values(page(upload(new_app()), "train"), **{**TINY, "budget_steps": 100_000, "eval_every": 5}),
               "Start")
    job = at.session_state["train_job"]
    at = page(at, "runs")
    assert any(b.label == "Stop" for b in at.button)   # it trains here: shown live
    at = click(click(at, "Delete"), "Yes, delete")
    assert not at.exception and not at.error
    assert not job.active and not job.out_dir.exists()
    assert any("No runs in this workspace yet" in t for t in texts(at.info))


def test_open_in_generate_and_resume_an_interrupted_run_from_the_runs_page(app_env):
    import json
    workspace = workspace_with_runs(("song", SONG, "char", 20))
    status = workspace.root / "song" / "status.json"   # as a killed server leaves it: running, and no lock held
    status.write_text(json.dumps({**json.loads(status.read_text()), "status": "running"}))
    at = page(reload(workspace.id), "runs")
    assert any("**song** was interrupted at step 20: the training process ended without finishing" in t
               for t in texts(at.warning))
    resume = [b for b in at.button if b.label == "Resume"]
    assert resume and resume[0].disabled   # its text is not in the workspace, and the page says so
    assert any("is not in this workspace; upload it again on the Corpus page" in t for t in texts(at.warning))
    at = click(at, "Open in Generate")
    assert not at.exception and at.selectbox(key="gen_model").value.startswith("song · trained here at ")
    assert at.query_params["w"] == workspace.id

    workspace.save_corpus(read_text(SONG.encode(), "song.txt"))
    at = page(at, "runs")
    assert at.number_input(key="runs_budget_song").value == 40   # its checkpoint is at its budget: twice as far
    at = click(at, "Resume")
    assert not at.exception and not at.error
    join(get_registry().active_jobs(workspace.id))
    at.run()
    assert workspace.run("song").step == 40 and workspace.run("song").label == "budget reached"
    evals = [p["step"] for p in run_history(workspace.root / "song") if p["kind"] == "eval"]
    assert evals == [10, 20, 30, 40]


def test_past_the_quota_start_is_refused_naming_what_to_delete(app_env, monkeypatch):
    workspace = workspace_with_runs(("big-run", SONG, "char", 10))
    monkeypatch.setenv("TEXTGEN_WORKSPACE_QUOTA_MB", "0.01")
    at = click(set_values(page(upload(reload(workspace.id)), "train"), **TINY), "Start")
    (error,) = map(plain, texts(at.error))
    assert "this workspace uses" in error and "of its 10.0 KB" in error
    assert "delete runs you no longer need on the Runs page first (the largest: big-run" in error
    assert at.session_state["train_job"] is None
    at = click(page(at, "compare"), "Start comparison")
    assert any("of its 10.0 KB" in plain(t) for t in texts(at.error)) and at.session_state["compare_jobs"] == []
    at = page(at, "runs")
    assert "of this workspace's 10.0 KB used" in at.get("progress")[0].proto.text


def test_another_workspace_sees_none_of_the_runs(app_env):
    workspace = workspace_with_runs(("song", SONG, "char", 10))
    other = new_app()
    assert other.session_state["owner"] != workspace.id
    assert any("No runs in this workspace yet" in t for t in texts(page(other, "runs").info))
    other = page(other, "models")
    assert any("No models yet" in t for t in texts(other.info))
    other.text_input(key="hub_repo").set_value(str(workspace.root / "song"))   # a server path: never a model
    [b for b in other.button if b.label == "Load"][0].click()
    other.run()
    assert other.error and not other.session_state["hub_bundles"]


def test_a_reload_finds_the_recipe_and_its_runs(app_env):
    at = page(new_app(), "recipes")
    at = set_values(at, recipe_minutes=0.02).button(key="recipe_run_word-gru-paragraph").click().run()
    (job,) = at.session_state["recipe_jobs"]
    again = page(reload(at.session_state["owner"]), "recipes")
    assert again.session_state["recipe_name"] == "word-gru-paragraph"
    assert [j.out_dir for j in again.session_state["recipe_jobs"]] == [job.out_dir]
    join([job])
    again.run()
    assert not again.exception and list(again.dataframe[0].value["status"]) == ["finished"]
    assert texts(again.code)[0].startswith("A model")   # sampled from the run read back from disk
