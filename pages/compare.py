"""Compare: 2-4 configurations on the same corpus and budget, trained one after another; overlaid
validation curves, a results table, and samples side by side with the same prompt and seed."""
import streamlit as st

from textgen_core import (ARCHITECTURES, PRESETS, TOKENIZER_KINDS, RunSettings, SamplingOptions, TextgenError,
                          TrainConfig)
from textgen_core.jobs import new_job
from textgen_core.memory import check_memory
from textgen_core.registry import get_registry
from textgen_core.sampling import MAX_PROMPT_CHARS
from ui import runs, state
from ui.charts import compare_figure, mean_tokens_per_s
from ui.checks import field_problems, refusal, show_problems
from ui.live import live, progress_text
from ui.sampling import show_text, stream_into, tokens_for_chars
from ui.text import MISSING, escape_markdown

ss = state.init()
ARCH_NAMES = {"gru": "GRU", "lstm": "LSTM", "cnn": "CNN", "attention": "attention"}
REASONS = {"max_steps": "step budget", "epochs": "epoch budget", "time": "time budget",
           "early_stopping": "early stopping", "stopped": "stopped", "diverged": "diverged"}

st.title("Compare")
corpus = state.corpus()
kind, vocab, val_fraction = state.tokenizer_settings()
if corpus is None:
    st.info("No corpus yet: upload a text on the Corpus page, then compare architectures on it.",
            icon=":material/upload_file:")
    st.page_link("pages/corpus.py", label="Go to Corpus", icon=":material/description:", query_params=state.address())
else:
    st.caption(f"Same corpus (**{escape_markdown(corpus.name)}**), budget, seed and validation text for every "
               "configuration. They train one after another, so each gets the whole machine and the timings "
               "compare.")

count = st.radio("Configurations", (2, 3, 4), horizontal=True, key="cmp_count", persist_state="session",
                 help="How many models to train and compare.")
configs = []
for i, column in enumerate(st.columns(count)):
    with column.container(border=True):
        st.markdown(f"**Configuration {i + 1}**")
        arch = st.selectbox("Architecture", ARCHITECTURES, index=i % len(ARCHITECTURES), key=f"cmp_arch_{i}",
                            persist_state="session", format_func=ARCH_NAMES.get,
                            help="The kind of network that learns the text.")
        tok = st.selectbox("Tokenizer", TOKENIZER_KINDS, index=TOKENIZER_KINDS.index(kind), key=f"cmp_tok_{i}",
                           persist_state="session", help="How the text is split into tokens (vocabulary sizes "
                                                         "as on the Corpus page).")
        preset = st.selectbox("Size", PRESETS, index=1, key=f"cmp_preset_{i}", persist_state="session",
                              help="The size preset: embedding, hidden and layers together.")
        configs.append((arch, tok, preset))

# Number fields have no widget bounds: the engine's validators check them below and name a bad one.
c = st.columns(6)
budget_kind = c[0].radio("Budget in", ("steps", "minutes"), key="cmp_budget_kind", persist_state="session",
                         help="Give every configuration the same steps, or the same minutes.")
if budget_kind == "steps":
    budget = c[1].number_input("Steps each", value=300, step=50, key="cmp_steps", persist_state="session",
                               help="Optimizer steps per configuration.")
else:
    budget = c[1].number_input("Minutes each", value=1.0, step=0.5, key="cmp_minutes", persist_state="session",
                               help="Training minutes per configuration.")
batch = c[2].number_input("Batch size", value=32, key="cmp_batch", persist_state="session",
                          help="Windows of text per optimizer step.")
seq_len = c[3].number_input("Sequence length", value=128, key="cmp_seq_len", persist_state="session",
                            help="Tokens per window: how far back the gradient reaches.")
lr = c[4].number_input("Learning rate", value=3e-3, format="%.4f", step=5e-4, key="cmp_lr",
                       persist_state="session", help="AdamW's peak learning rate (warm-up, then cosine decay).")
eval_every = c[5].number_input("Evaluate every", value=50, key="cmp_eval_every", persist_state="session",
                               help="Steps between validation passes.")
budget_field = "max_steps" if budget_kind == "steps" else "max_minutes"
train_fields = {budget_field: (f"{budget_kind.capitalize()} each", int(budget) if budget_kind == "steps" else
                               float(budget)),
                "batch_size": ("Batch size", int(batch)), "seq_len": ("Sequence length", int(seq_len)),
                "lr": ("Learning rate", float(lr)), "eval_every": ("Evaluate every", int(eval_every))}


def run_settings() -> list[tuple[str, RunSettings]]:
    """Each configuration's name and settings, checked (sizes, memory) before any job exists."""
    runs, names = [], set()
    values = {setting: value for setting, (_, value) in train_fields.items()}
    for arch, tok, preset in configs:
        name = f"{arch}-{preset}-{tok}"
        name = name if name not in names else f"{name}-{len(names) + 1}"
        names.add(name)
        tok_vocab = ss.get(state.VOCAB_KEYS[tok][0], state.VOCAB_KEYS[tok][1]) if tok in state.VOCAB_KEYS else None
        train = TrainConfig(**values, log_every=max(1, min(10, values["eval_every"])),
                            device=state.device_options()[0]).validated()
        settings = RunSettings(tokenizer=tok, vocab_size=tok_vocab, arch=arch, preset=preset,
                               val_fraction=val_fraction, train=train)
        # refused here, before any job starts, rather than as one failed column
        check_memory(settings.model_config(state.vocab_estimate(corpus, tok_vocab)), train.batch_size,
                     train.seq_len, train.device)
        runs.append((name, settings))
    return runs


# every bad field named with the engine's message; then each configuration's size and memory
problems = field_problems(lambda **value: TrainConfig(**value).validated(), train_fields) or refusal(run_settings)
show_problems(problems, "start")
jobs = ss.compare_jobs
running = any(job.active for job in jobs)
buttons = st.container(horizontal=True)
if buttons.button("Start comparison", type="primary", icon=":material/play_arrow:",
                  disabled=running or corpus is None or bool(problems),
                  help="Train every configuration, one after another, with the budget below.") and not problems:
    try:
        runs.check_quota()   # past the quota: the engine names the runs to delete
        new_jobs = [new_job(corpus, settings, owner=ss.owner, name=name) for name, settings in run_settings()]
        get_registry().submit(*new_jobs)
        ss.compare_jobs, ss.compare_samples = new_jobs, None
        state.remember(compare_runs=[job.out_dir.name for job in new_jobs])   # a reload finds them again
        st.rerun()
    except TextgenError as exc:
        st.error(escape_markdown(exc), icon=":material/block:")
if buttons.button("Stop all", icon=":material/stop:", disabled=not running,
                  help="Stop the running configuration and cancel those still waiting."):
    for job in jobs:
        job.stop()
    st.rerun()

if not jobs:
    st.info("Choose the configurations and the budget, then press **Start comparison**: overlaid "
            "validation curves and a results table appear here.", icon=":material/compare_arrows:")
    st.stop()


def draw(snaps) -> None:
    for snap in snaps:
        if snap.active:
            st.progress(min(1.0, snap.progress), text=f"**{escape_markdown(snap.name)}** ({snap.status}): "
                        + (progress_text(snap) if snap.status == "running" else escape_markdown(snap.message)))
        elif snap.status == "failed":
            st.error(f"**{escape_markdown(snap.name)}** failed: {escape_markdown(snap.message)}")
    by_step, by_time = st.columns(2)
    by_step.plotly_chart(compare_figure(snaps, "step"), key="cmp-steps", config={"displaylogo": False})
    by_time.plotly_chart(compare_figure(snaps, "elapsed"), key="cmp-time", config={"displaylogo": False})
    rows = []
    for s in snaps:
        rate = mean_tokens_per_s(s)
        rows.append({
            "configuration": s.name, "status": s.status,
            "parameters": s.parameters, "training time (s)": round(s.elapsed, 1) if s.step else None,
            "tokens/s": round(rate) if rate else None,
            "best val loss (nats/token)": round(s.best["val_loss"], 4) if s.best else None,
            "best val bits/char": round(s.best["val_bpc"], 4) if s.best else None,
            "stopped at": f"step {s.step:,}: {REASONS.get(s.end.reason, s.end.reason)}" if s.end else s.message,
        })
    number = st.column_config.NumberColumn
    st.dataframe(rows, hide_index=True, placeholder=MISSING,  # a value a run does not have: a dash
                 column_config={"parameters": number(format="localized"), "tokens/s": number(format="localized")})


live(jobs, draw)

done = [job for job in jobs if runs.has_model(job) and not job.active]
if running or not done:
    st.stop()
st.subheader("Samples side by side")
c = st.columns(4)
prompt = c[0].text_input("Prompt", "", max_chars=MAX_PROMPT_CHARS, key="cmp_prompt", persist_state="session",
                         help="Every model continues this text; empty: from a new line.")
temperature = c[1].slider("Temperature", 0.0, 2.0, 0.8, 0.05, key="cmp_temperature", persist_state="session",
                          help="0 always picks the most likely token; higher is wilder.")
seed = c[2].number_input("Seed", value=1, key="cmp_seed", persist_state="session",
                         help="The same seed gives the same text.")
chars = c[3].number_input("Length (characters, about)", value=300, step=50, key="cmp_chars",
                          persist_state="session", help="Each sample's length, converted to each model's tokens.")
sample_problems = field_problems(lambda **value: SamplingOptions(**value).validated(),
                                 {"seed": ("Seed", int(seed)), "length": ("Length (characters, about)", int(chars))})
show_problems(sample_problems, "sample")
clicked = st.button("Sample from each", icon=":material/auto_awesome:", disabled=bool(sample_problems),
                    help="Every trained configuration continues the prompt with the same settings.")
columns = st.columns(len(done))
if clicked and not sample_problems:
    texts = {}
    try:
        for column, job in zip(columns, done):
            column.markdown(f"**{escape_markdown(job.name)}**")
            options = SamplingOptions(length=tokens_for_chars(job.bundle, int(chars)), temperature=float(temperature),
                                      seed=int(seed)).validated()
            texts[job.name] = stream_into([column.empty()], job.bundle, prompt, options)[0]
        ss.compare_samples = {"ids": [j.id for j in done], "texts": texts}
    except TextgenError as exc:
        st.error(escape_markdown(exc))
elif ss.compare_samples and ss.compare_samples["ids"] == [j.id for j in done]:
    for column, job in zip(columns, done):
        column.markdown(f"**{escape_markdown(job.name)}**")
        show_text(column.empty(), ss.compare_samples["texts"].get(job.name, ""))
