"""The text-generation playground: `make run`, then open the printed address.

A router with a shared sidebar; each page is a short script under app_pages/ (not pages/: Streamlit
takes a folder of that name for its old multipage mode, where a fresh server's first visit to a
page's address runs that page alone, without this router).
"""
import os

# Training threads and the UI share a few cores: OpenMP threads that spin while waiting make
# training crawl when anything else runs (measured: 20x slower). Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from textgen_core.registry import get_registry, registry_warnings  # noqa: E402
from ui import state  # noqa: E402
from ui.live import live  # noqa: E402
from ui.text import escape_markdown  # noqa: E402

st.set_page_config(page_title="Text generation playground", page_icon=":material/edit_note:",
                   layout="wide")
ss = state.init()

pages = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/corpus.py", title="Corpus", icon=":material/description:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("app_pages/recipes.py", title="Recipes", icon=":material/menu_book:"),
    st.Page("app_pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
    st.Page("app_pages/inspect.py", title="Inspect", icon=":material/biotech:"),
    st.Page("app_pages/models.py", title="Models", icon=":material/inventory_2:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
]
# The sidebar draws its own links, so that the title comes first and every link keeps the workspace.
page = st.navigation(pages, position="hidden")


def sidebar_jobs(snaps) -> None:
    running = [s for s in snaps if s.active]
    if running:
        st.markdown(f"**Training:** {len(running)} job{'s' if len(running) > 1 else ''} of this workspace")
        for snap in running:
            st.progress(min(1.0, snap.progress), text=f"{escape_markdown(snap.name)} · {snap.status}")
    else:
        st.caption("No training running.")


with st.sidebar:
    st.markdown("### Text generation playground")
    with st.container(key="nav", gap=None):
        for link in pages:
            st.page_link(link, query_params=state.address())
    st.divider()
    corpus = state.corpus()
    if corpus is None:
        st.caption("No corpus yet: upload a text on **Corpus**.")
    else:
        st.markdown(f"**Corpus:** {escape_markdown(corpus.name)}  \n{corpus.stats.chars:,} characters")
    # Train, Compare and Recipes poll their own jobs (which also keeps them alive). For any other active
    # job of the workspace (another tab's too) the sidebar polls, slowly: the heartbeat keeps it alive
    # and the page learns when it ends.
    active = state.active_jobs()
    polled_by_page = {"": active, "train": [ss.train_job], "compare": ss.compare_jobs,
                      "recipes": ss.get("recipe_jobs", [])}.get(page.url_path, [])
    if all(job in polled_by_page for job in active):
        sidebar_jobs([job.snapshot() for job in active])
    else:
        live(active, sidebar_jobs, every_s=10.0)
    for warning in registry_warnings():  # a bad server setting: said here, its default used
        st.warning(escape_markdown(warning), icon=":material/warning:")
    devices = state.device_options()
    st.caption(f"Device: {state.device_label(devices[0])} · server: {get_registry().running_count()} "
               f"of {get_registry().max_running} training slots in use")

page.run()
