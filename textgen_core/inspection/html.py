"""Texts coloured token by token, as self-contained HTML (no scripts, no external files).

Shared by the app (inside ``st.html``) and ``python -m textgen_core surprisal --html``. Every piece
of text and every tooltip is HTML-escaped; hovering a token shows its tooltip (pure CSS, from a
``data-tip`` attribute), and its ``title`` is left unset so that browsers do not show two.
"""
from __future__ import annotations

import functools
import html
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Optional

import torch

from .surprise import Surprisal

SURPRISE_STOPS = ((0.0, (255, 255, 255)), (0.2, (255, 243, 176)), (0.45, (253, 184, 99)),
                  (0.7, (230, 85, 13)), (1.0, (127, 0, 0)))
DIVERGING_STOPS = ((0.0, (33, 102, 172)), (0.25, (146, 197, 222)), (0.5, (255, 255, 255)),
                   (0.75, (244, 165, 130)), (1.0, (178, 24, 43)))
WEIGHT_STOPS = ((0.0, (255, 255, 255)), (0.5, (158, 202, 225)), (1.0, (8, 69, 148)))
FILE_MAX_TOKENS = 100_000     # tokens a heat-map file shows (about 250 bytes each); the totals cover all
DEFAULT_SCALE_BITS = 10.0     # bits at the darkest red: a 1-in-1024 token
COLOUR_STEPS = 200            # shades per ramp: finer than the eye tells apart
SHOWN = {" ": "␣", "\n": "↵", "\t": "→", "\r": "␍"}

STYLE = """
.tgi-map{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:14px;line-height:1.75;
  white-space:pre-wrap;word-break:break-word;color:#111;background:#fff;padding:8px 10px;border:1px solid #ddd;
  border-radius:6px}
.tgi-t{position:relative;border-radius:2px;padding:1px 0}
.tgi-t:hover{outline:1px solid #222;z-index:20}
.tgi-t:hover::after{content:attr(data-tip);position:absolute;left:0;top:1.7em;z-index:30;white-space:pre;
  background:#222;color:#fff;padding:5px 9px;border-radius:5px;font-size:12px;line-height:1.45;
  pointer-events:none;box-shadow:0 2px 6px rgba(0,0,0,.3)}
.tgi-nl{opacity:.35;font-size:11px}
.tgi-here{outline:2px solid #d62728;outline-offset:1px}
.tgi-legend{font-family:sans-serif;font-size:12px;color:inherit;margin:6px 0 10px 0;display:flex;
  align-items:center;gap:8px}
.tgi-bar{display:inline-block;width:180px;height:12px;border:1px solid #ccc;border-radius:2px}
"""


def _mix(stops: Sequence[tuple[float, tuple[int, int, int]]], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            r, g, b = (round(a + (z - a) * w) for a, z in zip(c0, c1))
            return r, g, b
    return stops[-1][1]


@functools.lru_cache(maxsize=4096)
def _css(stops, step: int) -> str:
    r, g, b = _mix(stops, step / COLOUR_STEPS)
    ink = "#fff" if 0.299 * r + 0.587 * g + 0.114 * b < 140 else "#111"
    return f"background:#{r:02x}{g:02x}{b:02x};color:{ink}"


def colour(stops, t: float) -> str:
    """CSS for a background at ``t`` (0 to 1) of the colour ramp, with a text colour that reads on it."""
    return _css(stops, round(min(1.0, max(0.0, t)) * COLOUR_STEPS))


def shown_piece(piece: str) -> str:
    """A token's text for a tooltip, with spaces and line breaks made visible."""
    return "".join(SHOWN.get(c, c) for c in piece) or "(no characters)"


def _piece_html(piece: str) -> str:
    # a line break stays a line break, with a faint mark before it so that the token can be hovered
    return html.escape(piece).replace("\n", '<span class="tgi-nl">↵</span>\n')


def coloured_text(text: str, bounds: torch.Tensor, styles: Sequence[str], tips: Sequence[str],
                  first: int = 0, last: Optional[int] = None, mark: Optional[int] = None) -> str:
    """Tokens ``first`` to ``last`` (exclusive) of ``text`` as spans with their CSS and tooltips;
    ``mark`` outlines one token. A token without characters (a byte of a split character) joins
    the span before it, its tooltip added to that span's."""
    last = len(styles) if last is None else last
    cuts = bounds[first:last + 1].tolist()
    spans: list[list] = []   # [piece, style, tips, marked]
    for i in range(first, last):
        piece = text[cuts[i - first]:cuts[i - first + 1]]
        if not piece and spans:
            spans[-1][2].append(tips[i])
            spans[-1][3] |= i == mark
            continue
        spans.append([piece, styles[i], [tips[i]], i == mark])
    parts = []
    for piece, style, tip, marked in spans:
        cls = "tgi-t tgi-here" if marked else "tgi-t"
        parts.append(f'<span class="{cls}" style="{style}" data-tip="{html.escape(chr(10).join(tip))}">'
                     f"{_piece_html(piece)}</span>")
    return '<div class="tgi-map">' + "".join(parts) + "</div>"


def legend(stops, low: str, high: str, middle: str = "") -> str:
    ramp = ",".join(f"rgb{_mix(stops, t)}" for t in (0, 0.25, 0.5, 0.75, 1))
    middle = f" <span>{html.escape(middle)}</span>" if middle else ""
    return (f'<div class="tgi-legend"><span>{html.escape(low)}</span>'
            f'<span class="tgi-bar" style="background:linear-gradient(to right,{ramp})"></span>'
            f"<span>{html.escape(high)}</span>{middle}</div>")


def surprisal_tips(result: Surprisal, count: int) -> list[str]:
    """The tooltips of the first ``count`` tokens: the token, its bits and the model's top predictions.
    Each vocabulary entry is named once (a long text repeats a few hundred of them)."""
    top_ids, top_probs = result.top_ids[:count].tolist(), result.top_probs[:count].tolist()
    names = {i: shown_piece(result.token_text(i)) for i in set(itertools.chain(*top_ids[1:])) if i >= 0}
    nats, bounds, text = result.nats[:count].tolist(), result.bounds.tolist(), result.text
    tips = []
    for i in range(count):
        piece = shown_piece(text[bounds[i]:bounds[i + 1]])
        if i == 0:
            tips.append(f"“{piece}”  the first token: nothing read yet, no prediction")
            continue
        lines = [f"“{piece}”  {nats[i] / math.log(2):.2f} bits  (p = {math.exp(-nats[i]):.1%})", "the model expected:"]
        lines += [f"  {names[t]:<12} {p:6.1%}" for t, p in zip(top_ids[i], top_probs[i])]
        tips.append("\n".join(lines))
    return tips


def surprisal_html(result: Surprisal, scale_bits: float = DEFAULT_SCALE_BITS,
                   max_tokens: Optional[int] = None) -> str:
    """The text coloured by each token's surprisal in bits (white: expected, dark red: ``scale_bits``
    or more), a tooltip with the top predictions on every token, and a legend."""
    count = len(result) if max_tokens is None else min(len(result), max_tokens)
    bits = result.bits[:count].tolist()
    styles = [colour(SURPRISE_STOPS, 0.0 if math.isnan(b) else b / scale_bits) for b in bits]
    return (legend(SURPRISE_STOPS, "0 bits (expected)", f"{scale_bits:g}+ bits (surprising)")
            + coloured_text(result.text, result.bounds, styles, surprisal_tips(result, count), 0, count))


def _segments(a: torch.Tensor, b: torch.Tensor, length: int) -> torch.Tensor:
    """Every boundary of either tokenization, in order: (M + 1,) cutting the text into segments
    inside which both models' per-character bits are constant."""
    return torch.unique(torch.cat([a, b, torch.tensor([0, length])]).clamp(0, length))


def difference_html(a: Surprisal, b: Surprisal, scale_bits: float = 4.0,
                    max_chars: Optional[int] = None, names: tuple[str, str] = ("A", "B")) -> str:
    """Where one model beats the other, character by character (each token's bits spread over its
    characters): blue where ``a`` needs fewer bits, red where ``b`` does."""
    if a.text != b.text:
        raise ValueError("both results must score the same text")
    length = len(a.text) if max_chars is None else min(len(a.text), max_chars)
    bits_a, bits_b = a.char_bits(), b.char_bits()               # (len(text),) each
    cuts = _segments(a.bounds, b.bounds, length)
    styles, tips = [], []
    for start in cuts[:-1].tolist():
        da, db = float(bits_a[start]), float(bits_b[start])
        diff = da - db                                            # > 0: b needs fewer bits here
        if math.isnan(diff):
            styles.append(colour(DIVERGING_STOPS, 0.5))
            tips.append("not predicted by both models (a first token)")
            continue
        styles.append(colour(DIVERGING_STOPS, 0.5 + 0.5 * diff / scale_bits))
        better = names[0] if diff < 0 else names[1]
        tips.append(f"{names[0]}: {da:.2f} bits/char, {names[1]}: {db:.2f} bits/char\n"
                    f"{better} is better by {abs(diff):.2f} bits/char" if diff else "a tie")
    return (legend(DIVERGING_STOPS, f"{names[0]} better by {scale_bits:g} bits/char",
                   f"{names[1]} better by {scale_bits:g} bits/char", "(white: a tie)")
            + coloured_text(a.text, cuts, styles, tips))


DIMMED = "background:#f3f3f3;color:#aaa"   # a token the view says nothing about (out of reach)


def values_html(text: str, bounds: torch.Tensor, values: Sequence[float], scale: float,
                tip: Callable[[int, float], str], diverging: bool = True, first: int = 0,
                last: Optional[int] = None, mark: Optional[int] = None,
                labels: tuple[str, str] = ("", ""), power: float = 1.0,
                dimmed: Optional[Callable[[int], bool]] = None) -> str:
    """Tokens ``first`` to ``last`` coloured by ``values`` (one a token): blue to red over
    -scale..scale (``diverging``) or white to blue over 0..scale, the ramp read at
    (|value| / scale) ** ``power`` (0.5 shows small weights beside large ones); ``tip(index, value)``
    gives each tooltip, and tokens where ``dimmed(index)`` are greyed out."""
    last = len(values) if last is None else last
    stops = DIVERGING_STOPS if diverging else WEIGHT_STOPS
    scale = scale if scale > 0 else 1.0
    styles, tips = [""] * len(values), [""] * len(values)
    for i in range(first, last):
        v = float(values[i])
        t = min(1.0, abs(v) / scale) ** power
        if dimmed is not None and dimmed(i):
            styles[i] = DIMMED
        else:
            styles[i] = colour(stops, 0.5 + 0.5 * math.copysign(t, v) if diverging else t)
        tips[i] = tip(i, v)
    return (legend(stops, labels[0], labels[1]) if any(labels) else "") + \
        coloured_text(text, bounds, styles, tips, first, last, mark)


def surprisal_document(result: Surprisal, source: str, max_tokens: int = FILE_MAX_TOKENS) -> str:
    """A whole HTML page: the totals and the heat map of ``result`` (its first ``max_tokens`` tokens)."""
    shown = min(len(result), max_tokens)
    note = "" if shown == len(result) else f" The first {shown:,} tokens are shown."
    summary = (f"<h2>{html.escape(result.model_name)} on {html.escape(source)}</h2>"
               f"<p>{result.bits_per_char:.4f} bits per character: {result.total_bits:,.0f} bits over "
               f"{result.predicted_chars:,} characters in {len(result):,} tokens (the first token is not "
               f"predicted).{html.escape(note)} Hover a token for what the model expected there.</p>")
    return document(f"Surprisal: {result.model_name} on {source}", summary + surprisal_html(result, max_tokens=shown))


def document(title: str, body: str) -> str:
    """A whole HTML page around fragments made here (the CLI's file)."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}}{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")
