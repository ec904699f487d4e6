"""Train: choose a model and a budget, start, watch the loss fall live, stop, resume, download."""
import streamlit as st

from textgen_core import ARCHITECTURES, PRESETS, RunSettings, TextgenError, TrainConfig
from textgen_core.defaults import recommended_settings
from textgen_core.devices import precision_options
from textgen_core.jobs import new_job
from textgen_core.memory import check_memory
from textgen_core.models import ModelConfig
from textgen_core.registry import get_registry
from ui import runs, state
from ui.checks import field_problems, refusal, show_problems
from ui.live import live, show_job
from ui.models import zip_model_folder
from ui.text import escape_markdown

ss = state.init()
ARCH_HELP = {"gru": "GRU (gated recurrent unit)", "lstm": "LSTM (long short-term memory)",
             "cnn": "CNN (causal dilated convolutions)", "attention": "attention (small transformer)"}
BUDGETS = ("steps", "epochs", "minutes")
PRECISIONS = {"auto": "auto (bf16 on a GPU, fp32 on the CPU)", "fp32": "fp32", "bf16": "bf16 autocast"}
# Number fields have no widget bounds: the engine's validators check them below and name a bad one.
# Starting values measured as the best at equal training time on this kind of device (BENCHMARKS.md).
best = recommended_settings(state.device_options()[0])

st.title("Train")
corpus = state.corpus()
kind, vocab, val_fraction = state.tokenizer_settings()
if corpus is None:
    st.info("No corpus yet: upload a text on the Corpus page first, then come back to train on it.",
            icon=":material/upload_file:")
    st.page_link("pages/corpus.py", label="Go to Corpus", icon=":material/description:", query_params=state.address())
else:
    st.caption(f"Corpus **{escape_markdown(corpus.name)}** ({corpus.stats.chars:,} characters) · {kind} tokenizer"
               f"{f' ({vocab:,} tokens)' if vocab else ''} · {val_fraction:.0%} held out for validation "
               "(change them on the Corpus page)")

left, middle, right = st.columns(3)
with left:
    st.markdown("**Model**")
    arch = st.selectbox("Architecture", ARCHITECTURES, ARCHITECTURES.index(best["arch"]), format_func=ARCH_HELP.get,
                        key="arch", persist_state="session", help="The kind of network that learns the text.")
    # the GPU's recommended model is not a preset (768x3): it starts with explicit sizes on
    sized = ModelConfig.from_preset(best["arch"], best["preset"], 2, hidden=best.get("hidden"), layers=best.get("layers"))
    explicit = st.toggle("Explicit sizes", "hidden" in best, key="explicit_sizes", persist_state="session",
                         help="Off: a size preset. On: embedding, hidden and layers yourself.")
    if explicit:
        c1, c2, c3 = st.columns(3)
        embedding = c1.number_input("Embedding", value=sized.embedding, key="embedding", persist_state="session",
                                    help="Width of each token's vector.")
        hidden = c2.number_input("Hidden", value=sized.hidden, key="hidden", persist_state="session",
                                 help="Width of the model's state: RNN units, CNN channels or attention width.")
        layers = c3.number_input("Layers", value=sized.layers, key="layers", persist_state="session",
                                 help="Stacked RNN layers, convolution layers or transformer blocks.")
        preset = "small"
    else:
        preset = st.selectbox("Size preset", PRESETS, index=PRESETS.index(best["preset"]), key="preset",
                              persist_state="session", help="Embedding, hidden and layers chosen together.")
        embedding = hidden = layers = None
    dropout = st.slider("Dropout", 0.0, 0.7, best["dropout"], 0.05, key="dropout", persist_state="session",
                        help="Share of activations dropped while training, against overfitting.")
with middle:
    st.markdown("**Optimization**")
    c1, c2 = st.columns(2)
    lr = c1.number_input("Learning rate", value=float(best["lr"]), format="%.4f", step=5e-4, key="lr",
                         persist_state="session", help="AdamW's peak learning rate (warm-up, then cosine decay).")
    weight_decay = c2.number_input("Weight decay", value=float(best.get("weight_decay", TrainConfig.weight_decay)),
                                   format="%.3f", step=0.01, key="weight_decay", persist_state="session",
                                   help="AdamW's decoupled weight decay on matrices and embeddings.")
    c1, c2 = st.columns(2)
    batch = c1.number_input("Batch size", value=best["batch_size"], key="batch", persist_state="session",
                            help="Windows of text per optimizer step.")
    seq_len = c2.number_input("Sequence length", value=best["seq_len"], key="seq_len", persist_state="session",
                              help="Tokens per window: how far back the gradient reaches.")
    c1, c2 = st.columns(2)
    eval_every = c1.number_input("Evaluate every (steps)", value=best["eval_every"], key="eval_every",
                                 persist_state="session", help="Steps between validation passes and samples.")
    patience = c2.number_input("Patience (evaluations)", value=0, key="patience", persist_state="session",
                               help="Stop after this many evaluations without a better validation loss; 0: off.")
with right:
    st.markdown("**Budget and device**")
    budget_kind = st.radio("Budget in", BUDGETS, horizontal=True, key="budget_kind",
                           persist_state="session", help="Count the training budget in steps, epochs or minutes.")
    default, step = {"steps": (1000, 100), "epochs": (1.0, 0.5), "minutes": (5.0, 1.0)}[budget_kind]
    budget = st.number_input(f"Budget ({budget_kind})", value=default, step=step, key=f"budget_{budget_kind}",
                             persist_state="session", help="Training stops when it is spent (or stopped early).")
    devices = state.device_options()
    device = st.selectbox("Device", devices, format_func=state.device_label, key="device", persist_state="session",
                          help="Where the model trains.")
    precisions = list(precision_options(device))  # bf16 only where the device has bf16 units
    precision = st.selectbox("Precision", precisions, precisions.index(best["precision"]) if best["precision"]
                             in precisions else 0, format_func=PRECISIONS.get, key="precision",
                             persist_state="session",
                             help="bf16 autocast is faster on GPUs and on CPUs with bf16 units (offered only "
                                  "there); weights and optimizer stay fp32.")
    seed = st.number_input("Seed", value=0, key="seed", persist_state="session",
                           help="The same seed gives the same batches and dropout.")
budget_field = {"steps": "max_steps", "epochs": "epochs", "minutes": "max_minutes"}[budget_kind]
train_fields = {"lr": ("Learning rate", float(lr)), "weight_decay": ("Weight decay", float(weight_decay)),
                "batch_size": ("Batch size", int(batch)), "seq_len": ("Sequence length", int(seq_len)),
                "eval_every": ("Evaluate every (steps)", int(eval_every)),
                "patience": ("Patience (evaluations)", int(patience) or None), "seed": ("Seed", int(seed)),
                budget_field: (f"Budget ({budget_kind})", int(budget) if budget_kind == "steps" else float(budget))}
model_fields = {"embedding": ("Embedding", embedding), "hidden": ("Hidden", hidden), "layers": ("Layers", layers)}


def settings(check_memory_for_new_model: bool = True) -> RunSettings:
    values = {name: value for name, (_, value) in train_fields.items()}
    train = TrainConfig(**values, log_every=max(1, min(10, values["eval_every"])), device=device, precision=precision,
                        cpu_threads=best.get("cpu_threads") if device == "cpu" else None)
    run = RunSettings(tokenizer=kind, vocab_size=vocab, arch=arch, preset=preset, embedding=embedding,
                      hidden=hidden, layers=layers, dropout=float(dropout), val_fraction=val_fraction, train=train)
    config = ModelConfig.from_preset(arch, preset, state.vocab_estimate(corpus, vocab), embedding=embedding, hidden=hidden,
                                     layers=layers, dropout=float(dropout))  # bad sizes: refused now
    train.validated()
    if check_memory_for_new_model:  # a resume is checked by the engine, with the saved model's sizes
        check_memory(config, train.batch_size, train.seq_len, device)
    return run


# every bad field named with the engine's message; then the settings together (sizes, memory)
train_problems = field_problems(lambda **value: TrainConfig(**value).validated(), train_fields)
problems = train_problems + field_problems(
    lambda **value: ModelConfig.from_preset(arch, preset, state.vocab_estimate(corpus, vocab), **value),
    model_fields if explicit else {})
problems = problems or refusal(settings)
show_problems(problems, "start")

job = ss.train_job
running = job is not None and job.active
buttons = st.container(horizontal=True)
start = buttons.button("Start", type="primary", icon=":material/play_arrow:",
                       disabled=running or corpus is None or bool(problems),
                       help="Train a new model with these settings on the corpus.")
stop = buttons.button("Stop", icon=":material/stop:", disabled=not running,
                      help="Stop after the current step; the best weights so far are kept.")
resume = buttons.button("Resume", icon=":material/resume:",
                        disabled=running or job is None or not job.can_resume() or bool(train_problems),
                        help="Continue the last run from its checkpoint with the budget above (raise it if the "
                             "run reached its budget).")
try:
    if start and not problems:
        runs.check_quota()   # past the quota: the engine names the runs to delete
        job = new_job(corpus, settings(), owner=ss.owner)
        get_registry().submit(job)
        ss.train_job = job
        state.remember(train_run=job.out_dir.name)   # a reload finds it again
        st.rerun()
    if stop and job is not None:
        job.stop()
        st.rerun()
    if resume and job is not None and not train_problems:
        ss.train_job = runs.resume(job, settings(check_memory_for_new_model=False).train)
        st.rerun()
except TextgenError as exc:
    st.error(escape_markdown(exc), icon=":material/block:")

if job is None:
    st.info("Set the model and budget, then press **Start**: the loss curves, progress and a sample "
            "after each evaluation appear here.", icon=":material/model_training:")
    st.stop()

live([job], lambda snaps: show_job(snaps[0]))

if runs.has_model(job) and not job.active:
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.download_button("Download the model (.zip)", lambda d=job.out_dir: zip_model_folder(d),
                       f"{job.out_dir.name}.zip", mime="application/zip", icon=":material/download:",
                       on_click="ignore")
    c2.page_link("pages/generate.py", label="Generate text with it", icon=":material/auto_awesome:",
                 query_params=state.address())
    c3.page_link("pages/runs.py", label="Kept in this workspace: see it on the Runs page", icon=":material/history:",
                 query_params=state.address())
