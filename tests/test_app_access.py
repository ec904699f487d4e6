"""Accessibility (AppTest): every widget of every page has a label, and the live loss chart is also
said in words (the current step and the best validation), next to it and as its screen-reader text."""
import re

import pytest

from app_support import app_env, click, join, new_app, pretrained, set_values, texts, trained_folder, upload  # noqa: F401

pytestmark = pytest.mark.app
PAGES = ("home", "corpus", "train", "compare", "recipes", "generate", "inspect", "models", "runs")


def test_every_widget_of_every_page_has_a_label(pretrained):
    at = upload(new_app())   # a corpus and a model: the pages show their full set of widgets
    seen = 0
    for name in PAGES:
        at.switch_page(f"app_pages/{name}.py")
        at = at.run()
        assert not at.exception, name
        widgets = [node for node in at._tree if hasattr(getattr(node, "proto", None), "label")]
        unlabelled = [type(node).__name__ for node in widgets if not str(node.proto.label).strip()]
        assert not unlabelled, (name, unlabelled)
        seen += len(widgets)
    assert seen > 80   # the walk really reached the pages' widgets


def test_the_live_chart_has_a_text_line(app_env):
    at = upload(new_app())
    at.switch_page("app_pages/train.py")
    at = click(set_values(at.run(), preset="tiny", batch=8, seq_len=32, eval_every=10, budget_kind="steps",
                          budget_steps=30), "Start")
    job = at.session_state["train_job"]
    join([job])
    at = at.run()
    snap = job.snapshot()
    best = snap.best
    (line,) = [c for c in texts(at.caption) if c.startswith("Step ")]
    assert line.startswith("Step 30 of 30 · train loss ")
    assert (f"best validation {best['val_loss']:.3f} nats/token ({best['val_bpc']:.3f} bits/char) "
            f"at step {best['step']}.") in line
    assert re.search(r"validation loss \d+\.\d{3} at step 30", line)
    (chart,) = at.get("plotly_chart")
    assert line in chart.proto.alt   # a screen reader reads the same line as the chart's name
