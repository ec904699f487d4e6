"""textgen_core.jobs and .registry: background training jobs, their snapshots, the registry's cap and reaper."""
import threading

import pytest
import torch

from textgen_core import RunSettings, TrainConfig, read_text
from textgen_core.errors import ConfigError
from textgen_core.jobs import FAILED, FINISHED, QUEUED, RUNNING, STOPPED, ThinnedSeries, TrainingJob, new_job
from textgen_core.registry import JobRegistry

TEXT = ("The wind blows over the prairie and the cattle low in the night.\n"
        "Sing me a song of the trail, of the river and the long ride home.\n") * 40


def tiny(steps=20, **train):
    options = dict(batch_size=8, seq_len=32, max_steps=steps, eval_every=10, log_every=5, eval_streams=4,
                   warmup_steps=2)
    options.update(train)
    return RunSettings(arch="gru", preset="tiny", train=TrainConfig(**options))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and spinning OpenMP threads crawl when the
    machine is shared (a test process cannot switch OMP_WAIT_POLICY once torch is loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def corpus():
    return read_text(TEXT.encode(), "prairie.txt")


@pytest.fixture()
def registry():
    reg = JobRegistry(max_running=1, max_per_owner=3, reap_every_s=None)
    yield reg
    reg.close()
    for job in reg.active_jobs():
        job.join(30)


def test_job_trains_records_points_and_writes_model(tmp_path, corpus, registry):
    job = new_job(corpus, tiny(), owner="alice", root=tmp_path)
    assert job.status == QUEUED and job.out_dir.parent == tmp_path / "alice"
    registry.submit(job)
    assert job.join(60)
    snap = job.snapshot()
    assert snap.status == FINISHED, snap.message
    assert "step budget" in snap.message
    assert snap.step == 20 and snap.progress == 1.0
    assert [p["step"] for p in snap.evals] == [10, 20]
    assert [p["step"] for p in snap.train] == [5, 10, 15, 20]
    assert snap.best["val_loss"] == min(p["val_loss"] for p in snap.evals)
    assert snap.sample and snap.sample_step == 20
    assert snap.parameters and snap.has_model and snap.tokens_per_s > 0
    assert job.bundle is not None and (job.out_dir / "model.safetensors").is_file()
    assert registry.active_jobs() == []


def test_stop_keeps_best_weights_and_resume_continues(tmp_path, corpus, registry):
    job = new_job(corpus, tiny(steps=100_000), owner="bob", root=tmp_path, preview_chars=0)
    seen = threading.Event()
    job._done_callbacks.append(lambda j: seen.set())
    registry.submit(job)
    for _ in range(600):  # wait for the first evaluation, then stop
        if job.snapshot().evals:
            break
        threading.Event().wait(0.05)
    job.stop()
    assert job.join(60) and seen.is_set()
    snap = job.snapshot()
    assert snap.status == STOPPED and "stopped by request" in snap.message and snap.has_model
    steps = snap.step
    with pytest.raises(ConfigError, match="raise the step budget"):
        registry.resume(job, replace_steps(job, steps))
    registry.resume(job, replace_steps(job, steps + 10))
    assert job.join(60)
    snap = job.snapshot()
    assert snap.status == FINISHED, snap.message
    assert snap.step == steps + 10
    assert snap.evals[0]["step"] == 10  # the history from before the resume is still there


def replace_steps(job, steps):
    from dataclasses import replace
    return replace(job.settings.train, max_steps=steps)


def test_registry_caps_running_jobs_and_queues_per_owner(tmp_path, corpus, registry):
    first = new_job(corpus, tiny(steps=100_000), owner="a", root=tmp_path, preview_chars=0)
    second = new_job(corpus, tiny(), owner="a", root=tmp_path, preview_chars=0)
    registry.submit(first, second)
    assert first.status == RUNNING and second.status == QUEUED
    other = new_job(corpus, tiny(), owner="b", root=tmp_path)
    with pytest.raises(ConfigError, match="busy.*at most 1 run at once"):
        registry.submit(other)
    with pytest.raises(ConfigError, match="at most 3"):
        registry.submit(*[new_job(corpus, tiny(), owner="a", root=tmp_path) for _ in range(2)])
    second.stop()  # cancelling a queued job takes effect at once
    assert second.status == STOPPED and second not in registry.active_jobs()
    first.stop()
    assert first.join(60)
    assert registry.active_jobs() == []


def test_reaper_stops_jobs_of_silent_owners(tmp_path, corpus):
    now = [0.0]
    registry = JobRegistry(max_running=2, stale_after_s=60, reap_every_s=None, clock=lambda: now[0])
    job = new_job(corpus, tiny(steps=100_000), owner="gone", root=tmp_path, preview_chars=0)
    kept = new_job(corpus, tiny(steps=100_000), owner="here", root=tmp_path, preview_chars=0)
    registry.submit(job)
    registry.submit(kept)
    now[0] = 50.0
    registry.touch("here")
    assert registry.reap() == []
    now[0] = 100.0
    assert registry.reap() == [job]
    assert job.join(60)
    assert job.status == STOPPED and job.message.startswith("stopped: no page open for 1 min")
    assert kept.active
    kept.stop()
    assert kept.join(60)


def test_failures_become_messages(tmp_path, corpus, registry):
    short = read_text(b"x" * 300, "short.txt")
    job = new_job(short, tiny(seq_len=512), owner="c", root=tmp_path)
    registry.submit(job)
    assert job.join(60)
    assert job.status == FAILED and "too few for windows" in job.message
    with pytest.raises(ConfigError, match="nothing to resume"):
        job.prepare_resume()


def test_thinned_series_is_bounded_and_keeps_the_newest():
    series = ThinnedSeries(max_points=10)
    for i in range(1000):
        series.append({"step": i})
    points = series.points()
    assert len(points) <= 11 and points[0]["step"] == 0 and points[-1]["step"] == 999
    steps = [p["step"] for p in points[:-1]]
    assert len({b - a for a, b in zip(steps, steps[1:])}) == 1  # evenly spaced


def test_job_refuses_an_existing_model_folder(tmp_path, corpus):
    job = TrainingJob(corpus, tiny(), tmp_path / "m", preview_chars=0)
    job.start()
    assert job.join(60) and job.status == FINISHED
    again = TrainingJob(corpus, tiny(), tmp_path / "m")
    again.start()
    assert again.join(60) and again.status == FAILED and "already holds a model" in again.message


def test_registry_counts_the_other_jobs_each_job_trained_beside(tmp_path, corpus):
    """Compare says whether its timings compare: each job knows the most other jobs that trained at
    the same time as it."""
    registry = JobRegistry(max_running=2, max_per_owner=3, reap_every_s=None)
    try:
        first = new_job(corpus, tiny(steps=100_000), owner="a", root=tmp_path, preview_chars=0)
        after = new_job(corpus, tiny(steps=100_000), owner="a", root=tmp_path, preview_chars=0)
        registry.submit(first, after)                        # one at a time for one owner
        assert first.most_others_running == 0 and after.most_others_running is None
        other = new_job(corpus, tiny(steps=100_000), owner="b", root=tmp_path, preview_chars=0)
        registry.submit(other)                               # another session trains beside it
        assert first.most_others_running == other.most_others_running == 1
        other.stop()
        assert other.join(60)
        first.stop()
        assert first.join(60) and after.status == RUNNING
        assert after.most_others_running == 0 and first.most_others_running == 1   # the most, kept
        after.stop()
        assert after.join(60)
    finally:
        registry.close()
