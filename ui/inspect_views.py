"""What the Inspect page draws: heat maps and coloured texts (HTML from the engine, wrapped with their
style sheet), the next-token bar chart and the feature-finder table. Pure functions: no streamlit."""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Optional

import plotly.graph_objects as go

from textgen_core.inspection import Activations, AttentionRow, Explorer, Influence, Surprisal, UnitMatch
from textgen_core.inspection.explorer import Choice
from textgen_core.inspection.html import STYLE, difference_html, shown_piece, surprisal_html, values_html

MAX_SHOWN_TOKENS = 4_000     # tokens a view colours (the totals cover the whole text)
BAR_COLOR, MARK_COLOR = "#7fa7d9", "#d62728"


def styled(fragment: str) -> str:
    """An HTML fragment with the style sheet it needs (st.html is not iframed, so the classes are
    prefixed ``tgi-`` to keep clear of the app's own)."""
    return f"<style>{STYLE}</style>{fragment}"


def surprise_view(result: Surprisal, scale_bits: float) -> str:
    return styled(surprisal_html(result, scale_bits, MAX_SHOWN_TOKENS))


def difference_view(a: Surprisal, b: Surprisal, names: tuple[str, str], scale_bits: float) -> str:
    chars = int(a.bounds[min(len(a), MAX_SHOWN_TOKENS)])
    return styled(difference_html(a, b, scale_bits, max_chars=chars, names=names))


def explorer_text(explorer: Explorer) -> str:
    """The prompt in grey, then each generated token; hand-picked ones underlined, with a tooltip."""
    parts = [f'<span style="color:#888">{html.escape(explorer.prompt)}</span>']
    for index, step in enumerate(explorer.steps):
        piece = html.escape(explorer.tokenizer.decode([step.token_id]))
        how = "picked by hand" if step.picked else f"drawn at temperature {step.options.temperature:g}"
        style = "background:#fde0dd;text-decoration:underline" if step.picked else ""
        tip = html.escape(f"token {index + 1}: “{shown_piece(step.piece)}”, {how}")
        parts.append(f'<span class="tgi-t" style="{style}" data-tip="{tip}">{piece}</span>')
    return styled('<div class="tgi-map">' + "".join(parts) + "</div>")


def next_token_figure(choices: Sequence[Choice], marked: Optional[int], title: str,
                      marked_label: str = "sampled", height: int = 340) -> go.Figure:
    """Bars of the most likely tokens, most likely on the left; the ``marked`` token id in red, its
    bar labelled ``marked_label``."""
    labels = [f"{shown_piece(c.piece)}" for c in choices]
    # plotly merges equal category names: keep each bar apart with invisible position marks
    labels = [label + "\u200b" * i for i, label in enumerate(labels)]
    colors = [MARK_COLOR if c.token_id == marked else BAR_COLOR for c in choices]
    texts = [f"{marked_label}<br>{c.probability:.1%}" if c.token_id == marked else f"{c.probability:.1%}"
             for c in choices]
    top = max([c.probability for c in choices] + [1e-6]) * 1.25      # room for the labels above the bars
    figure = go.Figure(go.Bar(x=labels, y=[c.probability for c in choices], marker_color=colors, text=texts,
                              textposition="outside", cliponaxis=False,
                              hovertemplate="%{x}: %{y:.2%}<extra></extra>"))
    figure.update_layout(title=dict(text=title, x=0, xanchor="left", font=dict(size=15)), height=height,
                         margin=dict(l=10, r=10, t=50, b=10), showlegend=False, uirevision="keep",
                         yaxis=dict(title="probability", tickformat=".0%", range=[0, top],
                                    tickvals=[0, 0.25, 0.5, 0.75, 1.0] if top > 1 else None),
                         xaxis=dict(type="category", tickfont=dict(family="monospace", size=14)))
    return figure


def finder_rows(found: dict[str, list[UnitMatch]], descriptions: dict[str, str]) -> list[dict]:
    """One row per feature: its best unit and how closely it follows the feature."""
    return [{"feature": name, "what it is": descriptions.get(name, ""), "best unit": matches[0].label,
             "correlation": round(matches[0].correlation, 3),
             "runners-up": ", ".join(f"{m.label} ({m.correlation:+.2f})" for m in matches[1:])}
            for name, matches in found.items() if matches]


def unit_view(acts: Activations, layer: int, kind: str, unit: int) -> str:
    """The text coloured by one unit's value after each token (blue negative, red positive)."""
    values = acts.unit(layer, kind, unit).tolist()
    scale = 1.0 if kind == "hidden" else max(1e-6, max(abs(v) for v in values))
    last = min(len(values), MAX_SHOWN_TOKENS)
    return styled(values_html(acts.text, acts.bounds, values, scale, lambda i, v: f"{kind} unit {unit}: {v:+.3f}",
                              last=last, labels=(f"{-scale:+.2g}", f"{scale:+.2g}")))


def attention_view(row: AttentionRow, layer: int, head: Optional[int], context: int) -> str:
    """The text coloured by the attention weight the chosen position gives each token (square-root
    shades, so that small weights show beside large ones); tokens out of the block's window greyed."""
    weights = row.over_tokens(layer, head).tolist()
    peak = max(weights) or 1.0
    first = max(0, row.position + 1 - MAX_SHOWN_TOKENS)
    return styled(values_html(row.text, row.bounds, weights, peak,
                              lambda i, v: f"weight {v:.3f} ({row.position - i} tokens back)",
                              diverging=False, first=first, last=row.position + 1, mark=row.position,
                              labels=("0", f"{peak:.2f} (square-root shades; grey: out of this block's window)"),
                              power=0.5, dimmed=lambda i: row.position - i >= context))


def influence_view(result: Influence) -> str:
    """The text coloured by how strongly the prediction after the position responds to each token;
    tokens the model cannot see greyed."""
    change = result.over_tokens().tolist()
    peak = max(change) or 1.0
    first = max(0, result.position + 1 - MAX_SHOWN_TOKENS)
    visible = set(result.visible) if result.visible is not None else None

    def unseen(i: int) -> bool:
        back = result.position - i
        return back not in visible if visible is not None else i < result.start

    def tip(i: int, v: float) -> str:
        back = result.position - i
        if unseen(i):
            return f"{back} tokens back: outside the receptive field, cannot change the prediction"
        return f"{back} tokens back: response {v:.3g}"

    return styled(values_html(result.text, result.bounds, change, peak, tip, diverging=False, first=first,
                              last=result.position + 1, mark=result.position, power=0.5, dimmed=unseen,
                              labels=("weak", f"{peak:.3g} (gradient size, square-root shades; grey: not seen)")))


def bits(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3f}"
