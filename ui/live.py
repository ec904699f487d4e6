"""Live views of training jobs: a fragment that polls only while a job is active."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Optional

import streamlit as st

from textgen_core.jobs import FAILED, FINISHED, QUEUED, STOPPED, JobSnapshot, TrainingJob
from textgen_core.registry import get_registry
from textgen_core.workspace import INTERRUPTED

from .charts import loss_figure
from .progress import progress_text
from .text import escape_markdown

POLL_LEVELS = (2.0, 4.0, 8.0)  # seconds between polls: never faster than 2 s (the UI must not slow
# training), and no faster than new points arrive: a slow model on a CPU logs every few seconds


def poll_interval(snaps: Sequence[JobSnapshot]) -> Optional[float]:
    """How often to poll these jobs: None when none is active, else the slowest level that is
    still at least as fast as the quickest job produces new points."""
    active = [s for s in snaps if s.active]
    if not active:
        return None
    intervals = [s.event_interval_s for s in active if s.status == "running" and s.event_interval_s]
    if len(intervals) < len([s for s in active if s.status == "running"]) or not intervals:
        return POLL_LEVELS[0]
    fastest = min(intervals)
    return max([level for level in POLL_LEVELS if level <= fastest], default=POLL_LEVELS[0])


def live(jobs: Sequence[TrainingJob], draw: Callable[[list[JobSnapshot]], None],
         every_s: Optional[float] = None) -> None:
    """Draw ``draw(snapshots)`` now, then again at ``poll_interval`` while any job is active.

    When the last active job ends (or the right polling interval changes), the whole page reruns
    once, so buttons, downloads and model lists see the result; with no active job, no polling.
    ``every_s`` sets one fixed interval instead (the sidebar's).
    """
    snaps = [job.snapshot() for job in jobs]
    polling = poll_interval(snaps)
    if polling is not None and every_s is not None:
        polling = every_s

    @st.fragment(run_every=polling)
    def view() -> None:
        get_registry().touch(st.session_state.owner)
        now = [job.snapshot() for job in jobs]
        draw(now)
        wanted = poll_interval(now)
        if polling is None:
            return
        if wanted is None:  # the last active job ended: redraw the whole page once
            st.rerun()
        if every_s is None and wanted != polling:  # a new pace: at most one page rerun a minute
            last = st.session_state.get("_poll_changed_at", 0.0)
            if time.monotonic() - last > 60:
                st.session_state["_poll_changed_at"] = time.monotonic()
                st.rerun()

    view()


def curve_text(snap: JobSnapshot) -> str:
    """The loss chart in one line: the current step, the latest losses and the best validation."""
    parts = [f"Step {snap.step:,}" + (f" of {snap.total_steps:,}" if snap.total_steps else "")]
    if snap.train:
        parts.append(f"train loss {snap.train[-1]['train_loss']:.3f}")
    if snap.evals:
        last = snap.evals[-1]
        parts.append(f"validation loss {last['val_loss']:.3f} at step {last['step']:,}")
    if snap.best:
        parts.append(f"best validation {snap.best['val_loss']:.3f} nats/token ({snap.best['val_bpc']:.3f} "
                     f"bits/char) at step {snap.best['step']:,}")
    else:
        parts.append("no validation yet")
    return " · ".join(parts) + "."


def show_status(snap: JobSnapshot) -> None:
    """One line saying what the job is doing or how it ended (early stopping says why)."""
    name, message = escape_markdown(snap.name), escape_markdown(snap.message)
    if snap.status == QUEUED:
        st.info(f"**{name}** is waiting: {message}", icon=":material/hourglass_top:")
    elif snap.status == FAILED:
        st.error(f"**{name}** failed: {message}", icon=":material/error:")
    elif snap.status == FINISHED:
        if snap.end is not None and snap.end.reason == "diverged":
            st.warning(f"**{name}**: {message}", icon=":material/warning:")
        elif snap.end is not None and snap.end.reason == "early_stopping":
            st.info(f"**{name}**: {message}", icon=":material/trending_up:")
        else:
            st.success(f"**{name}** finished: {message}", icon=":material/check_circle:")
    elif snap.status == STOPPED:
        st.warning(f"**{name}**: {message}", icon=":material/stop_circle:")
    elif snap.status == INTERRUPTED:   # found on disk: its process ended (e.g. the server was restarted)
        st.warning(f"**{name}** was {message}", icon=":material/pause_circle:")
    else:
        st.caption(f"**{name}**: {message} on {snap.device or 'the device'}")


def show_job(snap: JobSnapshot, latest_sample: bool = True) -> None:
    """Status, progress bar with ETA and tokens/s, the loss chart, and (``latest_sample``) the latest sample."""
    show_status(snap)
    if snap.status == QUEUED:
        return
    st.progress(min(1.0, max(0.0, snap.progress)), text=progress_text(snap))
    columns = st.columns(4)
    best = snap.best
    columns[0].metric("best validation loss", f"{best['val_loss']:.3f}" if best else "–",
                      help="nats per token on the held-out text; lower is better")
    columns[1].metric("best bits per char", f"{best['val_bpc']:.3f}" if best else "–",
                      help="comparable across tokenizers")
    columns[2].metric("at step", f"{best['step']:,}" if best else "–")
    columns[3].metric("parameters", f"{snap.parameters:,}" if snap.parameters else "–")
    summary = curve_text(snap)
    st.plotly_chart(loss_figure(snap), key=f"loss-{snap.id}", config={"displaylogo": False},
                    alt=f"Train and validation loss of {snap.name} by step. {summary}")
    st.caption(summary)   # the chart in words: read by screen readers, and there at a glance
    if not latest_sample:
        return
    if snap.sample:
        st.caption(f"Sample after step {snap.sample_step:,} (temperature 0.8, the same seed every time):")
        st.code(snap.sample, language=None, wrap_lines=True)
    elif snap.active:
        st.caption("A sample appears at every evaluation.")
