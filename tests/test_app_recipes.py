"""Recipes page (AppTest): every recipe listed, one click starts its runs as jobs (waiting for room under
the job caps), a missing corpus is a clear error, and a finished recipe shows its table, curves and samples."""
import pytest

from textgen_core.recipes import RECIPES
from textgen_core.registry import get_registry

from app_support import all_text, app_env, click, join, new_app, plain, plotly_specs, set_values, texts  # noqa: F401
from tests.conftest import shared_corpus

pytestmark = pytest.mark.app


def recipes_page(at):
    at.switch_page("app_pages/recipes.py")
    return at.run()


def run_recipe(at, name):
    return at.button(key=f"recipe_run_{name}").click().run()


def stop_all(at):
    at = click(at, "Stop all")
    join(at.session_state["recipe_jobs"])
    return at


def test_lists_all_five_recipes(app_env):
    at = recipes_page(new_app())
    assert not at.exception and not at.error
    assert len(RECIPES) == 5 and all(at.button(key=f"recipe_run_{name}").label == "Run" for name in RECIPES)
    shown = all_text(at)
    assert all(item.title in shown for item in RECIPES.values())
    assert at.number_input(key="recipe_minutes").value == 2.0


def test_missing_corpus_folder_is_a_clear_error(app_env, tmp_path, monkeypatch):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("TEXTGEN_DATA_DIR", str(empty))
    at = run_recipe(recipes_page(new_app()), "shakespeare-gru")
    assert not at.exception
    (error,) = map(plain, texts(at.error))
    assert "tinyshakespeare.txt" in error and str(empty) in error and "set TEXTGEN_DATA_DIR" in error
    assert at.session_state["recipe_jobs"] == []


def test_overfitting_lab_queues_its_five_runs_one_after_another(app_env, monkeypatch):
    monkeypatch.setenv("TEXTGEN_DATA_DIR", str(shared_corpus("lyrics_public_domain.txt").parent))
    at = set_values(recipes_page(new_app()), recipe_minutes=0.05)
    at = run_recipe(at, "overfitting-lab")
    assert not at.exception and not at.error and not at.warning
    jobs = at.session_state["recipe_jobs"]
    assert [j.name for j in jobs] == [f"overfitting-lab-{r.label}" for r in RECIPES["overfitting-lab"].runs]
    assert all(j.settings.train.max_minutes == 0.05 for j in jobs)
    assert jobs[0].status in ("running", "finished") and {j.status for j in jobs[1:]} == {"queued"}
    assert all(j in get_registry().active_jobs(at.session_state["owner"]) for j in jobs[1:])
    assert at.session_state["recipe_name"] == "overfitting-lab"
    assert "the star marks the best point" in all_text(at)
    at = stop_all(at)
    assert all(not j.active for j in jobs)


def test_runs_beyond_the_job_cap_wait_and_say_so(app_env, monkeypatch):
    monkeypatch.setenv("TEXTGEN_DATA_DIR", str(shared_corpus("lyrics_public_domain.txt").parent))
    monkeypatch.setattr(get_registry(), "max_per_owner", 2)
    at = set_values(recipes_page(new_app()), recipe_minutes=0.05)
    at = run_recipe(at, "lyrics-gru-cnn-attention")
    assert not at.exception and not at.error
    jobs = at.session_state["recipe_jobs"]
    assert len(jobs) == 4
    submitted = get_registry().active_jobs(at.session_state["owner"])
    assert jobs[0] in submitted and jobs[1] in submitted
    assert jobs[2] not in submitted and jobs[3] not in submitted
    (warning,) = texts(at.warning)
    assert "2 runs not started yet" in warning and "at most 2 trainings" in warning
    assert all(b.disabled for b in at.button if b.label == "Run")
    for job in jobs[:2]:  # room again: the next poll starts the waiting runs
        job.stop()
    join(jobs[:2])
    at.run()
    assert not at.exception and not any("not started yet" in w for w in texts(at.warning))
    assert jobs[2].status in ("running", "finished") and jobs[3] in get_registry().active_jobs()
    at = stop_all(at)
    assert all(not j.active for j in jobs)


def test_paragraph_recipe_trains_then_shows_table_curves_samples_and_models(app_env):
    at = set_values(recipes_page(new_app()), recipe_minutes=0.05)
    at = run_recipe(at, "word-gru-paragraph")
    assert not at.exception and not at.error
    (job,) = at.session_state["recipe_jobs"]
    assert job.settings.tokenizer == "word" and job.settings.train.max_minutes == 0.05
    join([job])
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["run"]) == ["reference"] and list(table["status"]) == ["finished"]
    assert list(table["ended by"]) in (["time cap"], ["epoch budget"])
    assert table["best val bits/char"][0] > 0 and table["steps"][0] > 0 and table["training time (s)"][0] > 0
    overlay, single = plotly_specs(at)
    stars = [t for t in overlay["data"] if t.get("marker", {}).get("symbol") == "star"]
    val = next(t for t in overlay["data"] if t.get("name") == "reference")
    assert len(stars) == 1 and stars[0]["y"][0] == min(val["y"])
    assert any(t.get("name") == "best" for t in single["data"])
    (sample,) = texts(at.code)
    assert sample.startswith("A model") and len(sample) > len("A model") + 10
    at.run()  # the samples stay, without sampling again
    assert texts(at.code) == [sample]

    at.switch_page("app_pages/models.py")
    at.run()
    assert not at.exception
    assert any("word-gru-paragraph-reference" in e.label for e in at.expander)
