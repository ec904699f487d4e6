"""Models page (AppTest): cards, loading from the Hub (offline here), pushing through a fake HfApi."""
import pytest

from app_support import all_text, app_env, new_app, plain, pretrained, texts, trained_folder  # noqa: F401

pytestmark = pytest.mark.app
TOKEN = "hf_secretTOKEN1234567890"


def models_page(at):
    at.switch_page("app_pages/models.py")
    return at.run()


class FakeHfApi:
    """Stands in for huggingface_hub.HfApi: records calls, optionally fails like a refused login."""
    calls: list = []
    fail = False

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, repo_id, token=None, private=False, exist_ok=False):
        FakeHfApi.calls.append(("create_repo", repo_id, token, private))
        if FakeHfApi.fail:
            raise PermissionError("401 Client Error: Unauthorized: invalid credentials")
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, token=None, **kwargs):
        FakeHfApi.calls.append(("upload_folder", repo_id, token, kwargs.get("ignore_patterns")))


@pytest.fixture()
def fake_hub(monkeypatch):
    import huggingface_hub
    FakeHfApi.calls, FakeHfApi.fail = [], False
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_without_models_it_says_what_to_do(app_env):
    at = models_page(new_app())
    assert not at.exception
    assert any("No models yet" in t for t in texts(at.info))
    assert any("Train a model first" in t for t in texts(at.caption))


def test_cards_of_available_models(pretrained):
    at = models_page(new_app())
    assert not at.exception
    shown = all_text(at)
    for expected in ("**corpus:** song.txt", "**tokenizer:** char", "**architecture:** GRU", "**parameters:**",
                     "**best validation bits per char:**", "# song-gru-tiny"):
        assert expected in shown
    assert at.get("download_button")[0].proto.label == "Download the model folder (.zip)"


def test_hub_load_fails_fast_with_the_engine_message(app_env):
    at = models_page(new_app())
    at.text_input(key="hub_repo").set_value("someone/some-model")
    [b for b in at.button if b.label == "Load"][0].click()
    at.run()
    assert not at.exception
    assert any("HF_HUB_OFFLINE" in plain(t) for t in texts(at.error))


def push(at, repo_id="me/song-gru"):
    at.text_input(key="push_repo").set_value(repo_id)
    at.text_input(key="push_token").set_value(TOKEN)
    [b for b in at.button if b.label == "Push"][0].click()
    return at.run()


def test_push_uses_the_token_and_never_shows_it(pretrained, fake_hub):
    at = push(models_page(new_app()))
    assert not at.exception and not at.error
    assert any("Pushed song-gru-tiny · pretrained to https://huggingface.co/me/song-gru" in t
               for t in texts(at.success))
    assert fake_hub.calls[0] == ("create_repo", "me/song-gru", TOKEN, False)
    assert fake_hub.calls[1][:3] == ("upload_folder", "me/song-gru", TOKEN)
    assert TOKEN not in all_text(at) and TOKEN not in str(at)
    assert at.text_input(key="push_token").value == ""  # the form cleared it


def test_push_failure_shows_the_reason_without_the_token(pretrained, fake_hub):
    fake_hub.fail = True
    at = push(models_page(new_app()))
    assert not at.exception
    (error,) = at.error
    assert "uploading to me/song-gru failed" in error.value and "Unauthorized" in error.value
    assert TOKEN not in all_text(at) and TOKEN not in str(at)


def test_the_zip_holds_only_the_model_files(trained_folder):
    import io
    import zipfile

    from ui.models import zip_model_folder
    names = zipfile.ZipFile(io.BytesIO(zip_model_folder(trained_folder))).namelist()
    assert "song-gru-tiny/model.safetensors" in names and "song-gru-tiny/config.json" in names
    assert "song-gru-tiny/README.md" in names and "song-gru-tiny/textgen_tokenizer.json" in names
    assert (trained_folder / "checkpoint").is_dir() and not any("checkpoint" in n for n in names)


def test_catalog_models_say_what_they_are_and_which_copy_was_loaded(pretrained):
    import json
    (pretrained.parent / "catalog.json").write_text(json.dumps([
        {"name": "song-gru-tiny", "repo_id": "playground/song-gru-tiny", "folder": pretrained.name,
         "description": "Cowboy songs, one token per character"}]))
    at = models_page(new_app())
    assert not at.exception
    shown = plain(all_text(at))
    assert "song-gru-tiny · pretrained" in [e.label.strip("*") for e in at.expander]
    assert "Cowboy songs, one token per character" in shown
    # the Hub is switched off here: the bundled copy is used, and the page says so
    assert "HF_HUB_OFFLINE" in shown and "using the bundled copy" in shown
