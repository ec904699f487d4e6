"""Compare page (AppTest): two architectures on the same corpus and budget, overlaid curves, a table,
and samples side by side with the same prompt, temperature and seed."""
import pytest

from app_support import app_env, click, join, new_app, plotly_specs, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app


def compare_page(at):
    at.switch_page("app_pages/compare.py")
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


@pytest.mark.parametrize("size", ["4 KB", "1 MB"])
def test_every_column_starts_from_the_proposal_with_enough_evaluations(app_env, size):
    """Per column: architecture, tokenizer, size, hidden, learning rate and dropout; the shared budget
    of 600 steps with an evaluation every 50 gives every curve 12 points, and evaluate-every follows a
    new budget."""
    from conftest import shared_corpus

    from textgen_core.defaults import propose_settings

    name, chars = {"4 KB": ("lyrics_public_domain.txt", 4_000), "1 MB": ("tinyshakespeare.txt", 1_000_000)}[size]
    at = compare_page(upload(new_app(), shared_corpus(name).read_text(encoding="utf-8")[:chars].encode()))
    assert not at.exception and not at.error
    proposed = propose_settings(at.session_state["corpus"].stats.chars, "cpu").settings
    for i, arch in enumerate(("gru", "lstm")):
        assert at.selectbox(key=f"cmp_arch_{i}").value == arch and at.selectbox(key=f"cmp_tok_{i}").value == "char"
        assert at.selectbox(key=f"cmp_preset_{i}").value == proposed["preset"]
        assert at.number_input(key=f"cmp_hidden_{i}").value == {"tiny": 128, "small": 256}[proposed["preset"]]
        assert at.number_input(key=f"cmp_lr_{i}").value == pytest.approx(proposed["lr"])
        assert at.number_input(key=f"cmp_dropout_{i}").value == pytest.approx(proposed["dropout"])
    assert (at.number_input(key="cmp_batch").value, at.number_input(key="cmp_seq_len").value) == (
        proposed["batch_size"], proposed["seq_len"])
    assert at.toggle(key="cmp_carry_state").value == proposed.get("carry_state", False)
    assert (at.number_input(key="cmp_steps").value, at.number_input(key="cmp_eval_every").value) == (600, 50)
    assert "12 evaluations per configuration." in texts(at.caption)
    at = set_values(at, cmp_steps=1200)
    assert at.number_input(key="cmp_eval_every").value == 100 and "12 evaluations per configuration." in texts(
        at.caption)
    at = set_values(at, cmp_preset_1="medium")   # a new size brings its own hidden size
    assert at.number_input(key="cmp_hidden_1").value == 512
    at = set_values(set_values(at, cmp_eval_every=30), cmp_steps=600)   # an interval of the user's own stays
    assert at.number_input(key="cmp_eval_every").value == 30 and "20 evaluations per configuration." in texts(
        at.caption)


def test_each_curve_gets_twelve_points_and_the_page_says_whether_timings_compare(app_env):
    """Trained with evaluate-every following the budget (120 steps, so that it is quick): every curve
    has 12 points; the columns' own settings reach the runs; another session's training at the same
    time makes the timings not comparable, and the page says so."""
    from textgen_core.jobs import new_job
    from textgen_core.registry import get_registry

    from app_support import tiny_settings

    at = compare_page(upload(new_app()))
    at = set_values(at, cmp_preset_0="tiny", cmp_preset_1="tiny", cmp_batch=4, cmp_seq_len=16, cmp_steps=120)
    assert at.number_input(key="cmp_eval_every").value == 10
    at = set_values(at, cmp_hidden_0=32, cmp_hidden_1=48, cmp_lr_1=0.002, cmp_dropout_0=0.2, cmp_carry_state=True)
    other = new_job(at.session_state["corpus"], tiny_settings(100_000), owner="someone-else")
    get_registry().submit(other)   # another session trains meanwhile
    try:
        at = click(at, "Start comparison")
        jobs = at.session_state["compare_jobs"]
        assert [j.name for j in jobs] == ["gru-tiny-char-h32-lr0.003-d0.2", "lstm-tiny-char-h48-lr0.002-d0.3"]
        assert [(j.settings.hidden, j.settings.train.lr, j.settings.dropout) for j in jobs] == [
            (32, 0.003, 0.2), (48, 0.002, 0.3)]
        assert [j.settings.train.carry_state for j in jobs] == [True, True]   # the page's switch, for both
        join(jobs, 240)
    finally:
        other.stop()
        join([other])
    at.run()
    assert not at.exception
    assert [len(job.snapshot().evals) for job in jobs] == [12, 12]
    table = at.dataframe[0].value
    assert list(table["evaluations"]) == [12, 12] and list(table["other trainings at once"]) == [1, 1]
    assert ("Timings not comparable: other trainings ran at the same time (up to 1), so some runs had less of "
            "the machine.") in texts(at.caption)
