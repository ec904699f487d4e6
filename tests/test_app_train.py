"""Train page (AppTest): start a short training, join its thread, see chart, progress, sample, download."""
import time

import pytest

from app_support import PRAIRIE, app_env, click, join, new_app, plotly_specs, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app
TINY = dict(preset="tiny", batch=8, seq_len=32, eval_every=10, patience=0, budget_kind="steps", budget_steps=30)


def train_page(at):
    at.switch_page("app_pages/train.py")
    return at.run()


def test_without_a_corpus_it_points_to_the_corpus_page(app_env):
    at = train_page(new_app())
    assert not at.exception
    assert any("upload a text on the Corpus page" in t for t in texts(at.info))
    assert [b.disabled for b in at.button if b.label == "Start"] == [True]


def test_training_shows_chart_progress_sample_and_download(app_env):
    at = set_values(train_page(upload(new_app())), **TINY)
    at = click(at, "Start")
    assert not at.exception and not at.error
    job = at.session_state["train_job"]
    join([job])
    at.run()
    assert not at.exception
    assert any("finished: reached the step budget (30 steps)" in t for t in texts(at.success))
    (spec,) = plotly_specs(at)
    traces = {t.get("name"): t for t in spec["data"]}
    assert traces["train loss"]["x"] == [10, 20, 30] and traces["validation loss"]["x"] == [10, 20, 30]
    best = traces["best"]
    assert best["y"][0] == min(traces["validation loss"]["y"])
    assert spec["layout"]["yaxis2"]["title"]["text"] == "bits per character"
    assert at.get("progress")[-1].proto.value == 100
    assert "step 30 of 30" in at.get("progress")[-1].proto.text
    assert at.code[-1].value.strip()  # the latest sample
    assert {m.label for m in at.metric} >= {"best validation loss", "best bits per char", "parameters"}
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the model (.zip)"
    assert job.bundle is not None and job.out_dir.parent.name == at.session_state["owner"]


def test_stop_then_resume_continues_the_run(app_env):
    at = set_values(train_page(upload(new_app())), **{**TINY, "budget_steps": 100_000, "eval_every": 5})
    at = click(at, "Start")
    job = at.session_state["train_job"]
    deadline = time.monotonic() + 60
    while not job.snapshot().evals and time.monotonic() < deadline:
        time.sleep(0.05)
    at = click(at, "Stop")
    join([job])
    at.run()
    assert any("stopped by request" in t for t in texts(at.warning))
    steps = job.snapshot().step
    at = set_values(at, budget_steps=steps + 10)
    at = click(at, "Resume")
    assert not at.error
    join([job])
    at.run()
    assert any(f"reached the step budget ({steps + 10} steps)" in t for t in texts(at.success))
    assert job.snapshot().evals[0]["step"] == 5  # the curve before the stop is still drawn


def test_bad_settings_are_refused_with_a_message(app_env):
    at = set_values(train_page(upload(new_app())), arch="attention", explicit_sizes=True)
    at = set_values(at, hidden=30)
    assert not at.exception
    assert any("must be divisible by heads" in t for t in texts(at.error))
    assert [b.disabled for b in at.button if b.label == "Start"] == [True]
    assert at.session_state["train_job"] is None


def test_a_busy_machine_is_refused_with_a_message(app_env, monkeypatch):
    from textgen_core.registry import get_registry
    monkeypatch.setattr(get_registry(), "max_running", 0)  # as if other sessions held every slot
    at = click(set_values(train_page(upload(new_app())), **TINY), "Start")
    assert any("the machine is busy" in t for t in texts(at.error))


def test_polling_follows_the_pace_of_new_points():
    from types import SimpleNamespace as Snap

    from ui.live import poll_interval
    running = lambda every: Snap(active=True, status="running", event_interval_s=every)  # noqa: E731
    assert poll_interval([Snap(active=False, status="finished", event_interval_s=None)]) is None
    assert poll_interval([running(None)]) == 2.0      # no pace known yet: the fastest polling
    assert poll_interval([running(0.1)]) == 2.0       # never faster than every 2 s
    assert poll_interval([running(5.0)]) == 4.0       # a point every 5 s: poll every 4 s
    assert poll_interval([running(30.0), running(3.0)]) == 2.0
    assert poll_interval([running(30.0), Snap(active=True, status="queued", event_interval_s=None)]) == 8.0


def test_early_stopping_says_why_it_stopped(app_env):
    at = set_values(train_page(upload(new_app(), PRAIRIE.encode(), "prairie.txt")),
                    **{**TINY, "lr": 0.1, "patience": 1, "eval_every": 20, "budget_steps": 400})
    at = click(at, "Start")
    join([at.session_state["train_job"]])
    at.run()
    assert any("early stopping: validation loss did not improve in 1 evaluations" in t for t in texts(at.info))


def test_each_session_sees_only_its_own_jobs(app_env):
    first = click(set_values(train_page(upload(new_app())), **TINY), "Start")
    job = first.session_state["train_job"]
    second = train_page(upload(new_app()))
    assert second.session_state["train_job"] is None and not plotly_specs(second)
    second.switch_page("app_pages/models.py")
    second.run()
    assert any("No models yet" in t for t in texts(second.info))
    join([job])
    assert job.out_dir.parent.name == first.session_state["owner"] != second.session_state["owner"]


def test_the_page_starts_from_the_devices_recommended_settings(app_env, monkeypatch):
    """On a GPU machine the page opens with the GPU's measured defaults (an explicit 768x3 LSTM with
    weight decay 0.2); on a CPU with those proposed for the corpus there (a preset)."""
    from textgen_core.defaults import GPU_DEFAULTS, propose_settings
    from ui import state

    at = train_page(upload(new_app()))
    cpu = propose_settings(at.session_state["corpus"].stats.chars, "cpu").settings
    assert not at.toggle(key="explicit_sizes").value and at.selectbox(key="preset").value == cpu["preset"]
    assert at.number_input(key="weight_decay").value == pytest.approx(cpu.get("weight_decay", 0.01))
    monkeypatch.setattr(state, "device_options", lambda: ["cuda", "cpu"])
    monkeypatch.setattr(state, "device_label", lambda device: device)   # no GPU to name here
    at = train_page(upload(new_app()))
    assert not at.exception
    assert at.toggle(key="explicit_sizes").value
    assert (at.number_input(key="hidden").value, at.number_input(key="layers").value) == (768, 3)
    assert at.number_input(key="weight_decay").value == pytest.approx(GPU_DEFAULTS["weight_decay"])
    assert at.slider(key="dropout").value == pytest.approx(GPU_DEFAULTS["dropout"])
    assert at.number_input(key="batch").value == GPU_DEFAULTS["batch_size"]


def test_streamlit_does_not_collect_garbage_after_every_rerun():
    """Streamlit's default full gc.collect() after each script run held the interpreter lock for about
    0.2 s every 2 s while the Train page polled, and slowed the training thread in the same process
    by 17-25% (BENCHMARKS.md, app overhead); the project's config turns it off."""
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_carrying_the_state_trains_and_a_text_too_short_for_it_is_named(app_env):
    at = set_values(train_page(upload(new_app())), **TINY, carry_state=True)
    at = click(at, "Start")
    job = at.session_state["train_job"]
    assert job.settings.train.carry_state
    join([job])
    at.run()
    assert any("finished: reached the step budget (30 steps)" in t for t in texts(at.success))
    at = set_values(at, batch=512)
    at = click(at, "Start")
    join([at.session_state["train_job"]])
    at.run()
    assert any("failed: carrying the state cuts the 6615 training tokens into one stream per batch row, and 512 "
               "streams of at least 33 tokens need 16896; use a smaller batch size" in t for t in texts(at.error))
    assert at.session_state["train_job"] is not job and job.bundle is not None   # the first run is kept
