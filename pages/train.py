"""Train: choose a model and a budget, start, watch the loss fall live, stop, resume, download."""
import streamlit as st

from textgen_core import ARCHITECTURES, PRESETS, RunSettings, TextgenError, TrainConfig
from textgen_core.defaults import recommended_settings
from textgen_core.jobs import new_job
from textgen_core.memory import check_memory
from textgen_core.models import ModelConfig
from textgen_core.registry import get_registry
from ui import state
from ui.live import live, show_job
from ui.models import zip_model_folder

ss = state.init()
ARCH_HELP = {"gru": "GRU (gated recurrent unit)", "lstm": "LSTM (long short-term memory)",
             "cnn": "CNN (causal dilated convolutions)", "attention": "attention (small transformer)"}
BUDGETS = ("steps", "epochs", "minutes")
PRECISIONS = {"auto": "auto (bf16 on a GPU, fp32 on the CPU)", "fp32": "fp32", "bf16": "bf16 autocast"}
# Starting values measured as the best at equal training time on this kind of device (BENCHMARKS.md).
best = recommended_settings(state.device_options()[0])

st.title("Train")
corpus = state.corpus()
kind, vocab, val_fraction = state.tokenizer_settings()
if corpus is None:
    st.info("No corpus yet: upload a text on the Corpus page first, then come back to train on it.",
            icon=":material/upload_file:")
    st.page_link("pages/corpus.py", label="Go to Corpus", icon=":material/description:")
else:
    st.caption(f"Corpus **{corpus.name}** ({corpus.stats.chars:,} characters) · {kind} tokenizer"
               f"{f' ({vocab:,} tokens)' if vocab else ''} · {val_fraction:.0%} held out for validation "
               "(change them on the Corpus page)")

left, middle, right = st.columns(3)
with left:
    st.markdown("**Model**")
    arch = st.selectbox("Architecture", ARCHITECTURES, ARCHITECTURES.index(best["arch"]), format_func=ARCH_HELP.get,
                        key="arch", persist_state="session")
    # the GPU's recommended model is not a preset (768x3): it starts with explicit sizes on
    sized = ModelConfig.from_preset(best["arch"], best["preset"], 2, hidden=best.get("hidden"), layers=best.get("layers"))
    explicit = st.toggle("Explicit sizes", "hidden" in best, key="explicit_sizes", persist_state="session",
                         help="Off: a size preset. On: embedding, hidden and layers yourself.")
    if explicit:
        c1, c2, c3 = st.columns(3)
        embedding = c1.number_input("Embedding", 4, 2048, sized.embedding, key="embedding", persist_state="session")
        hidden = c2.number_input("Hidden", 4, 4096, sized.hidden, key="hidden", persist_state="session")
        layers = c3.number_input("Layers", 1, 16, sized.layers, key="layers", persist_state="session")
        preset = "small"
    else:
        preset = st.selectbox("Size preset", PRESETS, index=PRESETS.index(best["preset"]), key="preset",
                              persist_state="session")
        embedding = hidden = layers = None
    dropout = st.slider("Dropout", 0.0, 0.7, best["dropout"], 0.05, key="dropout", persist_state="session")
with middle:
    st.markdown("**Optimization**")
    c1, c2 = st.columns(2)
    lr = c1.number_input("Learning rate", 1e-5, 1.0, best["lr"], format="%.4f", step=5e-4, key="lr",
                         persist_state="session")
    weight_decay = c2.number_input("Weight decay", 0.0, 10.0, best.get("weight_decay", TrainConfig.weight_decay),
                                   format="%.3f", step=0.01, key="weight_decay", persist_state="session",
                                   help="AdamW's decoupled weight decay on matrices and embeddings.")
    c1, c2 = st.columns(2)
    batch = c1.number_input("Batch size", 1, 1024, best["batch_size"], key="batch", persist_state="session")
    seq_len = c2.number_input("Sequence length", 8, 2048, best["seq_len"], key="seq_len", persist_state="session")
    c1, c2 = st.columns(2)
    eval_every = c1.number_input("Evaluate every (steps)", 5, 100_000, best["eval_every"], key="eval_every",
                                 persist_state="session")
    patience = c2.number_input("Patience (evaluations)", 0, 100, 0, key="patience", persist_state="session",
                               help="Stop after this many evaluations without a better validation loss; 0: off.")
with right:
    st.markdown("**Budget and device**")
    budget_kind = st.radio("Budget in", BUDGETS, horizontal=True, key="budget_kind",
                           persist_state="session")
    defaults = {"steps": (1000, 1, 1_000_000, 100), "epochs": (1.0, 0.01, 1000.0, 0.5),
                "minutes": (5.0, 0.1, 24 * 60.0, 1.0)}[budget_kind]
    budget = st.number_input(f"Budget ({budget_kind})", *defaults[1:3], defaults[0], step=defaults[3],
                             key=f"budget_{budget_kind}", persist_state="session")
    devices = state.device_options()
    device = st.selectbox("Device", devices, format_func=state.device_label, key="device", persist_state="session")
    precision = st.selectbox("Precision", list(PRECISIONS), list(PRECISIONS).index(best["precision"]),
                             format_func=PRECISIONS.get, key="precision", persist_state="session",
                             help="bf16 autocast is faster on GPUs and on CPUs with bf16 units; "
                                  "weights and optimizer stay fp32.")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", persist_state="session")


def settings(check_memory_for_new_model: bool = True) -> RunSettings:
    field = {"steps": "max_steps", "epochs": "epochs", "minutes": "max_minutes"}[budget_kind]
    train = TrainConfig(batch_size=int(batch), seq_len=int(seq_len), lr=float(lr), weight_decay=float(weight_decay),
                        eval_every=int(eval_every),
                        log_every=min(10, int(eval_every)), patience=int(patience) or None, device=device,
                        precision=precision, cpu_threads=best.get("cpu_threads") if device == "cpu" else None,
                        seed=int(seed), **{field: int(budget) if budget_kind == "steps" else float(budget)})
    run = RunSettings(tokenizer=kind, vocab_size=vocab, arch=arch, preset=preset, embedding=embedding,
                      hidden=hidden, layers=layers, dropout=float(dropout), val_fraction=val_fraction, train=train)
    config = ModelConfig.from_preset(arch, preset, state.vocab_estimate(corpus, vocab), embedding=embedding, hidden=hidden,
                                     layers=layers, dropout=float(dropout))  # bad sizes: refused now
    train.validated()
    if check_memory_for_new_model:  # a resume is checked by the engine, with the saved model's sizes
        check_memory(config, train.batch_size, train.seq_len, device)
    return run


job = ss.train_job
running = job is not None and job.active
buttons = st.container(horizontal=True)
start = buttons.button("Start", type="primary", icon=":material/play_arrow:", disabled=running or corpus is None)
stop = buttons.button("Stop", icon=":material/stop:", disabled=not running)
resume = buttons.button("Resume", icon=":material/resume:", disabled=running or job is None or not job.can_resume(),
                   help="Continue the last run from its checkpoint with the budget above (raise it if the "
                        "run reached its budget).")
try:
    if start:
        job = new_job(corpus, settings(), owner=ss.owner)
        get_registry().submit(job)
        ss.train_job = job
        st.rerun()
    if stop and job is not None:
        job.stop()
        st.rerun()
    if resume and job is not None:
        get_registry().resume(job, settings(check_memory_for_new_model=False).train)
        st.rerun()
except TextgenError as exc:
    st.error(str(exc), icon=":material/block:")

if job is None:
    st.info("Set the model and budget, then press **Start**: the loss curves, progress and a sample "
            "after each evaluation appear here.", icon=":material/model_training:")
    st.stop()

live([job], lambda snaps: show_job(snaps[0]))

if job.bundle is not None and not job.active:
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.download_button("Download the model (.zip)", lambda d=job.out_dir: zip_model_folder(d),
                       f"{job.out_dir.name}.zip", mime="application/zip", icon=":material/download:",
                       on_click="ignore")
    c2.page_link("pages/generate.py", label="Generate text with it", icon=":material/auto_awesome:")
    c3.caption(f"Saved in `{job.out_dir}`")
