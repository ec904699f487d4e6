"""Generate page (AppTest): pick a model, generate with a prompt, several temperatures, download."""
import pytest

from app_support import (app_env, click, new_app, pretrained, set_values, texts,  # noqa: F401
                         trained_folder)

pytestmark = pytest.mark.app


def generate_page(at):
    at.switch_page("pages/generate.py")
    return at.run()


def test_without_a_model_it_says_what_to_do(app_env):
    at = generate_page(new_app())
    assert not at.exception
    assert any("No model yet" in t for t in texts(at.info))
    assert {link.proto.page for link in at.get("page_link")} >= {"train", "models"}


def test_generates_from_a_pretrained_model(pretrained):
    at = generate_page(new_app())
    assert at.selectbox(key="gen_model").value == "song-gru-tiny · pretrained"
    at = set_values(at, gen_prompt="Home, home", gen_length=40, gen_samples=2, gen_seed=3)
    at = click(at, "Generate")
    assert not at.exception and not at.error
    first = texts(at.code)
    assert len(first) == 2 and all(t.startswith("Home, home") and len(t) > 30 for t in first)
    assert first[0] != first[1]  # two samples, one batch
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the text"
    at = click(at, "Generate")  # the same seed gives the same text
    assert texts(at.code) == first


def test_several_temperatures_side_by_side(pretrained):
    at = set_values(generate_page(new_app()), gen_several=True, gen_length=30)
    at = set_values(at, gen_temperatures=[0.2, 1.0, 1.5])
    at = click(at, "Generate")
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown if m.value.startswith("**temperature")] == [
        "**temperature 0.2**", "**temperature 1**", "**temperature 1.5**"]
    assert len(at.code) == 3 and len(set(texts(at.code))) == 3
    at.run()  # the result stays when the page reruns
    assert len(at.code) == 3


def test_loads_a_hub_repo_from_the_local_cache_and_picks_it(app_env, trained_folder, monkeypatch):
    import shutil

    from huggingface_hub import constants
    cache = app_env / "hub-cache"
    snapshot = cache / "models--me--song" / "snapshots" / ("a" * 40)
    shutil.copytree(trained_folder, snapshot, ignore=shutil.ignore_patterns("checkpoint"))
    (cache / "models--me--song" / "refs").mkdir()
    (cache / "models--me--song" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    at = generate_page(new_app())
    assert any("No model yet" in t for t in texts(at.info))
    at.text_input(key="gen_hub_repo").set_value("me/song")
    [b for b in at.button if b.label == "Load"][0].click()
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="gen_model").value == "me/song · Hub"
    at = set_values(at, gen_prompt="O bury", gen_length=20)
    at = click(at, "Generate")
    assert texts(at.code)[0].startswith("O bury")
