"""Generate page (AppTest): pick a model, generate with a prompt, several temperatures, download."""
import pytest
from streamlit.testing.v1 import AppTest

from app_support import (  # noqa: F401
    APP,
    app_env,
    click,
    new_app,
    press,
    pretrained,
    set_values,
    shown_texts,
    texts,
    trained_folder,
)

pytestmark = pytest.mark.app


def generate_page(at):
    at.switch_page("app_pages/generate.py")
    return at.run()


def test_without_a_model_it_says_what_to_do(app_env):
    at = generate_page(new_app())
    assert not at.exception
    assert any("No model yet" in t for t in texts(at.info))
    assert {link.proto.page for link in at.get("page_link")} >= {"train", "models"}


def test_generates_from_a_pretrained_model(pretrained):
    at = generate_page(new_app())
    assert at.selectbox(key="gen_model").value == "song-gru-tiny · pretrained"
    at = press(at, "Generate", gen_prompt="Home, home", gen_length=40, gen_samples=2, gen_seed=3)
    assert not at.exception and not at.error
    first = texts(at.code)
    assert len(first) == 2 and all(t.startswith("Home, home") and len(t) > 30 for t in first)
    assert first[0] != first[1]  # two samples, one batch
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the text"
    at = click(at, "Generate")  # the same seed gives the same text
    assert shown_texts(at) == first


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
    at = press(at, "Generate", gen_prompt="O bury", gen_length=20)
    assert texts(at.code)[0].startswith("O bury")


def test_the_streamed_text_is_tg_generate_for_the_same_seed(pretrained):
    import textgen_core as tg

    at = press(set_values(generate_page(new_app()), gen_several=True, gen_length=60, gen_seed=7),
               "Generate", gen_temperatures=[0.5, 1.2], gen_prompt="O bury")
    assert not at.exception and not at.error
    bundle = tg.load(pretrained)
    assert shown_texts(at) == [tg.generate(bundle, "O bury", 60, t, seed=7)[0] for t in (0.5, 1.2)]


def test_a_generation_cut_short_keeps_its_text(pretrained):
    # A click during a generation reruns the page, which ends the run inside a redraw; what the
    # stream had made by then is in the session, and the next run keeps it.
    at = generate_page(new_app())
    label = at.selectbox(key="gen_model").value
    at.session_state["gen_running"] = {"model": label, "results": [(0.8, ["Home, ho"])], "prompt": "Home",
                                       "length": 300, "top_k": None, "top_p": 1.0, "seed": 1}
    at = at.run()
    assert not at.exception
    assert shown_texts(at) == ["Home, ho"]
    assert "Stopped before the end: this is the text made until then." in texts(at.caption)
    (saved,) = at.session_state["workspace"].generations()
    assert saved["stopped"] is True and saved["results"] == [[0.8, ["Home, ho"]]]
    assert "gen_running" not in at.session_state


def test_the_last_generations_come_back_in_a_new_session(pretrained):
    at = generate_page(new_app())
    made = []
    for seed in (1, 2, 3):
        at = press(at, "Generate", gen_seed=seed, gen_length=20, gen_prompt=f"Home {seed}")
        made.append(shown_texts(at)[0])
    again = AppTest.from_file(APP, default_timeout=60)   # the same address in a new browser
    again.query_params["w"] = at.session_state["owner"]
    again = generate_page(again.run())
    assert not again.exception
    assert shown_texts(again) == [made[-1]]                  # the last one, as the current result
    (earlier,) = [e for e in again.expander if e.label.startswith("Earlier generations")]
    assert earlier.label == "Earlier generations in this workspace (2)"
    assert [c.value for c in earlier.code] == [made[1], made[0]]   # newest first
    assert all("song-gru-tiny · pretrained" in m.value for m in earlier.markdown)
