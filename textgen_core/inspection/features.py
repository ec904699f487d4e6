"""Simple features of a text, per token, and the RNN units whose activations follow them.

A feature is read where the model has just read the token: states of the text (inside quotes,
inside brackets, position in the line) at the token's last character, events (start of a word,
after a newline) at its first character. A unit "follows" a feature when its activations over the
text correlate with it (Pearson's r; the sign only says which way the unit swings).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .activations import Activations

OPEN_BRACKETS, CLOSE_BRACKETS = "([{", ")]}"
FEATURES = {
    "inside quotes": "between an opening and a closing double quote",
    "inside brackets": "inside (round), [square] or {curly} brackets",
    "position in the line": "characters since the last newline",
    "start of a word": "the first letter or digit of a word",
    "after a newline": "the first character of a line",
}


def char_features(text: str) -> dict[str, torch.Tensor]:
    """Each feature's value after every character of ``text``: (len(text),) float32 each."""
    quotes, brackets, column, word_start, line_start = [], [], [], [], []
    inside, depth, col, previous = False, 0, 0, "\n"
    for char in text:
        if char == '"':
            inside = not inside
        elif char == "\u201c":
            inside = True
        elif char == "\u201d":
            inside = False
        if char in OPEN_BRACKETS:
            depth += 1
        elif char in CLOSE_BRACKETS:
            depth = max(0, depth - 1)
        quotes.append(inside)
        brackets.append(depth > 0)
        column.append(col)
        word_start.append(char.isalnum() and not previous.isalnum())
        line_start.append(previous == "\n")
        col = 0 if char == "\n" else col + 1
        previous = char
    values = (quotes, brackets, column, word_start, line_start)
    return {name: torch.tensor(v, dtype=torch.float32) for name, v in zip(FEATURES, values)}


def token_features(text: str, bounds: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each feature per token (N,): states at the token's last character, events at its first.
    A token that covers no characters takes its predecessor's values."""
    per_char = char_features(text)
    if not text:
        return {name: torch.zeros(len(bounds) - 1) for name in FEATURES}
    first = bounds[:-1].clamp(max=len(text) - 1)
    last = (bounds[1:] - 1).clamp(min=0)
    events = ("start of a word", "after a newline")
    return {name: values[first if name in events else last] for name, values in per_char.items()}


@dataclass(frozen=True)
class UnitMatch:
    feature: str
    layer: int
    kind: str           # "hidden" or "cell"
    unit: int
    correlation: float  # Pearson's r of the unit's activations with the feature, over the text

    @property
    def label(self) -> str:
        return f"layer {self.layer} {self.kind} unit {self.unit}"


def correlations(values: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
    """Pearson's r of every column of ``values`` (N, U) with ``feature`` (N,): (U,), 0 where a
    column or the feature does not vary."""
    x = values.double() - values.double().mean(0)
    y = feature.double() - feature.double().mean()
    denominator = x.norm(dim=0) * y.norm()
    r = (x.T @ y) / denominator.clamp(min=1e-12)
    return torch.where(denominator > 1e-9, r, torch.zeros_like(r)).float()


def find_units(acts: Activations, top: int = 3) -> dict[str, list[UnitMatch]]:
    """For each feature that varies in the text, the ``top`` units (of every layer and state) whose
    activations correlate most with it, strongest first; features constant over the text (no quotes
    at all, say) are left out."""
    features = token_features(acts.text, acts.bounds)
    found: dict[str, list[UnitMatch]] = {}
    for name, feature in features.items():
        if len(feature) < 2 or float(feature.std()) == 0.0:
            continue
        matches = []
        for (layer, kind), values in acts.values.items():
            r = correlations(values, feature)
            best = torch.topk(r.abs(), min(top, len(r))).indices
            matches += [UnitMatch(name, layer, kind, int(u), float(r[u])) for u in best]
        found[name] = sorted(matches, key=lambda m: -abs(m.correlation))[:top]
    return found
