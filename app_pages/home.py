"""Home: what the playground does, a one-click try of a pretrained model, the three steps, what runs."""
import streamlit as st

from textgen_core import SamplingOptions, TextgenError
from textgen_core.sampling import MAX_PROMPT_CHARS
from ui import state
from ui.live import live
from ui.models import bundled_models, load_pretrained
from ui.progress import progress_text
from ui.sampling import show_text, stream_into, tokens_for_chars
from ui.text import escape_markdown

ss = state.init()
TRY_CHARS, TRY_TEMPERATURE = 400, 0.8   # about 400 characters: well under a second on a CPU

st.title("Welcome")
st.markdown("Train a small language model on your own text: lyrics, poems, a book.  \n"
            "Watch it learn live, and compare GRU, LSTM, CNN and attention models on the same text.  \n"
            "Generate new text from a prompt, and look inside a model at what it expects next.")

st.subheader("Try a pretrained model")
entries = {entry.name: entry for entry in bundled_models()}
if not entries:
    st.info("No pretrained model comes with this installation: make your own in the three steps below, "
            "or load one from the Hugging Face Hub on **Models**.", icon=":material/info:")
else:
    name = st.selectbox("Pretrained model", list(entries), key="home_model",
                        help="Small models trained by this project, bundled with it.")
    if entries[name].description:
        st.caption(escape_markdown(entries[name].description))
    with st.form("home_form", border=False):
        prompt = st.text_area("Prompt", "", height=80, max_chars=MAX_PROMPT_CHARS, key="home_prompt",
                              placeholder="Leave empty to start from a new line (Ctrl+Enter generates)",
                              help="The text the model continues.")
        clicked = st.form_submit_button("Generate", type="primary", icon=":material/auto_awesome:")
    shown = st.empty()
    if clicked:
        ss.home_tries = ss.get("home_tries", 0) + 1   # a new text on every click, the same in every session
        try:
            bundle = load_pretrained(entries[name].folder)   # loaded on the first click, then shared
            options = SamplingOptions(length=tokens_for_chars(bundle, TRY_CHARS), temperature=TRY_TEMPERATURE,
                                      seed=ss.home_tries).validated()
            ss.home_try = {"model": name, "text": stream_into([shown], bundle, prompt, options)[0]}
        except TextgenError as exc:
            st.error(escape_markdown(exc))
    elif ss.get("home_try") and ss.home_try["model"] == name:
        show_text(shown, ss.home_try["text"])
    st.page_link("app_pages/generate.py", label="More options (temperatures, top-k, seed) on Generate",
                 icon=":material/tune:", query_params=state.address())

st.subheader("Your own model in three steps")
corpus = state.corpus()
steps = [("app_pages/corpus.py", "1. Upload a corpus", ":material/upload_file:",
          f"In use: **{escape_markdown(corpus.name)}**." if corpus else "Any plain text, any common encoding."),
         ("app_pages/train.py", "2. Train", ":material/model_training:",
          "Watch train and validation loss fall; stop when validation turns up."),
         ("app_pages/generate.py", "3. Generate", ":material/auto_awesome:",
          "Sample from your model with a prompt and a temperature.")]
for column, (path, label, icon, note) in zip(st.columns(3), steps):
    column.page_link(path, label=label, icon=icon, query_params=state.address())
    column.caption(note)

st.subheader("Running now")


def show_running(snaps) -> None:
    running = [snap for snap in snaps if snap.active]
    if not running:
        st.caption("Nothing is training in this workspace.")
    for snap in running:
        st.progress(min(1.0, max(0.0, snap.progress)),
                    text=f"**{escape_markdown(snap.name)}** · {snap.status} · {progress_text(snap)}")


live(state.active_jobs(), show_running)
st.page_link("app_pages/runs.py", label="Every run of this workspace", icon=":material/history:",
             query_params=state.address())
