"""Corpus: upload a text (or pick a built-in one), see its statistics and how it is tokenized."""
import html

import streamlit as st

from textgen_core import TOKENIZER_KINDS, TextgenError, make_tokenizer, read_file, read_text
from ui import state
from ui.models import builtin_corpora, data_dir
from ui.text import escape_markdown

ss = state.init()
PREVIEW_CHARS = 2_000_000  # the tokenizer preview is fitted on at most this much text
TOKENIZER_HELP = {"char": "char: one token per character",
                  "word": "word: one token per word or punctuation mark",
                  "sentencepiece": "sentencepiece: learned subword pieces (BPE)"}

st.title("Corpus")
st.write("The text your model learns from: lyrics, poems, a book. Plain text, any common encoding.")

workspace = state.workspace()
saved = workspace.corpora()
sources = ["Upload a file", "Built-in corpus"] + (["Saved in this workspace"] if saved else [])
source = st.radio("Source", sources, horizontal=True, key="corpus_source", persist_state="session",
                  label_visibility="collapsed", help="Upload a text, take a built-in one, or one uploaded before.")


def on_upload() -> None:
    """Decode the upload in the callback, before the script runs, so the sidebar sees it at once; the
    text is saved in the workspace, where the next visit finds it."""
    upload, ss.corpus_error = ss.get("corpus_upload"), None
    if upload is not None:
        try:
            state.use_corpus(read_text(upload.getvalue(), upload.name), ("upload", upload.file_id))
        except TextgenError as exc:
            kept = state.corpus()
            ss.corpus_error = str(exc) + (f" The corpus loaded before, {kept.name}, is still in use."
                                          if kept is not None else "")


def use_builtin(path, label) -> None:
    try:
        state.use_corpus(read_file(path), ("builtin", label))
        ss.corpus_error = None
    except TextgenError as exc:
        ss.corpus_error = str(exc)


def use_saved(key: str) -> None:
    try:
        state.use_corpus(workspace.load_corpus(key), ("saved", key))
        ss.corpus_error = None
    except TextgenError as exc:
        ss.corpus_error = str(exc)


if source == "Upload a file":
    st.file_uploader("Upload a plain-text file", type=["txt", "text", "md"], key="corpus_upload",
                     on_change=on_upload, help="It is kept in this workspace, so a later visit finds it again.")
    if ss.get("corpus_error") and ss.get("corpus_upload") is not None:
        st.error(escape_markdown(ss.corpus_error), icon=":material/block:")
elif source == "Built-in corpus":
    corpora = builtin_corpora()
    if not corpora:
        st.info(f"No built-in corpora here: the data folder ({escape_markdown(str(data_dir()))}) has no .txt "
                "files (TEXTGEN_DATA_DIR names another). Upload a text file instead.")
    else:
        label = st.selectbox("Built-in corpus", list(corpora), key="builtin_corpus", persist_state="session",
                             help="A text that comes with the project.")
        st.button("Use this corpus", on_click=use_builtin, args=(corpora[label], label),
                  help="Train on this text.")
        if ss.get("corpus_error"):
            st.error(escape_markdown(ss.corpus_error), icon=":material/block:")
else:   # saved in this workspace
    by_key = {item["key"]: item for item in saved}
    key = st.selectbox("Saved corpus", list(by_key), key="saved_corpus",
                       format_func=lambda k: f"{by_key[k]['name']} ({by_key[k].get('chars', 0):,} characters)",
                       help="A text uploaded or chosen before in this workspace.")
    st.button("Use this corpus", on_click=use_saved, args=(key,), key="use_saved_corpus", help="Train on this text.")
    if ss.get("corpus_error"):
        st.error(escape_markdown(ss.corpus_error), icon=":material/block:")

corpus = state.corpus()
if corpus is None:
    st.info("No corpus yet. Upload a `.txt` file above to see its statistics and how it is split into tokens.",
            icon=":material/upload_file:")
    st.stop()

stats = corpus.stats
st.subheader(escape_markdown(corpus.name))
cols = st.columns(5)
cols[0].metric("encoding", corpus.encoding)
cols[1].metric("characters", f"{stats.chars:,}")
cols[2].metric("distinct characters", f"{stats.distinct_chars:,}")
cols[3].metric("words", f"{stats.words:,}")
cols[4].metric("lines", f"{stats.lines:,}")
with st.expander("Preview", expanded=True):
    st.code(corpus.text[:1500] + ("\n..." if len(corpus.text) > 1500 else ""), language=None, height=300)

st.subheader("Tokenizer")
cols = st.columns(3)
kind = cols[0].selectbox("Tokenizer", TOKENIZER_KINDS, key="tokenizer", persist_state="session",
                         format_func=TOKENIZER_HELP.get, help="How the text is split into tokens.")
if kind in state.VOCAB_KEYS:
    vocab_key, default = state.VOCAB_KEYS[kind]
    cols[1].number_input("Vocabulary size", 50, 100_000, state.initial(vocab_key, default), step=50, key=vocab_key,
                         persist_state="session",
                         help="word: keep the most frequent words; sentencepiece: number of pieces")
else:
    cols[1].caption("Vocabulary size: every character in the text gets its own token (the 9,999 most "
                    "frequent when there are more; the rest become `<unk>`).")
cols[2].slider("Validation fraction", 0.05, 0.5, state.initial("val_fraction", 0.1), 0.05, key="val_fraction",
               persist_state="session",
               help="The last part of the text is held out to measure how well the model generalizes.")
kind, vocab, val_fraction = state.tokenizer_settings()
state.remember(**{key: ss[key] for key in state.REMEMBERED if key in ss and key != "gen_model"})

cache_key = (ss.corpus_key, kind, vocab)
if ss.get("_tok_cache", (None,))[0] != cache_key:
    with st.spinner(f"Fitting the {kind} tokenizer..."):
        try:
            ss._tok_cache = (cache_key, make_tokenizer(kind, vocab).fit(corpus.text[:PREVIEW_CHARS]), None)
        except TextgenError as exc:
            ss._tok_cache = (cache_key, None, str(exc))
_, tokenizer, error = ss._tok_cache
if error:
    st.error(escape_markdown(error))
    st.stop()

lines = [line.strip() for line in corpus.text.splitlines() if line.strip()]
first_line = next((line for line in lines if len(line) >= 30), lines[0] if lines else "")
line = st.text_input("Sample line", first_line[:200], help="Type anything to see how it is split.")
ids = tokenizer.encode(line)
pieces = tokenizer.token_strings(ids)[:300]
chips = "".join(
    f'<span class="tok tok{i % 2}" title="id {token_id}">'
    f'{html.escape(piece).replace(" ", "␣").replace(chr(10), "↵") or "∅"}</span>'
    for i, (piece, token_id) in enumerate(zip(pieces, ids)))
st.markdown(
    "<style>.tok{display:inline-block;margin:2px;padding:1px 5px;border-radius:4px;font-family:monospace;"
    "font-size:0.95em;white-space:pre;color:#111}.tok0{background:#fde2c8}.tok1{background:#d4e6f7}</style>"
    f'<div class="tokens">{chips}</div>', unsafe_allow_html=True)
per_token = len(line) / max(1, len(ids))
st.markdown(f"**{len(line)} characters → {len(ids)} tokens** ({per_token:.2f} characters per token) · "
            f"vocabulary size **{tokenizer.vocab_size:,}**")
for note in tokenizer.notes:
    st.caption(f"Note: {note}")
if len(corpus.text) > PREVIEW_CHARS:
    st.caption(f"This preview fitted the tokenizer on the first {PREVIEW_CHARS:,} characters; "
               "training fits it on the whole text.")
val_chars = int(len(corpus.text) * val_fraction)
st.caption(f"Training on the first {len(corpus.text) - val_chars:,} characters, "
           f"validating on the last {val_chars:,}.")
st.page_link("app_pages/train.py", label="Next: train a model on this text", icon=":material/arrow_forward:")
