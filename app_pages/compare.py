"""Compare: 2-4 configurations on the same corpus and budget, trained one after another; overlaid
validation curves, a results table, and samples side by side with the same prompt and seed."""
from typing import Optional

import streamlit as st

from textgen_core import (
    ARCHITECTURES,
    PRESETS,
    TOKENIZER_KINDS,
    RunSettings,
    SamplingOptions,
    TextgenError,
    TrainConfig,
)
from textgen_core.jobs import new_job
from textgen_core.memory import check_memory
from textgen_core.models import ModelConfig
from textgen_core.registry import get_registry
from textgen_core.sampling import MAX_PROMPT_CHARS
from ui import compare, runs, state
from ui import proposal as proposals
from ui.charts import compare_figure, mean_tokens_per_s
from ui.checks import field_problems, refusal, show_problems
from ui.explain import HELP, preset_label
from ui.live import live
from ui.progress import progress_text
from ui.sampling import show_text, stream_into, tokens_for_chars
from ui.text import MISSING, escape_markdown

ss = state.init()
ARCH_NAMES = {"gru": "GRU", "lstm": "LSTM", "cnn": "CNN", "attention": "attention"}
REASONS = {"max_steps": "step budget", "epochs": "epoch budget", "time": "time budget",
           "early_stopping": "early stopping", "stopped": "stopped", "diverged": "diverged"}

st.title("Compare")
corpus = state.corpus()
kind, vocab, val_fraction = state.tokenizer_settings()
device = state.device_options()[0]
# Starting values proposed for this corpus (as on the Train page); a budget of 600 steps with an
# evaluation every 50 gives every curve 12 points. Values the user changed stay (ui/proposal.py).
proposal = proposals.propose(corpus, device)
rate = proposals.steps_per_s(proposal, corpus.stats.chars if corpus is not None else 0)
values = proposal.settings
proposals.follow("_cmp_proposal", proposals.key_of(corpus, device), {
    "cmp_steps": compare.DEFAULT_STEPS, "cmp_minutes": 1.0,
    "cmp_eval_every": compare.eval_every_for(compare.DEFAULT_STEPS),
    "cmp_batch": int(values["batch_size"]), "cmp_seq_len": int(values["seq_len"]),
    "cmp_carry_state": bool(values.get("carry_state", TrainConfig.carry_state)),
    **{f"cmp_preset_{i}": values["preset"] for i in range(4)}, **{f"cmp_lr_{i}": float(values["lr"]) for i in range(4)},
    **{f"cmp_dropout_{i}": float(values.get("dropout", 0.1)) for i in range(4)}})
if corpus is None:
    st.info("No corpus yet: upload a text on the Corpus page, then compare architectures on it.",
            icon=":material/upload_file:")
    st.page_link("app_pages/corpus.py", label="Go to Corpus", icon=":material/description:",
                 query_params=state.address())
else:
    st.caption(f"Same corpus (**{escape_markdown(corpus.name)}**), budget, seed and validation text for every "
               "configuration. They train one after another; the results say whether other trainings of this "
               "server ran at the same time (then the timings do not compare).")



def vocab_of(tokenizer: str) -> tuple[Optional[int], int]:
    """A tokenizer's vocabulary setting (as on the Corpus page) and the size it will have on this corpus."""
    tok_vocab = ss.get(*state.VOCAB_KEYS[tokenizer]) if tokenizer in state.VOCAB_KEYS else None
    return tok_vocab, state.vocab_estimate(corpus, tok_vocab)


count = st.radio("Configurations", (2, 3, 4), horizontal=True, key="cmp_count", persist_state="session",
                 help="How many models to train and compare.")
columns = []
for i, column in enumerate(st.columns(count)):
    with column.container(border=True):
        st.markdown(f"**Configuration {i + 1}**")
        arch = st.selectbox("Architecture", ARCHITECTURES, index=i % len(ARCHITECTURES), key=f"cmp_arch_{i}",
                            persist_state="session", format_func=ARCH_NAMES.get, help=HELP["arch"])
        tok = st.selectbox("Tokenizer", TOKENIZER_KINDS, index=TOKENIZER_KINDS.index(kind), key=f"cmp_tok_{i}",
                           persist_state="session", help=HELP["tokenizer"])
        preset = st.selectbox("Size", PRESETS, key=f"cmp_preset_{i}", persist_state="session", help=HELP["preset"],
                              format_func=lambda name, a=arch, v=vocab_of(tok)[1]: preset_label(a, name, v))
        if ss.get(f"_cmp_sizes_{i}") != (arch, preset):   # a new architecture or size: its preset's hidden
            ss[f"cmp_hidden_{i}"] = ModelConfig.from_preset(arch, preset, 2).hidden
            ss[f"_cmp_sizes_{i}"] = (arch, preset)
        c1, c2, c3 = st.columns(3)
        hidden = c1.number_input("Hidden", step=32, key=f"cmp_hidden_{i}", persist_state="session",
                                 help=HELP["hidden"])
        lr = c2.number_input("Learning rate", format="%.4f", step=5e-4, key=f"cmp_lr_{i}", persist_state="session",
                             help=HELP["lr"])
        dropout = c3.number_input("Dropout", format="%.2f", step=0.05, key=f"cmp_dropout_{i}",
                                  persist_state="session", help=HELP["dropout"])
        columns.append(compare.Column(arch, tok, preset, int(hidden), float(lr), float(dropout)))

# Number fields have no widget bounds: the engine's validators check them below and name a bad one.
c = st.columns(5)
budget_kind = c[0].radio("Budget in", ("steps", "minutes"), key="cmp_budget_kind", persist_state="session",
                         help=HELP["compare_budget"], on_change=compare.follow_budget, args=(rate,))
if budget_kind == "steps":
    budget = c[1].number_input("Steps each", step=50, key="cmp_steps", persist_state="session",
                               on_change=compare.follow_budget, args=(rate,),
                               help="Updates per configuration; evaluate-every follows it (a twelfth).")
else:
    budget = c[1].number_input("Minutes each", step=0.5, key="cmp_minutes", persist_state="session",
                               on_change=compare.follow_budget, args=(rate,),
                               help="Training minutes per configuration; evaluate-every follows it.")
batch = c[2].number_input("Batch size", step=8, key="cmp_batch", persist_state="session", help=HELP["batch"])
seq_len = c[3].number_input("Sequence length", step=16, key="cmp_seq_len", persist_state="session",
                            help=HELP["seq_len"])
eval_every = c[4].number_input("Evaluate every", step=10, key="cmp_eval_every", persist_state="session",
                               help=HELP["eval_every"])
carry_state = st.toggle("Carry state between steps", key="cmp_carry_state", persist_state="session",
                        help=HELP["carry_state"])
st.caption(compare.points_text(budget_kind, float(budget), int(eval_every), rate))
budget_field = "max_steps" if budget_kind == "steps" else "max_minutes"
train_fields = {budget_field: (f"{budget_kind.capitalize()} each", int(budget) if budget_kind == "steps" else
                               float(budget)),
                "batch_size": ("Batch size", int(batch)), "seq_len": ("Sequence length", int(seq_len)),
                "carry_state": ("Carry state between steps", bool(carry_state)),
                "eval_every": ("Evaluate every", int(eval_every))}


def run_settings() -> list[tuple[str, RunSettings]]:
    """Each configuration's name and settings, checked (sizes, memory) before any job exists."""
    runs = []
    values = {setting: value for setting, (_, value) in train_fields.items()}
    for name, column in zip(compare.names(columns), columns):
        tok_vocab, vocab_size = vocab_of(column.tokenizer)
        train = TrainConfig(**values, lr=column.lr, log_every=max(1, min(10, values["eval_every"])),
                            device=device).validated()
        settings = RunSettings(tokenizer=column.tokenizer, vocab_size=tok_vocab, arch=column.arch,
                               preset=column.preset, hidden=column.hidden, dropout=column.dropout,
                               val_fraction=val_fraction, train=train)
        # refused here, before any job starts, rather than as one failed column
        check_memory(settings.model_config(vocab_size), train.batch_size, train.seq_len, train.device)
        runs.append((name, settings))
    return runs


# every bad field named with the engine's message; then each configuration's size and memory
problems = (field_problems(lambda **value: TrainConfig(**value).validated(), train_fields)
            + compare.column_problems(columns, [vocab_of(c.tokenizer)[1] for c in columns])) or refusal(run_settings)
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
    # the registry counts, for each run, the most other trainings of this server at the same time
    others = [getattr(job, "most_others_running", None) for job in jobs]
    for s, other in zip(snaps, others):
        speed = mean_tokens_per_s(s)
        rows.append({
            "configuration": s.name, "status": s.status,
            "parameters": s.parameters, "training time (s)": round(s.elapsed, 1) if s.step else None,
            "tokens/s": round(speed) if speed else None,
            "best val loss (nats/token)": round(s.best["val_loss"], 4) if s.best else None,
            "best val bits/char": round(s.best["val_bpc"], 4) if s.best else None,
            "evaluations": len(s.evals), "other trainings at once": other,
            "stopped at": f"step {s.step:,}: {REASONS.get(s.end.reason, s.end.reason)}" if s.end else s.message,
        })
    number = st.column_config.NumberColumn
    st.dataframe(rows, hide_index=True, placeholder=MISSING,  # a value a run does not have: a dash
                 column_config={"parameters": number(format="localized"), "tokens/s": number(format="localized")})
    started = [other for s, other in zip(snaps, others) if s.status != "queued"]
    if started:
        st.caption(compare.timing_caption(started, finished=not any(s.active for s in snaps)))


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
