"""Models: the models this session can use with their cards; load one from the Hub; push one to it."""
import streamlit as st

from textgen_core import TextgenError, hub
from ui import state
from ui.models import available_models, card_markdown, card_rows, hub_load_form, pretrained_dir, zip_model_folder
from ui.text import escape_markdown

ss = state.init()

st.title("Models")
models = available_models()
if not models:
    st.info(f"No models yet: {escape_markdown(pretrained_dir())} holds no pretrained model folders and this "
            "workspace has no trained run. Train one on the **Train** page, or load one from the Hub below.",
            icon=":material/info:")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:",
                 query_params=state.address())

for index, (label, entry) in enumerate(models.items()):
    with st.expander(f"**{escape_markdown(label)}**", expanded=index == 0):
        try:
            bundle = entry.load()
        except TextgenError as exc:
            st.error(escape_markdown(exc))
            continue
        summary, card = st.tabs(["Summary", "Model card"])
        if entry.description:
            summary.markdown(f"_{escape_markdown(entry.description)}_")
        if entry.source_note():
            summary.caption(escape_markdown(entry.source_note()))
        summary.markdown("  \n".join(f"**{field}:** {escape_markdown(value)}" for field, value in card_rows(bundle)))
        if entry.folder is not None:
            summary.download_button("Download the model folder (.zip)", lambda f=entry.folder: zip_model_folder(f),
                                    f"{entry.folder.name}.zip", mime="application/zip", key=f"zip-{index}",
                                    icon=":material/download:", on_click="ignore")
        text = card_markdown(bundle)
        card.markdown(text if text else "_This model folder has no README.md card._")

st.subheader("Load from the Hugging Face Hub")
hub_load_form("hub")

st.subheader("Push a model to the Hub")
local = {label: entry.folder for label, entry in models.items() if entry.folder is not None}


def push(folders: dict) -> None:
    """Runs before the page (a callback), so the token leaves the session state at once."""
    token, ss.push_token = ss.get("push_token") or "", ""
    choice, repo = ss.get("push_model"), (ss.get("push_repo") or "").strip()
    try:
        url = hub.push_folder(folders[choice], repo, token=token or None, private=bool(ss.get("push_private")))
        ss.push_result = ("success", f"Pushed {choice} to {url}")
    except TextgenError as exc:
        message = str(exc)
        ss.push_result = ("error", message.replace(token, "***") if token else message)


if not local:
    st.caption("Train a model first: only models with a folder on this machine can be pushed.")
else:
    with st.form("hub_push"):
        st.selectbox("Model", list(local), key="push_model", help="A model folder on this machine.")
        st.text_input("Repo id", placeholder="your-name/my-lyrics-gru", key="push_repo",
                      help="owner/name of the Hub repo; it is created when it does not exist.")
        st.text_input("Hugging Face token (write access)", type="password", key="push_token",
                      help="Used for this upload only: never stored, shown or logged.")
        st.checkbox("Private repo", key="push_private", help="Only you (and your organisation) can see it.")
        st.form_submit_button("Push", icon=":material/cloud_upload:", on_click=push, args=(local,))
    kind, message = ss.pop("push_result", (None, None))
    if kind == "success":
        st.success(escape_markdown(message), icon=":material/cloud_done:")
    elif kind == "error":
        st.error(escape_markdown(message), icon=":material/block:")
