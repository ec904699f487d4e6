"""What the pages say about training before and while it runs (pure functions, no AppTest): where
overfitting starts on the loss chart, epochs in the progress line, what a budget and a model size mean
for a corpus, Compare's run names, evaluation counts and whether its timings compare."""
import json

import pytest

from textgen_core import RunSettings, TrainConfig
from textgen_core.jobs import JobSnapshot
from ui.charts import OVERFITTING_NOTE, loss_figure, overfitting_point
from ui.compare import Column, eval_every_for, evaluations, names, timing_caption
from ui.explain import budget_text, preset_label, size_warning
from ui.progress import epoch_text, progress_text


def evals(*points):
    """Evaluation points from (step, train loss, validation loss)."""
    return [dict(step=s, epoch=s / 10, train_loss=t, val_loss=v, val_bpc=v / 0.69) for s, t, v in points]


def snap(evals_=(), train=(), step=0, total_steps=None, progress=0.0, status="running", **extra) -> JobSnapshot:
    values = dict(id="j1", name="run", owner="me", status=status, message="training", settings=RunSettings(),
                  step=step, total_steps=total_steps, progress=progress, elapsed=30.0, eta_s=None, tokens_per_s=None,
                  chars_per_token=1.0, parameters=1000, device="cpu", train=list(train), evals=list(evals_),
                  best=min(evals_, key=lambda p: p["val_loss"]) if evals_ else None, sample="", sample_step=None,
                  end=None, has_model=False, event_interval_s=None, version=1)
    values.update(extra)
    return JobSnapshot(**values)


# --- the overfitting marker ------------------------------------------------------------------------
def test_overfitting_starts_at_the_best_point_once_validation_rises_while_training_falls():
    history = evals((10, 3.0, 3.1), (20, 2.5, 2.7), (30, 2.2, 2.6), (40, 1.9, 2.8), (50, 1.6, 3.0))
    assert overfitting_point(history)["step"] == 30


@pytest.mark.parametrize("history", [
    evals((10, 3.0, 3.1), (20, 2.5, 2.7), (30, 2.2, 2.6)),        # validation still falls
    evals((10, 3.0, 3.1), (20, 2.5, 2.7), (30, 2.6, 2.8)),        # both rise: not overfitting (a bad step)
    evals((10, 3.0, 3.1)),                                         # one point
    [],
])
def test_no_overfitting_marker_without_the_turn(history):
    assert overfitting_point(history) is None


def test_a_new_best_after_a_bump_moves_the_marker_on():
    history = evals((10, 3.0, 3.1), (20, 2.5, 2.7), (30, 2.2, 2.8), (40, 1.9, 2.5), (50, 1.7, 2.6))
    assert overfitting_point(history)["step"] == 40


def test_the_loss_chart_marks_where_validation_turns_up():
    history = evals((10, 3.0, 3.1), (20, 2.5, 2.7), (30, 2.2, 2.9))
    train = [dict(step=s, train_loss=3.2 - s / 20) for s in (5, 10, 15, 20, 25, 30)]
    spec = json.loads(loss_figure(snap(history, train, step=30)).to_json())["layout"]
    (note,) = spec["annotations"]
    assert note["text"] == OVERFITTING_NOTE == "validation turns up: overfitting from here" and note["x"] == 20
    (line,) = spec["shapes"]
    assert line["x0"] == line["x1"] == 20
    falling = json.loads(loss_figure(snap(history[:2], train[:4], step=20)).to_json())["layout"]
    assert not falling.get("annotations") and not falling.get("shapes")


# --- epochs in the progress line ---------------------------------------------------------------------
def test_the_progress_line_counts_epochs_of_a_step_budget():
    job = snap(train=[dict(step=300, epoch=3.2, train_loss=2.0)], step=300, total_steps=1000, progress=0.3)
    assert epoch_text(job) == "epoch 3.2 of 10.7"
    assert progress_text(job).startswith("step 300 of 1,000 · epoch 3.2 of 10.7 · ")


def test_a_time_budget_gives_an_estimate_and_a_late_eval_point_counts():
    points = dict(train=[dict(step=90, epoch=4.5, train_loss=2.0)], evals=evals((100, 2.0, 2.1)))
    job = snap(**points, step=100, progress=0.25, settings=RunSettings(train=TrainConfig(max_minutes=2.0)))
    assert epoch_text(job) == "epoch 10.0 of about 40.0"   # the newest point is the evaluation at step 100
    assert epoch_text(snap(**points, step=100, progress=0.01)) == "epoch 10.0"   # too early to say
    assert epoch_text(snap(step=0)) == ""


# --- what the settings mean for the corpus ---------------------------------------------------------------
def test_budgets_in_epochs_of_the_corpus():
    assert budget_text("steps", 1000, 32, 64, 3600, None) == (
        "1,000 steps ≈ 569 epochs of this corpus (32 x 64 tokens a step, 3,600 training tokens)")
    assert budget_text("epochs", 2.0, 16, 32, 3600, None) == "2 epochs ≈ 14 steps of 16 x 32 tokens"
    minutes = budget_text("minutes", 5.0, 32, 64, 1_000_000, 8.5 * 2048)
    assert minutes == "5 minutes ≈ 5.2 epochs of this corpus at about 8.5 steps a second"
    assert "other settings train at other speeds" in budget_text("minutes", 5.0, 32, 64, 1e6, 2e4, False)
    assert budget_text("minutes", 5.0, 32, 64, 1e6, None) is None   # no speed known: nothing made up
    assert budget_text("steps", 100, 8, 8, 640, None, patience=3).endswith(
        "; patience stops it sooner, 3 evaluations after validation stops improving")


def test_presets_show_their_sizes_and_parameters_for_the_vocabulary():
    from textgen_core.models import ModelConfig, build_model
    label = preset_label("lstm", "small", 60)
    real = build_model(ModelConfig.from_preset("lstm", "small", 60)).num_parameters()
    assert label == f"small: 256 hidden x 2 layers, 64-dim embedding · {real:,} parameters"
    assert preset_label("gru", "tiny", 60).startswith("tiny: 128 hidden x 1 layer, 32-dim embedding · ")


def test_a_model_far_bigger_than_its_text_is_flagged():
    warning = size_warning(877_250, 3_600)
    assert warning == ("This model has 877,250 parameters for 3,600 characters of text: it can memorise the "
                       "text. A smaller preset or more dropout generalises better.")
    assert size_warning(90_000, 3_600) is None and size_warning(877_250, 900_000) is None


# --- Compare --------------------------------------------------------------------------------------------
def test_compare_evaluates_a_twelfth_of_the_budget():
    assert eval_every_for(600) == 50 and evaluations(600, 50) == 12
    assert evaluations(610, 50) == 13   # and once at the end
    assert eval_every_for(5) == 1 and evaluations(0, 5) == 0


def test_run_names_say_what_sets_a_column_apart():
    same = [Column("gru", "char", "tiny", 128, 3e-3, 0.1), Column("cnn", "char", "tiny", 128, 3e-3, 0.1)]
    assert names(same) == ["gru-tiny-char", "cnn-tiny-char"]   # the presets' own hidden sizes: nothing added
    lstm = [Column("lstm", "char", "small", 256, 3e-3, 0.1), Column("lstm", "char", "small", 512, 1e-3, 0.1),
            Column("lstm", "char", "small", 256, 3e-3, 0.1)]
    assert names(lstm) == ["lstm-small-char-lr0.003", "lstm-small-char-h512-lr0.001", "lstm-small-char-lr0.003-3"]


def test_the_timing_caption_says_whether_other_trainings_shared_the_machine():
    assert timing_caption([0, 0], finished=True) == "Timings comparable: each ran alone."
    assert timing_caption([0, 2, 1], finished=True) == (
        "Timings not comparable: other trainings ran at the same time (up to 2), so some runs had less of the "
        "machine.")
    assert timing_caption([0, None], finished=False) == "Timings comparable so far: each ran alone (where known)."
    assert "not known" in timing_caption([None, None], finished=True)
