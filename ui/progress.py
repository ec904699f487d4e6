"""A running job's progress in one line: steps and epochs (passes over the training text), time left,
speed. Pure functions of a job snapshot: no streamlit here."""
from __future__ import annotations

import math
from typing import Optional

from textgen_core.jobs import JobSnapshot

from .state import fmt_seconds


def _epochs(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def epoch_now(snap: JobSnapshot) -> Optional[float]:
    """Epochs trained so far: the newest point's (train and evaluation points both carry it)."""
    points = [p for p in (snap.train[-1:] + snap.evals[-1:]) if isinstance(p.get("epoch"), (int, float))]
    if not points:
        return None
    epoch = max(points, key=lambda p: p.get("step", 0))["epoch"]
    return float(epoch) if math.isfinite(epoch) else None


def epoch_text(snap: JobSnapshot) -> str:
    """"epoch 3.2 of 38" when the step (or epoch) budget ends the run; "epoch 3.2 of about 38" when the
    time budget does (at the pace so far); "epoch 3.2" while the total is unknown; "" before any point."""
    epoch = epoch_now(snap)
    if epoch is None:
        return ""
    # progress is the share of whichever budget ends first, so the run's epochs are epoch / progress
    by_steps = bool(snap.total_steps and snap.step) and math.isclose(snap.progress, snap.step / snap.total_steps,
                                                                     rel_tol=1e-3)
    if snap.progress <= 0 or (not by_steps and snap.progress < 0.02):   # too early to say
        return f"epoch {_epochs(epoch)}"
    return f"epoch {_epochs(epoch)} of {'' if by_steps else 'about '}{_epochs(epoch / snap.progress)}"


def progress_text(snap: JobSnapshot) -> str:
    """The progress bar's line: "step 300 of 1,000 · epoch 3.2 of 10.5 · about 1 min left · ..."."""
    parts = [f"step {snap.step:,}" + (f" of {snap.total_steps:,}" if snap.total_steps else "")]
    if epochs := epoch_text(snap):
        parts.append(epochs)
    if snap.status == "running" and snap.eta_s is not None:
        parts.append(f"about {fmt_seconds(snap.eta_s)} left")
    if snap.tokens_per_s:
        parts.append(f"{snap.tokens_per_s:,.0f} tokens/s")
    parts.append(f"{fmt_seconds(snap.elapsed)} trained")
    return " · ".join(parts)
