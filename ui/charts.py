"""Plotly figures for training curves. Pure functions of job snapshots: no streamlit here."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import plotly.graph_objects as go

from textgen_core.jobs import JobSnapshot

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TRAIN_COLOR, VAL_COLOR, BEST_COLOR, TURN_COLOR = "#7fa7d9", "#d2691e", "#f2b50f", "#b22222"
OVERFITTING_NOTE = "validation turns up: overfitting from here"
LN2 = math.log(2)


def _layout(title: str, x_title: str, y_title: str, height: int = 360) -> dict:
    return dict(
        title=dict(text=title, x=0, xanchor="left", font=dict(size=15)), height=height,
        margin=dict(l=10, r=10, t=40, b=10), hovermode="x unified",
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
        xaxis=dict(title=x_title, rangemode="tozero"), yaxis=dict(title=y_title),
        uirevision="keep",  # keep the user's zoom between polls
    )


def _empty(layout: dict, note: str) -> go.Figure:
    figure = go.Figure(layout=layout)
    figure.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                          font=dict(size=14, color="#888"))
    return figure


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def overfitting_point(evals: Sequence[dict]) -> Optional[dict]:
    """Where overfitting shows: the best validation point, when the evaluation after it has a higher
    validation loss while its training loss is lower (the model got better at the training text and
    worse at unseen text). None while validation still improves, or without such an evaluation."""
    points = [p for p in evals if _number(p.get("val_loss")) and _number(p.get("train_loss"))]
    if len(points) < 2:
        return None
    best = min(range(len(points)), key=lambda i: points[i]["val_loss"])
    if best == len(points) - 1:
        return None
    after = points[best + 1]
    if after["val_loss"] > points[best]["val_loss"] and after["train_loss"] < points[best]["train_loss"]:
        return points[best]
    return None


def loss_figure(snap: JobSnapshot, height: int = 380) -> go.Figure:
    """Train and validation loss (nats/token, left axis) against steps, the same curves read in
    bits per character on the right axis, the best validation point marked, and a dashed line where
    validation turns up while training loss still falls (``overfitting_point``)."""
    layout = _layout(f"Loss of {snap.name}", "step", "loss (nats per token)", height)
    if not snap.train and not snap.evals:
        return _empty(layout, "waiting for the first steps...")
    # Bits per char = loss / chars per token / ln 2: a fixed factor, so aligning the two axes'
    # ranges makes the right axis read the same curves in bits per character.
    factor = 1 / (snap.chars_per_token * LN2)
    values = _finite([p["train_loss"] for p in snap.train] + [p["val_loss"] for p in snap.evals])
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = max((high - low) * 0.06, 0.02)
    y_range = [max(0.0, low - pad), high + pad]
    layout.update(
        yaxis=dict(title="loss (nats per token)", range=y_range),
        yaxis2=dict(title="bits per character", overlaying="y", side="right", showgrid=False, tickformat=".2f",
                    range=[y_range[0] * factor, y_range[1] * factor]),
    )
    figure = go.Figure(layout=layout)
    if snap.train:
        figure.add_trace(go.Scatter(
            x=[p["step"] for p in snap.train], y=[p["train_loss"] for p in snap.train],
            mode="lines" if len(snap.train) > 20 else "lines+markers", marker=dict(size=4),
            name="train loss", line=dict(color=TRAIN_COLOR, width=1.5),
            hovertemplate="train %{y:.3f}<extra></extra>"))
    if snap.evals:
        steps = [p["step"] for p in snap.evals]
        figure.add_trace(go.Scatter(
            x=steps, y=[p["val_loss"] for p in snap.evals], mode="lines+markers",
            name="validation loss", line=dict(color=VAL_COLOR, width=2.5), marker=dict(size=6),
            customdata=[p["val_bpc"] for p in snap.evals],
            hovertemplate="validation %{y:.3f} (%{customdata:.3f} bits/char)<extra></extra>"))
        figure.add_trace(go.Scatter(  # invisible: gives the right axis its ticks
            x=steps, y=[p["val_bpc"] for p in snap.evals], yaxis="y2", mode="lines",
            line=dict(width=0), opacity=0, showlegend=False, hoverinfo="skip"))
    if snap.best:
        best = snap.best
        figure.add_trace(go.Scatter(
            x=[best["step"]], y=[best["val_loss"]], mode="markers", name="best",
            marker=dict(symbol="star", size=16, color=BEST_COLOR, line=dict(color="#333", width=1)),
            hovertemplate=f"best {best['val_loss']:.3f} ({best['val_bpc']:.3f} bits/char)<extra></extra>"))
    turn = overfitting_point(snap.evals)
    if turn is not None:
        figure.add_vline(x=turn["step"], line=dict(color=TURN_COLOR, width=1.5, dash="dash"),
                         annotation=dict(text=OVERFITTING_NOTE, font=dict(color=TURN_COLOR, size=12),
                                         xanchor="left", yanchor="top"), annotation_position="top right")
    return figure


def compare_figure(snaps: Sequence[JobSnapshot], x: str = "step", height: int = 380,
                   with_train: bool = False) -> go.Figure:
    """Validation bits per character of several runs overlaid, against steps or seconds, each
    run's best point starred; ``with_train`` adds each run's training curve, dotted, in its color."""
    x_title = "step" if x == "step" else "training time (seconds)"
    what = "Train (dotted) and validation" if with_train else "Validation"
    layout = _layout(f"{what} bits/char by {x_title.split(' (')[0]}", x_title,
                     "bits per character" if with_train else "validation bits per character", height)
    if not any(s.evals for s in snaps):
        return _empty(layout, "waiting for the first evaluation...")
    figure = go.Figure(layout=layout)
    for index, snap in enumerate(snaps):
        if not snap.evals:
            continue
        color = COLORS[index % len(COLORS)]
        if with_train and snap.train:
            factor = 1 / (snap.chars_per_token * LN2)  # nats per token -> bits per character
            figure.add_trace(go.Scatter(
                x=[p[x] for p in snap.train], y=[p["train_loss"] * factor for p in snap.train],
                mode="lines", name=f"{snap.name} (train)", showlegend=False, opacity=0.7,
                line=dict(color=color, width=1.2, dash="dot"),
                hovertemplate=f"{snap.name} train: %{{y:.3f}} bits/char<extra></extra>"))
        figure.add_trace(go.Scatter(
            x=[p[x] for p in snap.evals], y=[p["val_bpc"] for p in snap.evals], mode="lines+markers",
            name=snap.name, line=dict(color=color, width=2.5), marker=dict(size=5),
            hovertemplate=f"{snap.name}: %{{y:.3f}} bits/char<extra></extra>"))
        if snap.best:
            figure.add_trace(go.Scatter(
                x=[snap.best[x]], y=[snap.best["val_bpc"]], mode="markers", showlegend=False,
                marker=dict(symbol="star", size=15, color=color, line=dict(color="#333", width=1)),
                hovertemplate=f"best of {snap.name}: %{{y:.3f}} bits/char<extra></extra>"))
    return figure


def mean_tokens_per_s(snap: JobSnapshot) -> Optional[float]:
    """Mean training throughput over the recorded points (the first, warm-up point left out)."""
    rates = _finite([p.get("tokens_per_s") for p in snap.train[1:]]) or _finite(
        [p.get("tokens_per_s") for p in snap.train])
    return sum(rates) / len(rates) if rates else None
