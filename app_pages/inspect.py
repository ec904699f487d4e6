"""Inspect: inside a model. How surprised it is by each token of a text (and where another model does
better), the next-token distribution one step at a time, and what its units, attention or
receptive field do."""
import streamlit as st

from textgen_core import TextgenError
from textgen_core.inspection import FEATURES, activations, attention_from, find_units, influence, surprisal
from textgen_core.inspection.html import shown_piece
from textgen_core.sampling import MAX_PROMPT_CHARS
from ui import state
from ui.inspect_inputs import (
    digest,
    explorer_for,
    explorer_options,
    memo,
    pick_model,
    sample_next,
    show_error,
    start_again,
    take_back,
    text_source,
    use_instead,
)
from ui.inspect_views import (
    attention_view,
    difference_view,
    explorer_text,
    finder_rows,
    influence_view,
    next_token_figure,
    surprise_view,
    unit_view,
)
from ui.models import available_models, model_summary
from ui.text import escape_markdown

ss = state.init()
INSIDE = {"gru": "Neurons", "lstm": "Neurons", "attention": "Attention", "cnn": "Receptive field"}

st.title("Inspect")
models = available_models()
if not models:
    st.info("No model yet. Train one on the **Train** page, or load a pretrained or Hub model on the **Models** "
            "page, then look inside it here.", icon=":material/info:")
    c1, c2, _ = st.columns([1, 1, 3])
    c1.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:",
                 query_params=state.address())
    c2.page_link("app_pages/models.py", label="Load a model", icon=":material/inventory_2:",
                 query_params=state.address())
    st.stop()

label, bundle = pick_model(models, "ins_model", "Model", "The model to look inside.")
if bundle is None:
    st.stop()
st.caption(model_summary(bundle))
show_error()
text = text_source(bundle, label)
arch = bundle.model.config.arch
surprise_tab, next_tab, inside_tab = st.tabs(["Surprise", "Next token", INSIDE[arch]])
key = (label, id(bundle), digest(text))


def scored(name: str, model_bundle):
    return memo(("surprisal", name, id(model_bundle), digest(text)), lambda: surprisal(model_bundle, text))


def metrics(column, result) -> None:
    c = column.columns(3)
    c[0].metric("Bits per character", f"{result.bits_per_char:.3f}",
                help="Total surprisal in bits over the characters after the first token.")
    c[1].metric("Tokens", f"{len(result):,}", help="The first one has no prediction: nothing was read before it.")
    c[2].metric("Total", f"{result.total_bits:,.0f} bits", help="The text's summed surprisal.")


with surprise_tab:
    c = st.columns([2, 1])
    others = ["(none)"] + [name for name in models if name != label]
    if ss.get("ins_other") not in others:
        ss.pop("ins_other", None)
    other = c[0].selectbox("Compare with", others, key="ins_other",
                           help="A second model on the same text: both heat maps side by side, and where each wins.")
    scale = c[1].slider("Colour scale (bits)", 2.0, 16.0, 10.0, 0.5, key="ins_scale",
                        help="Surprisal at the darkest red: a token of p = 1/2^bits.")
    st.caption("Each token coloured by how surprised the model was to see it (bits = -log2 p). Hover a token for "
               "the five tokens the model expected there.")
    try:
        result = scored(label, bundle) if text else None
        second = None
        if result is not None and other != "(none)":
            other_bundle = models[other].load()
            second = scored(other, other_bundle)
    except TextgenError as exc:
        st.error(escape_markdown(exc))
        result = None
    if result is None:
        st.caption("Give a text above to score it.")
    elif second is None:
        metrics(st, result)
        st.html(surprise_view(result, scale))
    else:
        left, right = st.columns(2)
        for column, name, shown in ((left, label, result), (right, other, second)):
            column.markdown(f"**{escape_markdown(name)}**")
            metrics(column, shown)
            column.html(surprise_view(shown, scale))
        st.subheader("Where one beats the other")
        st.caption(f"Per character (a token's bits spread over its characters): blue where "
                   f"**{escape_markdown(label)}** needs fewer bits, red where **{escape_markdown(other)}** does.")
        names = (bundle.name, other_bundle.name) if bundle.name != other_bundle.name else ("the first", "the second")
        st.html(difference_view(result, second, names, 4.0))

with next_tab:
    c = st.columns(4)
    prompt = c[0].text_input("Prompt", "", max_chars=MAX_PROMPT_CHARS, key="ins_prompt",
                             placeholder="Empty: start from a new line", help="The text the model continues.")
    seed = c[0].number_input("Seed", value=1, step=1, key="ins_seed",
                             help="The same seed and choices give the same text.")
    c[1].slider("Temperature", 0.0, 2.0, 0.8, 0.05, key="ins_temperature",
                help="Redraws the bars at once, from the stored logits (the model does not run again); "
                     "the next token is drawn at this temperature.")
    c[2].number_input("Top-k (0: off)", value=0, step=1, key="ins_top_k",
                      help="Draw only from the k most likely tokens.")
    c[2].slider("Top-p (1: off)", 0.05, 1.0, 1.0, 0.05, key="ins_top_p",
                help="Draw only from the most likely tokens that together reach this probability.")
    bars = c[3].slider("Bars", 5, 30, 12, key="ins_bars", help="How many of the most likely tokens the chart shows.")
    try:
        options = explorer_options()
        explorer = explorer_for(bundle, label, prompt, int(seed))
    except TextgenError as exc:
        st.error(escape_markdown(exc))
        explorer = None
    if explorer is not None:
        b = st.columns([1, 1, 1, 1, 3])
        b[0].button("Next token", type="primary", on_click=sample_next, args=(1,), icon=":material/skip_next:",
                    help="Draw one token under these settings, with this explorer's seeded generator.")
        b[1].button("Next 10", on_click=sample_next, args=(10,), help="Draw ten tokens.")
        b[2].button("Take back", on_click=take_back, disabled=not explorer.can_undo,
                    help="Undo the last token (the generator goes back too).")
        b[3].button("Start again", on_click=start_again, help="Back to the prompt, with the seed.")
        st.html(explorer_text(explorer))
        last = explorer.steps[-1] if explorer.steps else None
        probs = explorer.distribution(options.temperature, options.top_k, options.top_p,
                                      logits=None if last is None else last.logits)
        choices = explorer.top(probs, bars, always=None if last is None else last.token_id)
        if last is None:
            title = f"The first token: its distribution at temperature {options.temperature:g}"
        else:
            title = (f"Token {len(explorer.steps)}: what the model could have written (at temperature "
                     f"{options.temperature:g})")
        st.plotly_chart(next_token_figure(choices, None if last is None else last.token_id, title,
                                          "picked" if last is not None and last.picked else "sampled"), key="ins_chart")
        if last is not None and not last.picked and last.options.temperature != options.temperature:
            st.caption(f"It was drawn at temperature {last.options.temperature:g}; the bars show the same logits at "
                       f"{options.temperature:g}.")
        p = st.columns([2, 1, 3])
        pickable = {c.token_id: c for c in choices}
        p[0].selectbox("Write this token instead" if last is not None else "Write this token first", list(pickable),
                       format_func=lambda i: f"{shown_piece(pickable[i].piece)}  ({pickable[i].probability:.1%})",
                       key="ins_pick", help="Any of the listed tokens; then go on from there.")
        p[1].button("Use it instead" if last is not None else "Write it", on_click=use_instead,
                    help="Replaces the last token and continues from it (it draws nothing from the generator).")

with inside_tab:
    acts = None
    if text and arch in ("gru", "lstm"):
        try:
            acts = memo(("activations",) + key, lambda: activations(bundle, text))
            found = memo(("units",) + key, lambda: find_units(acts))
        except TextgenError as exc:
            st.error(escape_markdown(exc))
    if not text:
        st.caption("Give a text above to look inside the model on it.")
    elif acts is not None:
        st.caption("The units whose activations follow simple features of this text most closely "
                   "(Pearson's r over its tokens; the sign says which way the unit swings).")
        rows = finder_rows(found, FEATURES)
        if rows:
            st.dataframe(rows, hide_index=True)
        best = {f"{name}: {m[0].label} (r = {m[0].correlation:+.2f})": m[0] for name, m in found.items() if m}
        choice = st.selectbox("Unit to show", list(best) + ["choose one by hand"], key="ins_unit_choice",
                              help="The best unit for a feature, or any unit of any layer.")
        if choice in best:
            layer, kind, unit = best[choice].layer, best[choice].kind, best[choice].unit
        else:
            c = st.columns(3)
            layer = int(c[0].number_input("Layer", 0, acts.layers - 1, 0, key="ins_layer", help="0 reads the tokens."))
            kind = c[1].radio("State", acts.kinds, horizontal=True, key="ins_kind",
                              help="An LSTM has a hidden state (what it shows the next layer) and a cell state "
                                   "(its memory); a GRU has a hidden state only.")
            unit = int(c[2].number_input("Unit", 0, acts.units - 1, 0, key="ins_unit",
                                         help="Which of the layer's units."))
        st.html(unit_view(acts, layer, kind, unit))
    elif arch in ("attention", "cnn"):
        tokens = len(bundle.tokenizer.encode(text))
        if ss.get("ins_position", 0) >= tokens:   # a shorter text than before
            ss.pop("ins_position")
        position = st.slider("Position (token)", 0, max(1, tokens - 1), tokens - 1, key="ins_position",
                             help="The token after which the next one is predicted (outlined in red).")
        position = min(position, tokens - 1)
        try:
            if arch == "attention":
                cfg = bundle.model.config
                c = st.columns(2)
                layer = c[0].selectbox("Block", list(range(cfg.layers)), key="ins_block",
                                       help="Each block attends to the last context tokens of the block below.")
                head = c[1].selectbox("Head", ["mean of all heads"] + list(range(cfg.heads)), key="ins_head",
                                      help="One attention head, or their mean.")
                row = memo(("attention", position) + key, lambda: attention_from(bundle, text, position))
                st.caption(f"How much block {layer} at the outlined token attends to each earlier token (one block "
                           f"sees {cfg.context - 1} tokens back; stacked, {bundle.model.receptive_field - 1}).")
                st.html(attention_view(row, layer, None if isinstance(head, str) else head, cfg.context))
            else:   # a CNN
                reach = memo(("influence", position) + key, lambda: influence(bundle, text, position))
                field = len(reach.visible or [])
                st.caption(f"The prediction after the outlined token sees its last {field} tokens; the shade says "
                           "how strongly it responds to each (the gradient of its most likely next token's log "
                           "probability). Anything earlier cannot change it.")
                st.html(influence_view(reach))
        except TextgenError as exc:
            st.error(escape_markdown(exc))
