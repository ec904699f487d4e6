"""Train: choose a model and a budget, start, watch the loss fall live, stop, resume, download."""
import streamlit as st

from textgen_core import ARCHITECTURES, PRESETS, RunSettings, TextgenError, TrainConfig
from textgen_core.devices import precision_options
from textgen_core.jobs import new_job
from textgen_core.memory import check_memory
from textgen_core.models import ModelConfig
from textgen_core.registry import get_registry
from ui import proposal as proposals
from ui import runs, state
from ui.checks import field_problems, refusal, show_problems
from ui.explain import HELP, budget_text, describe_size, parameters, preset_label, size_warning
from ui.live import live, show_job
from ui.models import zip_model_folder
from ui.text import escape_markdown

ss = state.init()
ARCH_HELP = {"gru": "GRU (gated recurrent unit)", "lstm": "LSTM (long short-term memory)",
             "cnn": "CNN (causal dilated convolutions)", "attention": "attention (small transformer)"}
BUDGETS = ("steps", "epochs", "minutes")
PRECISIONS = {"auto": "auto (bf16 on a GPU, fp32 on the CPU)", "fp32": "fp32", "bf16": "bf16 autocast"}

st.title("Train")
corpus = state.corpus()
kind, vocab, val_fraction = state.tokenizer_settings()
chars = corpus.stats.chars if corpus is not None else 0
devices = state.device_options()
if ss.get("device") not in devices:
    ss["device"] = devices[0]
# Starting values proposed for this corpus and device (measured defaults, BENCHMARKS.md). The widgets
# read their values from the session: a new corpus or device proposes again for every widget the user
# has not changed (ui/proposal.py).
proposal = proposals.propose(corpus, ss["device"])
proposed = proposals.train_widgets(proposal, chars, val_fraction)
proposals.follow("_train_proposal", proposals.key_of(corpus, ss["device"]), proposed)
vocab_size = state.vocab_estimate(corpus, vocab)
if corpus is None:
    st.info("No corpus yet: upload a text on the Corpus page first, then come back to train on it.",
            icon=":material/upload_file:")
    st.page_link("app_pages/corpus.py", label="Go to Corpus", icon=":material/description:",
                 query_params=state.address())
else:
    st.caption(f"Corpus **{escape_markdown(corpus.name)}** ({chars:,} characters) · {kind} tokenizer"
               f"{f' ({vocab:,} tokens)' if vocab else ''} · {val_fraction:.0%} held out for validation "
               "(change them on the Corpus page)")
    with st.expander(f"Proposed for this corpus ({chars:,} characters) on {ss['device']}: why these settings"):
        st.markdown("\n".join(f"- {escape_markdown(reason)}" for reason in proposal.reasons))
        st.caption("A setting you change keeps your value; the others follow a new corpus or device.")

left, middle, right = st.columns(3)
with left:
    st.markdown("**Model**")
    arch = st.selectbox("Architecture", ARCHITECTURES, format_func=ARCH_HELP.get, key="arch",
                        persist_state="session", help=HELP["arch"])
    explicit = st.toggle("Explicit sizes", key="explicit_sizes", persist_state="session", help=HELP["explicit"])
    if explicit:
        c1, c2, c3 = st.columns(3)
        embedding = c1.number_input("Embedding", step=16, key="embedding", persist_state="session",
                                    help=HELP["embedding"])
        hidden = c2.number_input("Hidden", step=32, key="hidden", persist_state="session", help=HELP["hidden"])
        layers = c3.number_input("Layers", step=1, key="layers", persist_state="session", help=HELP["layers"])
        preset = "small"
    else:
        preset = st.selectbox("Size preset", PRESETS, key="preset", persist_state="session", help=HELP["preset"],
                              format_func=lambda name: preset_label(arch, name, vocab_size))
        embedding = hidden = layers = None
    dropout = st.slider("Dropout", 0.0, 0.7, step=0.05, key="dropout", persist_state="session", help=HELP["dropout"])
    train_chars = int(chars * (1 - val_fraction))
    try:   # the model's size for this corpus, before anything starts (bad sizes: named below)
        chosen = ModelConfig.from_preset(arch, preset, vocab_size, embedding=embedding, hidden=hidden, layers=layers)
    except TextgenError:
        chosen = None
    if chosen is not None:   # in full: a narrow select box cuts its option short
        st.caption(f"This model: {describe_size(chosen)}")
    if chosen is not None and corpus is not None and (warning := size_warning(parameters(chosen), train_chars)):
        st.warning(warning, icon=":material/warning:")
with middle:
    st.markdown("**Optimization**")
    # number fields have no widget bounds: the engine's validators check them below and name a bad one
    c1, c2 = st.columns(2)
    lr = c1.number_input("Learning rate", format="%.4f", step=5e-4, key="lr", persist_state="session",
                         help=HELP["lr"])
    weight_decay = c2.number_input("Weight decay", format="%.3f", step=0.01, key="weight_decay",
                                   persist_state="session", help=HELP["weight_decay"])
    c1, c2 = st.columns(2)
    batch = c1.number_input("Batch size", step=8, key="batch", persist_state="session", help=HELP["batch"])
    seq_len = c2.number_input("Sequence length", step=16, key="seq_len", persist_state="session",
                              help=HELP["seq_len"])
    carry_state = st.toggle("Carry state between steps", key="carry_state", persist_state="session",
                            help=HELP["carry_state"])
    c1, c2 = st.columns(2)
    eval_every = c1.number_input("Evaluate every (steps)", step=10, key="eval_every", persist_state="session",
                                 help=HELP["eval_every"])
    patience = c2.number_input("Patience (evaluations)", step=1, key="patience", persist_state="session",
                               help=HELP["patience"])
with right:
    st.markdown("**Budget and device**")
    budget_kind = st.radio("Budget in", BUDGETS, horizontal=True, key="budget_kind", persist_state="session",
                           help=HELP["budget_kind"])
    step = {"steps": 100, "epochs": 0.5, "minutes": 1.0}[budget_kind]
    budget = st.number_input(f"Budget ({budget_kind})", step=step, key=f"budget_{budget_kind}",
                             persist_state="session", help=HELP["budget"])
    # what the budget means in passes over this corpus (a time budget at the proposal's measured speed)
    rate = proposals.steps_per_s(proposal, chars)
    speed_keys = ("arch", "explicit_sizes", "preset", "embedding", "hidden", "layers", "batch", "seq_len", "precision")
    meaning = budget_text(budget_kind, float(budget), int(batch), int(seq_len), train_chars,
                          rate * proposal.settings["batch_size"] * proposal.settings["seq_len"] if rate else None,
                          proposed_model=all(ss.get(k) == proposed[k] for k in speed_keys), patience=int(patience))
    if meaning and corpus is not None:
        st.caption(meaning + ("" if kind == "char" else f" (counted as if a token were a character: a {kind} "
                              "token covers several, so the epochs are more than this)"))
    device = st.selectbox("Device", devices, format_func=state.device_label, key="device", persist_state="session",
                          help=HELP["device"])
    precisions = list(precision_options(device))  # bf16 only where the device has bf16 units
    if ss.get("precision") not in precisions:   # e.g. bf16 on a device without it: the proposal's
        ss["precision"] = proposed["precision"] if proposed["precision"] in precisions else precisions[0]
    precision = st.selectbox("Precision", precisions, format_func=PRECISIONS.get, key="precision",
                             persist_state="session", help=HELP["precision"])
    seed = st.number_input("Seed", value=0, key="seed", persist_state="session", help=HELP["seed"])

budget_field = {"steps": "max_steps", "epochs": "epochs", "minutes": "max_minutes"}[budget_kind]
train_fields = {"lr": ("Learning rate", float(lr)), "weight_decay": ("Weight decay", float(weight_decay)),
                "batch_size": ("Batch size", int(batch)), "seq_len": ("Sequence length", int(seq_len)),
                "carry_state": ("Carry state between steps", bool(carry_state)),
                "eval_every": ("Evaluate every (steps)", int(eval_every)),
                "patience": ("Patience (evaluations)", int(patience) or None), "seed": ("Seed", int(seed)),
                budget_field: (f"Budget ({budget_kind})", int(budget) if budget_kind == "steps" else float(budget))}
model_fields = {"embedding": ("Embedding", embedding), "hidden": ("Hidden", hidden), "layers": ("Layers", layers)}


def settings(check_memory_for_new_model: bool = True) -> RunSettings:
    values = {name: value for name, (_, value) in train_fields.items()}
    train = TrainConfig(**values, log_every=max(1, min(10, values["eval_every"])), device=device, precision=precision,
                        cpu_threads=proposal.settings.get("cpu_threads") if device == "cpu" else None)
    run = RunSettings(tokenizer=kind, vocab_size=vocab, arch=arch, preset=preset, embedding=embedding,
                      hidden=hidden, layers=layers, dropout=float(dropout), val_fraction=val_fraction, train=train)
    config = ModelConfig.from_preset(arch, preset, vocab_size, embedding=embedding, hidden=hidden,
                                     layers=layers, dropout=float(dropout))  # bad sizes: refused now
    train.validated()
    if check_memory_for_new_model:  # a resume is checked by the engine, with the saved model's sizes
        check_memory(config, train.batch_size, train.seq_len, device)
    return run


# every bad field named with the engine's message; then the settings together (sizes, memory)
train_problems = field_problems(lambda **value: TrainConfig(**value).validated(), train_fields)
problems = train_problems + field_problems(
    lambda **value: ModelConfig.from_preset(arch, preset, vocab_size, **value),
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
    c2.page_link("app_pages/generate.py", label="Generate text with it", icon=":material/auto_awesome:",
                 query_params=state.address())
    c3.page_link("app_pages/runs.py", label="Kept in this workspace: see it on the Runs page",
                 icon=":material/history:", query_params=state.address())
