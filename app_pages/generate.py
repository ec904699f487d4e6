"""Generate: pick a model, set prompt and sampling options, watch the text stream in, download it."""
import streamlit as st

from textgen_core import SamplingOptions, TextgenError
from textgen_core.sampling import MAX_PROMPT_CHARS
from ui import state
from ui.checks import field_problems, show_problems
from ui.models import available_models, hub_load_form, model_summary
from ui.sampling import generation_title, saved_results, show_text, stream_into
from ui.text import escape_markdown

ss = state.init()
TEMPERATURES = [0.2, 0.5, 0.8, 1.0, 1.2, 1.5]
EARLIER = 5   # earlier generations of the workspace shown under the current one


def keep_generation(record: dict, stopped: bool = False) -> None:
    """Make ``record`` the session's last generation and save it in the workspace."""
    results = [(temperature, list(texts)) for temperature, texts in record["results"] if texts]
    if results:
        ss.generated = {"model": record["model"], "results": results, "stopped": stopped}
        ss.generated["file"] = state.workspace().save_generation({**record, "results": results,
                                                                  "stopped": stopped}).name


interrupted = ss.pop("gen_running", None)
if interrupted is not None:   # the last run ended inside a generation (Stop, or another widget)
    keep_generation(interrupted, stopped=True)

st.title("Generate")
models = available_models()
running = state.active_jobs()
if running:
    names = ", ".join(escape_markdown(job.name) for job in running)
    st.caption(f"Training {names}: its model is listed here when it ends "
               "(stop it on its page to use the best weights so far).")
if not models:
    st.info("No model yet. Train one on the **Train** page (a minute on the tiny preset is enough to see "
            "something), or load a pretrained or Hub model on the **Models** page.", icon=":material/info:")
    c1, c2, _ = st.columns([1, 1, 3])
    c1.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:",
                 query_params=state.address())
    c2.page_link("app_pages/models.py", label="Load a model", icon=":material/inventory_2:",
                 query_params=state.address())
    st.markdown("Or load one from the Hugging Face Hub:")
    hub_load_form("gen_hub", select_key="gen_model")
    st.stop()

if ss.get("gen_model") not in models:   # the remembered choice went away (deleted, renamed): the newest
    ss.pop("gen_model", None)
label = st.selectbox("Model", list(models), key="gen_model", persist_state="session",
                     help="A run of this workspace, a pretrained model or one loaded from the Hub.")
state.remember(gen_model=label)
with st.expander("Load another model from the Hugging Face Hub"):
    hub_load_form("gen_hub", select_key="gen_model")
try:
    bundle = models[label].load()
except TextgenError as exc:
    st.error(escape_markdown(exc))
    st.stop()
st.caption(model_summary(bundle))

c = st.columns(4)
length = c[0].slider("Length (tokens)", 10, 2000, 300, 10, key="gen_length", persist_state="session",
                     help="New tokens per sample.")
several = c[1].toggle("Several temperatures", key="gen_several", persist_state="session",
                      help="Sample at up to four temperatures side by side.")
if several:
    temperatures = c[1].multiselect("Temperatures", TEMPERATURES, [0.5, 0.8, 1.2], key="gen_temperatures",
                                    persist_state="session", max_selections=4,
                                    help="0 always picks the most likely token; higher is wilder.")
else:
    temperatures = [c[1].slider("Temperature", 0.0, 2.0, 0.8, 0.05, key="gen_temperature", persist_state="session",
                                help="0 always picks the most likely token; higher is wilder.")]
# number fields have no widget bounds: the engine's SamplingOptions checks them and names a bad one
top_k = c[2].number_input("Top-k (0: off)", value=0, key="gen_top_k", persist_state="session",
                          help="Sample only from the k most likely tokens.")
top_p = c[2].slider("Top-p (1: off)", 0.05, 1.0, 1.0, 0.05, key="gen_top_p", persist_state="session",
                    help="Sample only from the most likely tokens that together reach this probability.")
samples = c[3].number_input("Samples", value=1, key="gen_samples", persist_state="session",
                            help="Texts drawn together, one batch.")
seed = c[3].number_input("Seed", value=1, key="gen_seed", persist_state="session",
                         help="The same seed gives the same text.")
problems = field_problems(lambda **value: SamplingOptions(**value).validated(), {
    "length": ("Length (tokens)", int(length)), "top_k": ("Top-k (0: off)", int(top_k) or None),
    "num_samples": ("Samples", int(samples)), "seed": ("Seed", int(seed))})
show_problems(problems, "generate")

with st.form("gen_form", border=False):   # Ctrl+Enter in the prompt generates
    prompt = st.text_area("Prompt", "", height=80, max_chars=MAX_PROMPT_CHARS, key="gen_prompt",
                          persist_state="session", placeholder="Leave empty to start from a new line",
                          help="The text the model continues; Ctrl+Enter (⌘+Enter) generates.")
    clicked = st.form_submit_button("Generate", type="primary", icon=":material/auto_awesome:",
                                    disabled=not temperatures or bool(problems),
                                    help="Sample new text; it is kept in this workspace and shown again on the "
                                         "next visit.")
if not temperatures:
    st.caption("Choose at least one temperature.")


def slots(count: int) -> list:
    return list(st.columns(count)) if count > 1 else [st.container()]


if clicked and temperatures and not problems:
    stop = st.empty()   # any click reruns the page, which ends this run inside a redraw
    stop.button("Stop", icon=":material/stop_circle:", key="gen_stop",
                help="End the generation here; the text so far is kept.")
    record = {"model": label, "results": [], "prompt": prompt, "length": int(length), "top_k": int(top_k) or None,
              "top_p": float(top_p), "seed": int(seed)}
    ss.gen_running = record   # filled as the text comes: a rerun that cuts the run short finds it here
    try:
        for column, temperature in zip(slots(len(temperatures)), temperatures):
            column.markdown(f"**temperature {temperature:g}**")
            options = SamplingOptions(length=int(length), temperature=float(temperature), top_k=int(top_k) or None,
                                      top_p=float(top_p) if top_p < 1 else None, num_samples=int(samples),
                                      seed=int(seed)).validated()
            so_far: list[str] = []
            record["results"].append((temperature, so_far))
            stream_into([column.empty() for _ in range(options.num_samples)], bundle, prompt, options, so_far)
        keep_generation(ss.pop("gen_running"))
    except TextgenError as exc:
        ss.pop("gen_running", None)
        st.error(escape_markdown(exc))
    stop.empty()
elif ss.generated and ss.generated["model"] == label:
    shown = ss.generated["results"]
    for column, (temperature, texts) in zip(slots(len(shown)), shown):
        column.markdown(f"**temperature {temperature:g}**")
        for text in texts:
            show_text(column.empty(), text)
    if ss.generated.get("stopped"):
        st.caption("Stopped before the end: this is the text made until then.")

if ss.generated and ss.generated["model"] == label:
    parts = [f"# temperature {t:g}, sample {i + 1}\n{text}\n" for t, texts in ss.generated["results"]
             for i, text in enumerate(texts)]
    st.download_button("Download the text", "\n".join(parts), "generated.txt", mime="text/plain",
                       icon=":material/download:", on_click="ignore")

shown_file = ss.generated.get("file") if ss.generated and ss.generated["model"] == label else None
earlier = [g for g in state.workspace().generations(limit=EARLIER + 1) if g["file"] != shown_file][:EARLIER]
if earlier:
    with st.expander(f"Earlier generations in this workspace ({len(earlier)})", icon=":material/history:"):
        for record in earlier:
            st.markdown(generation_title(record))
            for temperature, texts in saved_results(record):
                for text in texts:
                    st.caption(f"temperature {temperature:g}")
                    show_text(st.empty(), text)
