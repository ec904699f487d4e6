"""The Recipes page's logic: start a recipe's runs as background jobs (waiting for room when the job
caps are reached), draw them live, and tabulate and sample the results."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import replace

import streamlit as st

from textgen_core import TextgenError, api, recipes
from textgen_core.errors import ConfigError
from textgen_core.jobs import QUEUED, JobSnapshot, TrainingJob, new_job
from textgen_core.recipes import Recipe
from textgen_core.registry import get_registry

from .charts import compare_figure, loss_figure
from .live import show_status
from .progress import progress_text
from .runs import check_quota, hold_unsubmitted
from .sampling import tokens_for_chars
from .text import MISSING, escape_markdown

SAMPLE_CHARS = 200  # about this many characters per sample, at temperature 0.8 and seed 1
REASONS = {"max_steps": "step budget", "epochs": "epoch budget", "time": "time cap",
           "early_stopping": "early stopping", "stopped": "stopped", "diverged": "diverged",
           "out_of_memory": "out of memory"}


def start(item: Recipe, minutes: float, owner: str, device: str) -> list[TrainingJob]:
    """The recipe's runs as jobs, each capped at ``minutes``; those that fit start (one after another),
    the rest wait (see ``submit_waiting``). Raises CorpusError when the corpus file is missing, and
    ConfigError past the workspace's quota."""
    check_quota()
    corpus = recipes.load_corpus(item)
    jobs = [new_job(corpus, recipes.with_time_cap(run.settings, minutes), owner=owner,
                    name=f"{item.name}-{run.label}")
            for run in item.with_device(device).runs]
    for job in jobs:
        job.settings.train.validated()
    submit_waiting(jobs, owner)
    return jobs


def waiting(jobs: Sequence[TrainingJob], owner: str) -> list[TrainingJob]:
    """Jobs not handed to the registry yet (they did not fit under its caps)."""
    submitted = get_registry().active_jobs(owner)
    return [j for j in jobs if isinstance(j, TrainingJob) and j.status == QUEUED and j not in submitted]


def submit_waiting(jobs: Sequence[TrainingJob], owner: str) -> list[TrainingJob]:
    """Hand waiting jobs to the registry as far as its per-owner cap allows; returns those still waiting
    (kept for a reloaded page too). A busy machine (every training slot taken by other sessions) leaves
    them all waiting."""
    registry = get_registry()
    pending = waiting(jobs, owner)
    room = registry.max_per_owner - len(registry.active_jobs(owner))
    if pending and room > 0:
        with contextlib.suppress(ConfigError):  # no slot now: they stay waiting, tried again next poll
            registry.submit(*pending[:room])
    pending = waiting(jobs, owner)
    hold_unsubmitted(owner, pending)
    return pending


def waiting_note(pending: Sequence[TrainingJob], owner: str) -> str:
    """Why runs wait, and what happens to them."""
    registry = get_registry()
    names = ", ".join(f"**{escape_markdown(j.name)}**" for j in pending)
    if registry.active_jobs(owner):
        why = (f"you may have at most {registry.max_per_owner} trainings running or waiting at once, "
               "and your other trainings fill that")
    else:
        why = (f"the machine is busy: {registry.running_count()} of {registry.max_running} training "
               "slots are in use by other sessions")
    return (f"{len(pending)} run{'s' if len(pending) > 1 else ''} not started yet ({names}): {why}. "
            "They start by themselves as soon as there is room, while this page stays open; "
            "**Stop all** cancels them.")


def labelled(snaps: Sequence[JobSnapshot], item: Recipe) -> list[JobSnapshot]:
    """The snapshots named by their run label ("gru-dropout") rather than the job name."""
    prefix = f"{item.name}-"
    return [replace(s, name=s.name[len(prefix):] if s.name.startswith(prefix) else s.name) for s in snaps]


def results_table(snaps: Sequence[JobSnapshot]) -> list[dict]:
    """One row per run: best validation loss and bits per char, steps, training time, how it ended."""
    rows = []
    for s in snaps:
        best = s.best
        rows.append({
            "run": s.name, "status": s.status, "parameters": s.parameters,
            "best val loss (nats/token)": round(best["val_loss"], 4) if best else None,
            "best val bits/char": round(best["val_bpc"], 4) if best else None,
            "best at step": best["step"] if best else None,
            "steps": s.step, "training time (s)": round(s.elapsed, 1) if s.step else None,
            "ended by": REASONS.get(s.end.reason, s.end.reason) if s.end else None,
        })
    return rows


def show_runs(snaps: Sequence[JobSnapshot], item: Recipe) -> None:
    """Status lines, overlaid curves, one run's loss chart, and the results table (live)."""
    snaps = labelled(snaps, item)
    for snap in snaps:
        if snap.status == "running":
            st.progress(min(1.0, snap.progress), text=f"**{escape_markdown(snap.name)}**: {progress_text(snap)}")
        elif snap.status == QUEUED:
            st.caption(f"**{escape_markdown(snap.name)}** waits for its turn.")
        else:
            show_status(snap)  # how it ended, e.g. the early-stopping message
    overlay, single = st.columns(2)
    overlay.plotly_chart(compare_figure(snaps, "step", with_train=True), key="recipe-overlay",
                         config={"displaylogo": False})
    names = [s.name for s in snaps]
    with single:
        shown = st.selectbox("Loss of run", names, key="recipe_chart_run")
        snap = snaps[names.index(shown)] if shown in names else snaps[0]
        st.plotly_chart(loss_figure(snap), key="recipe-loss", config={"displaylogo": False})
    number = st.column_config.NumberColumn
    st.dataframe(results_table(snaps), hide_index=True, placeholder=MISSING,  # a value a run lacks: a dash
                 column_config={"parameters": number(format="localized")})


def samples(jobs: Sequence[TrainingJob], item: Recipe) -> dict[str, str]:
    """job id -> a sample from each trained run, from the recipe's prompt (temperature 0.8, seed 1)."""
    texts = {}
    for job in jobs:
        if job.bundle is None:
            continue
        try:
            length = tokens_for_chars(job.bundle, SAMPLE_CHARS)
            texts[job.id] = api.generate(job.bundle, item.prompt, length=length, temperature=0.8, seed=1)[0]
        except TextgenError as exc:
            texts[job.id] = f"(no sample: {exc})"
    return texts
