"""The Inspect page's inputs and memory: the model pickers, the text to look at (typed, a corpus
excerpt or a generated sample), results kept per session so that a widget change redraws without
recomputing, and the next-token explorer with its button callbacks."""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import streamlit as st

from textgen_core import Bundle, SamplingOptions, TextgenError, generate, read_file
from textgen_core.inspection import Explorer

from . import state
from .models import ModelEntry, builtin_corpora
from .text import escape_markdown, number

MAX_TEXT_CHARS = 20_000   # what the views read (activations keep every unit of every token)
MEMO_ENTRIES = 8
DEFAULT_TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
                "JULIET:\n\"O Romeo, Romeo! wherefore art thou Romeo?\" (she asks the night)\n"
                "Deny thy father and refuse thy name.\n")
SOURCES = ("Type or paste", "A corpus excerpt", "A generated sample")


def digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def memo(key: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, remembered in this session under ``key`` (the last MEMO_ENTRIES results)."""
    kept = st.session_state.setdefault("ins_memo", OrderedDict())
    if key in kept:
        kept.move_to_end(key)
        return kept[key]
    value = compute()
    kept[key] = value
    while len(kept) > MEMO_ENTRIES:
        kept.popitem(last=False)
    return value


def pick_model(models: dict[str, ModelEntry], key: str, label: str, help: str,
               column=st) -> tuple[str, Optional[Bundle]]:
    """A model picker; the bundle, or None (with the error shown) when it cannot be loaded."""
    if st.session_state.get(key) not in models:   # the remembered choice went away
        st.session_state.pop(key, None)
    choice = column.selectbox(label, list(models), key=key, help=help)
    try:
        return choice, models[choice].load()
    except TextgenError as exc:
        column.error(escape_markdown(exc))
        return choice, None


@st.cache_resource(show_spinner="Reading the corpus...", max_entries=4)
def _corpus_text(path: str, mtime: float) -> str:
    return read_file(path).text   # shared read-only by every session


def _corpora() -> dict[str, Callable[[], str]]:
    """name -> its text: the session's corpus first, then the built-in ones."""
    found: dict[str, Callable[[], str]] = {}
    corpus = state.corpus()
    if corpus is not None:
        found[f"{corpus.name} (this session's corpus)"] = lambda: corpus.text
    for name, path in builtin_corpora().items():
        found.setdefault(name, lambda p=path: _corpus_text(str(p), Path(p).stat().st_mtime))
    return found


def _excerpt() -> str:
    corpora = _corpora()
    if not corpora:
        st.caption("No corpus at hand: upload one on the **Corpus** page, or type a text.")
        return ""
    c = st.columns([2, 1, 1])
    if st.session_state.get("ins_corpus") not in corpora:
        st.session_state.pop("ins_corpus", None)
    name = c[0].selectbox("Corpus", list(corpora), key="ins_corpus", help="The text the excerpt is cut from.")
    try:
        text = corpora[name]()
    except TextgenError as exc:
        st.error(escape_markdown(exc))
        return ""
    start = c[1].number_input("From character", min_value=0, max_value=max(0, len(text) - 1), value=0, step=500,
                              key="ins_start", help="Where the excerpt begins in the corpus.")
    length = c[2].number_input("Characters", min_value=50, max_value=MAX_TEXT_CHARS, value=1500, step=500,
                               key="ins_length", help=f"How long the excerpt is (at most {MAX_TEXT_CHARS:,}).")
    return text[int(start):int(start) + int(length)]


def _generated(bundle: Bundle, label: str) -> str:
    samples = {}
    last = st.session_state.get("generated")
    if isinstance(last, dict) and isinstance(last.get("results"), list):
        for entry in last["results"]:   # (temperature, texts); a saved workspace's may be damaged
            if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and number(entry[0]) is not None
                    and isinstance(entry[1], list)):
                continue
            for index, text in enumerate(t for t in entry[1] if isinstance(t, str)):
                samples[f"Generate page: {last.get('model')}, temperature {entry[0]:g}, sample {index + 1}"] = text
    own = st.session_state.get("ins_sample")
    if own:
        samples[f"sampled here: {own['model']}, temperature 0.8, seed 1"] = own["text"]

    def sample() -> None:
        try:
            text = generate(bundle, "", length=400, temperature=0.8, seed=1)[0]
            st.session_state.ins_sample = {"model": label, "text": text}
            st.session_state.ins_sample_choice = f"sampled here: {label}, temperature 0.8, seed 1"
        except TextgenError as exc:
            st.session_state.ins_error = str(exc)

    st.button("Sample a text from this model", on_click=sample, icon=":material/auto_awesome:",
              help="400 tokens at temperature 0.8, seed 1 (or use the Generate page's last text).")
    if not samples:
        st.caption("No sample yet: make one here, or on the **Generate** page.")
        return ""
    if st.session_state.get("ins_sample_choice") not in samples:
        st.session_state.pop("ins_sample_choice", None)
    choice = st.selectbox("Sample", list(samples), key="ins_sample_choice", help="Which generated text to look at.")
    return samples[choice][:MAX_TEXT_CHARS]


def text_source(bundle: Bundle, label: str) -> str:
    """The text every view looks at, chosen by the user."""
    source = st.radio("Text", SOURCES, horizontal=True, key="ins_source",
                      help="Any text: typed or pasted, cut from a corpus, or generated by a model.")
    if source == SOURCES[1]:
        return _excerpt()
    if source == SOURCES[2]:
        return _generated(bundle, label)
    return st.text_area("Your text", DEFAULT_TEXT, height=140, max_chars=MAX_TEXT_CHARS, key="ins_text",
                        help="Paste anything: the model scores it as it stands.")


# --- the next-token explorer -----------------------------------------------------------------
def explorer_options() -> SamplingOptions:
    """The explorer's settings from its widgets (raises ConfigError naming a bad one)."""
    ss = st.session_state
    top_p = float(ss.get("ins_top_p", 1.0))
    return SamplingOptions(length=1, temperature=float(ss.get("ins_temperature", 0.8)),
                           top_k=int(ss.get("ins_top_k", 0)) or None, top_p=top_p if top_p < 1 else None).validated()


def explorer_for(bundle: Bundle, label: str, prompt: str, seed: int) -> Explorer:
    """The session's explorer, started again when the model, prompt or seed changes."""
    ss = st.session_state
    key = (label, id(bundle), prompt, seed)
    if ss.get("ins_explorer_key") != key or ss.get("ins_explorer") is None:
        ss.ins_explorer, ss.ins_explorer_key = Explorer(bundle, prompt, seed), key
    return ss.ins_explorer


def _act(action: Callable[[Explorer], Any]) -> None:
    explorer = st.session_state.get("ins_explorer")
    if explorer is None:
        return
    try:
        action(explorer)
    except TextgenError as exc:
        st.session_state.ins_error = str(exc)


def sample_next(count: int) -> None:
    _act(lambda e: e.run(explorer_options(), count))


def take_back() -> None:
    _act(lambda e: e.undo() if e.can_undo else None)


def start_again() -> None:
    st.session_state.ins_explorer = None


def use_instead() -> None:
    """Replace the last token by the one chosen in the picker (or write it first, before any step)."""
    choice = st.session_state.get("ins_pick")
    if choice is None:
        return

    def replace(explorer: Explorer) -> None:
        if explorer.steps:
            explorer.undo()
        explorer.step(explorer_options(), pick=int(choice))

    _act(replace)


def show_error() -> None:
    """A message a callback left (callbacks run before the page, which shows it here)."""
    message = st.session_state.pop("ins_error", None)
    if message:
        st.error(escape_markdown(message))
