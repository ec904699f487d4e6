"""Runs: every run of this workspace, read from disk, newest first: what it reached, its curve and its
samples step by step; overlay several; open one in Generate, resume, download, rename, export, delete."""
from dataclasses import replace

import streamlit as st

from textgen_core import TextgenError, TrainConfig
from textgen_core.files import size_text
from textgen_core.jobs import snapshot_from_folder
from textgen_core.status import read_timeline
from textgen_core.workspace import quota_bytes
from ui import runs, state
from ui.charts import compare_figure
from ui.checks import field_problems, show_problems
from ui.live import live, show_job
from ui.models import trained_label, zip_model_folder
from ui.text import MISSING, escape_markdown, fmt_number

ss = state.init()
for key, value in {"runs_confirm_delete": None, "runs_notice": None}.items():
    ss.setdefault(key, value)
workspace = state.workspace()

st.title("Runs")
st.caption("Every run of this workspace, kept on the server. This page's address (its `?w=` part) brings you "
           "back to them: bookmark it. Anyone who has the address sees these runs.")
records = workspace.runs()
quota, quota_problem = quota_bytes()
used = runs.disk_usage()
st.progress(min(1.0, used / quota), text=f"{size_text(used)} of this workspace's {size_text(quota)} used "
                                         f"({len(records)} run{'' if len(records) == 1 else 's'})")
if quota_problem:   # a bad server setting: said here, its default used
    st.warning(escape_markdown(quota_problem), icon=":material/warning:")
if ss.runs_notice:
    st.success(escape_markdown(ss.runs_notice), icon=":material/check_circle:")
    ss.runs_notice = None
if not records:
    st.info("No runs in this workspace yet: train one on the **Train** page and it is listed here, with its "
            "curve and its samples step by step.", icon=":material/history:")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.stop()

by_name = {record.name: record for record in records}


def label(name: str) -> str:
    return f"{by_name[name].display_name} · {runs.when(by_name[name].created)}"


number = st.column_config.NumberColumn
st.dataframe(runs.runs_table(records), hide_index=True, placeholder=MISSING,  # a value a run lacks: a dash
             column_config={"parameters": number(format="localized")})

st.subheader("Validation curves together")
if "runs_overlay" in ss:   # runs deleted meanwhile leave the selection
    ss.runs_overlay = [name for name in ss.runs_overlay if name in by_name]
overlay = st.multiselect("Runs to overlay", list(by_name), format_func=label, key="runs_overlay",
                         help="Their validation bits per character, drawn together: comparable across tokenizers.")
if overlay:
    axis = st.radio("Against", ("step", "elapsed"), horizontal=True, key="runs_overlay_axis",
                    format_func={"step": "steps", "elapsed": "training time"}.get,
                    help="Compare at equal steps, or at equal training time.")
    snaps = [replace(snapshot_from_folder(by_name[name]), name=label(name)) for name in overlay]
    st.plotly_chart(compare_figure(snaps, axis), key="runs-overlay", config={"displaylogo": False})

st.subheader("One run")
if ss.get("runs_selected") not in by_name:
    ss.pop("runs_selected", None)
name = st.selectbox("Run", list(by_name), format_func=label, key="runs_selected",
                    help="The run to look at and act on.")
record = by_name[name]
job = runs.live_job(record)
timeline = sorted({sample["step"]: sample for sample in read_timeline(record.path)}.items())
if job is not None:   # it trains in this server: live, with Stop
    live([job], lambda snaps: show_job(snaps[0]))
    if st.button("Stop", icon=":material/stop:", key="runs_stop", help="Stop after the current step; the "
                 "best weights so far are kept."):
        job.stop("stopped by the user")
        st.rerun()
else:
    show_job(snapshot_from_folder(record), latest_sample=not timeline)   # the timeline below shows it

if timeline:
    with st.container(border=True):
        steps = [step for step, _ in timeline]
        step = st.select_slider("Sample after step", steps, value=steps[-1], key=f"runs_timeline_{name}",
                                help="Slide over the evaluations and watch the text emerge from noise (temperature "
                                     "0.8, the same seed every time).") if len(steps) > 1 else steps[0]
        sample = dict(timeline)[step]
        st.caption(f"After step {step:,}: validation loss {fmt_number(sample.get('val_loss'), '.3f')} nats/token, "
                   f"{fmt_number(sample.get('val_bpc'), '.3f')} bits/char, {state.fmt_seconds(sample.get('elapsed'))} "
                   "trained")
        st.code(sample["text"] or " ", language=None, wrap_lines=True)
else:
    st.caption("No samples yet: one is kept at every evaluation.")

st.markdown("**Actions**")
buttons = st.container(horizontal=True)
if buttons.button("Open in Generate", icon=":material/auto_awesome:", key="runs_generate",
                  disabled=not record.has_model or record.active,
                  help="Sample from this run's best weights on the Generate page."):
    ss.gen_model = trained_label(record.display_name, record.created)
    state.remember(gen_model=ss.gen_model)
    st.switch_page("app_pages/generate.py", query_params={state.WORKSPACE_PARAM: workspace.id})
buttons.download_button("Download the model (.zip)", lambda folder=record.path: zip_model_folder(folder),
                        f"{record.name}.zip", mime="application/zip", icon=":material/download:",
                        on_click="ignore", disabled=not record.has_model, key="runs_zip",
                        help="The model folder: weights, config, tokenizer, history and card.")
buttons.download_button("Export the history (.csv)", runs.history_csv(record), f"{record.name}-history.csv",
                        mime="text/csv", icon=":material/table:", on_click="ignore", key="runs_csv",
                        help="Every training and validation report so far, one row each.")
if buttons.button("Delete", icon=":material/delete:", key="runs_delete",
                  help="Remove the run's folder (asks first); a run that trains is stopped first."):
    ss.runs_confirm_delete = name

if ss.runs_confirm_delete == name:
    training = " It is training: it is stopped first." if record.active else ""
    st.warning(f"Delete **{escape_markdown(record.display_name)}**? Its model, checkpoints and samples are "
               f"removed for good.{training}", icon=":material/delete:")
    confirm = st.container(horizontal=True)
    if confirm.button("Yes, delete", type="primary", key="runs_delete_yes", help="Delete the run now."):
        try:
            runs.stop_and_delete(record)
            ss.runs_confirm_delete, ss.runs_notice = None, f"Deleted {record.display_name}."
            st.rerun()
        except TextgenError as exc:
            st.error(escape_markdown(exc), icon=":material/block:")
    if confirm.button("Cancel", key="runs_delete_no", help="Keep the run."):
        ss.runs_confirm_delete = None
        st.rerun()

with st.form(f"runs_rename_{name}", border=False):
    columns = st.columns([3, 1], vertical_alignment="bottom")
    new_name = columns[0].text_input("New name", record.display_name, max_chars=120, key=f"runs_new_name_{name}",
                                     help="How the run is listed here and in the model pickers.")
    if columns[1].form_submit_button("Rename", icon=":material/edit:", help="Keep the new name."):
        try:
            workspace.rename_run(record.name, new_name)
            ss.runs_notice = f"Renamed {record.display_name} to {workspace.run(record.name).display_name}."
            st.rerun()
        except TextgenError as exc:
            st.error(escape_markdown(exc), icon=":material/block:")

if record.resumable and job is None:
    st.markdown("**Resume from the last checkpoint**")
    config = runs.saved_train_config(record)
    setting, unit, budget = runs.budget_of(config or TrainConfig())
    reached = record.label == "budget reached" or (setting == "max_steps" and record.step >= budget)
    typed = st.number_input(f"Budget ({unit})", value=budget * 2 if reached else budget, key=f"runs_budget_{name}",
                            help="Train until the run has done this much in all, counted from its start; its other "
                                 "settings stay the run's own.")
    value = int(typed) if unit == "steps" else float(typed)
    problems = field_problems(lambda **v: TrainConfig(**v).validated(), {setting: (f"Budget ({unit})", value)})
    show_problems(problems, "resume")
    try:
        runs.run_corpus(record)
        missing = None
    except TextgenError as exc:
        missing = str(exc)
        st.warning(escape_markdown(missing), icon=":material/warning:")
    if st.button("Resume", icon=":material/resume:", key="runs_resume",
                 disabled=bool(problems or missing or not config),
                 help="Continue this run from its last checkpoint, with its own settings and the budget above."):
        try:
            runs.resume(runs.SavedRun(record), replace(config, **{setting: value}))
            st.rerun()
        except TextgenError as exc:
            st.error(escape_markdown(exc), icon=":material/block:")
