"""Compare page (AppTest): two architectures on the same corpus and budget, overlaid curves, a table,
and samples side by side with the same prompt, temperature and seed."""
import pytest

from app_support import app_env, click, join, new_app, plotly_specs, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app


def compare_page(at):
    at.switch_page("pages/compare.py")
    return at.run()


def test_without_a_corpus_it_points_to_the_corpus_page(app_env):
    at = compare_page(new_app())
    assert not at.exception
    assert any("upload a text on the Corpus page" in t for t in texts(at.info))


def test_two_architectures_train_one_after_another_and_compare(app_env):
    at = compare_page(upload(new_app()))
    at = set_values(at, cmp_arch_0="gru", cmp_arch_1="cnn", cmp_preset_0="tiny", cmp_preset_1="tiny",
                    cmp_steps=20, cmp_batch=8, cmp_seq_len=32, cmp_eval_every=10)
    at = click(at, "Start comparison")
    assert not at.exception and not at.error
    jobs = at.session_state["compare_jobs"]
    assert [j.name for j in jobs] == ["gru-tiny-char", "cnn-tiny-char"]
    assert [j.status for j in jobs] in (["running", "queued"], ["finished", "running"])  # one at a time
    join(jobs)
    at.run()
    assert not at.exception
    by_step, by_time = plotly_specs(at)
    for spec, x in ((by_step, [10, 20]), (by_time, None)):
        lines = [t for t in spec["data"] if t.get("name")]
        assert [t["name"] for t in lines] == ["gru-tiny-char", "cnn-tiny-char"]
        assert all(len(t["y"]) == 2 for t in lines)
        if x:
            assert all(t["x"] == x for t in lines)
    table = at.dataframe[0].value
    assert list(table["configuration"]) == ["gru-tiny-char", "cnn-tiny-char"]
    assert list(table["status"]) == ["finished", "finished"]
    assert all(table["parameters"] > 0) and all(table["best val bits/char"] > 0)
    assert list(table["stopped at"]) == ["step 20: step budget"] * 2

    at = set_values(at, cmp_prompt="Home", cmp_chars=60, cmp_seed=7)
    at = click(at, "Sample from each")
    assert not at.exception and not at.error
    samples = texts(at.code)
    assert len(samples) == 2 and all(s.startswith("Home") and len(s) > 20 for s in samples)
    at.run()  # the samples stay on the page
    assert texts(at.code) == samples


def test_a_configuration_too_big_for_the_memory_is_refused_before_any_starts(app_env, monkeypatch):
    from textgen_core import memory
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 20_000_000)
    at = compare_page(upload(new_app()))
    at = set_values(at, cmp_arch_0="gru", cmp_arch_1="lstm", cmp_preset_0="tiny", cmp_preset_1="large",
                    cmp_steps=20, cmp_batch=8, cmp_seq_len=32, cmp_eval_every=10)
    assert not at.exception and at.session_state["compare_jobs"] == []  # refused before Start: it is off
    assert [b.disabled for b in at.button if b.label == "Start comparison"] == [True]
    (error,) = texts(at.error)
    assert "needs about" in error and "more than the 20 MB free on this machine" in error
