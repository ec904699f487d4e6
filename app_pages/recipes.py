"""Recipes: classic text-generation experiments, one click each. The recipe's runs train one after
another with a time cap, beside the figures the original reported; then a table and a sample of each."""
import streamlit as st

from textgen_core import TextgenError, TrainConfig
from textgen_core.recipes import RECIPES
from ui import recipes, runs, state
from ui.checks import field_problems, show_problems
from ui.live import live
from ui.sampling import show_text
from ui.text import escape_markdown

ss = state.init()
for key, value in {"recipe_name": None, "recipe_samples": None}.items():
    ss.setdefault(key, value)

st.title("Recipes")
st.caption("Each recipe reproduces a known experiment (the corpus comes from the shared data folder) next to "
           "the numbers its original reported. The originals train for hours on a CPU, so every run here "
           "stops at the time cap; the models it trains appear on the Generate and Models pages.")

jobs = ss.recipe_jobs
running = any(job.active for job in jobs)
minutes = st.number_input("Minutes per run", value=2.0, step=0.5, key="recipe_minutes",  # checked by the engine
                          persist_state="session", help="the time cap of every run of the recipe")
problems = field_problems(lambda **value: TrainConfig(**value).validated(),
                          {"max_minutes": ("Minutes per run", float(minutes))})
show_problems(problems, "run a recipe")

for name, item in RECIPES.items():
    with st.container(border=True):
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"**{item.title}**  \n`{name}` · {len(item.runs)} run{'s' if len(item.runs) > 1 else ''}: "
                      + ", ".join(run.label for run in item.runs))
        text.caption(f"Original: {item.reference}")
        clicked = button.button("Run", icon=":material/play_arrow:", disabled=running or bool(problems),
                                key=f"recipe_run_{name}",
                                help="train its runs one after another, each for at most the minutes above")
        if clicked and not problems:
            try:
                ss.recipe_jobs = recipes.start(item, float(minutes), ss.owner, state.device_options()[0])
                ss.recipe_name, ss.recipe_samples = name, None
                state.remember(recipe_name=name, recipe_runs=[job.out_dir.name for job in ss.recipe_jobs])
                st.rerun()
            except TextgenError as exc:
                st.error(escape_markdown(exc), icon=":material/error:")

if not jobs:
    st.info("Press a recipe's **Run** button: its runs train here, with live curves, a results table "
            "and samples.", icon=":material/menu_book:")
    st.stop()

item = RECIPES[ss.recipe_name]
st.divider()
st.subheader(item.title)
st.markdown(f"**Original:** {item.reference}")
st.info(item.notes, icon=":material/lightbulb:")
if st.button("Stop all", icon=":material/stop:", disabled=not running,
             help="Stop the running run and cancel those still waiting."):
    for job in jobs:
        job.stop()
    st.rerun()


def draw(snaps) -> None:
    pending = recipes.submit_waiting(jobs, ss.owner)  # start waiting runs as soon as there is room
    if pending:
        st.warning(recipes.waiting_note(pending, ss.owner), icon=":material/hourglass_top:")
    recipes.show_runs(snaps, item)


live(jobs, draw)

done = [job for job in jobs if runs.has_model(job)]
if running or not done:
    st.stop()
st.subheader(f"Samples from “{item.prompt}” (temperature 0.8, seed 1)")
if ss.recipe_samples is None or set(ss.recipe_samples) != {job.id for job in done}:
    with st.spinner("Sampling from each run..."):
        ss.recipe_samples = recipes.samples(done, item)
for job in done:
    st.markdown(f"**{escape_markdown(job.name.removeprefix(item.name + '-'))}**")
    show_text(st.empty(), ss.recipe_samples.get(job.id, ""))
