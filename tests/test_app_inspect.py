"""Inspect page (AppTest): the surprise heat map and two models compared, the next-token explorer,
and each architecture's inside view (neurons, attention weights, receptive field)."""
import html
import re

import pytest
import torch

import textgen_core as tg
from textgen_core.hub import save_folder
from textgen_core.inspection import surprisal
from textgen_core.inspection.html import shown_piece
from textgen_core.models import ModelConfig, build_model

from app_support import app_env, click, new_app, plotly_specs, pretrained, set_values, trained_folder  # noqa: F401

pytestmark = pytest.mark.app
TEXT = 'Home, home on the range, "where the deer" (and the antelope) play.\nWhere seldom is heard <b>a word</b>.\n'


def inspect_page(at):
    at.switch_page("app_pages/inspect.py")
    return at.run()


def add_model(app_env, arch: str, **sizes) -> str:
    """An untrained model of ``arch`` beside the trained one in pretrained/ (same tokenizer)."""
    tokenizer = tg.load(next((app_env / "pretrained").iterdir())).tokenizer
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, embedding=16, hidden=32, **sizes))
    name = f"song-{arch}"
    save_folder(app_env / "pretrained" / name, model, tokenizer, [], {"name": name}, f"# {name}\n")
    return f"{name} · pretrained"


def htmls(at) -> list[str]:
    return [element.proto.body for element in at.get("html")]


def shown_text(body: str) -> str:
    """The text a heat map shows, as the browser reads it."""
    start = body.index('<div class="tgi-map">')
    return html.unescape(re.sub(r"<[^>]+>", "", body[start:])).replace("↵\n", "\n")


def test_without_a_model_it_says_what_to_do(app_env):
    at = inspect_page(new_app())
    assert not at.exception
    assert any("No model yet" in info.value for info in at.info)
    assert {link.proto.page for link in at.get("page_link")} >= {"train", "models"}


def test_surprise_heat_map_of_a_pasted_text(pretrained):
    at = set_values(inspect_page(new_app()), ins_text=TEXT)
    assert not at.exception and not at.error
    heat_map = next(body for body in htmls(at) if "the model expected:" in body)
    assert shown_text(heat_map) == TEXT                      # every piece escaped, nothing lost
    assert "&lt;" in heat_map                                # (a raw <b> would have been stripped above)
    expected = surprisal(tg.load(pretrained), TEXT)
    assert heat_map.count("the model expected:") == len(expected) - 1
    bits = next(m for m in at.metric if m.label == "Bits per character")
    assert bits.value == f"{expected.bits_per_char:.3f}"


def test_two_models_side_by_side_and_their_difference(pretrained, app_env):
    second = add_model(app_env, "lstm", layers=1)
    at = set_values(inspect_page(new_app()), ins_text=TEXT)
    at = set_values(at, ins_other=second)
    assert not at.exception and not at.error
    maps = [body for body in htmls(at) if "the model expected:" in body]
    assert len(maps) == 2 and maps[0] != maps[1]
    difference = next(body for body in htmls(at) if "song-lstm better by" in body)
    assert "is better by" in difference and shown_text(difference) == TEXT
    assert len([m for m in at.metric if m.label == "Bits per character"]) == 2


def test_next_token_explorer_steps_picks_and_redraws(pretrained):
    at = inspect_page(new_app())
    bundle = tg.load(pretrained)
    at = click(at, "Next 10")
    explorer = at.session_state["ins_explorer"]
    assert explorer.text == tg.generate(bundle, "", length=10, temperature=0.8, seed=1)[0]
    (spec,) = plotly_specs(at)
    bars = spec["data"][0]
    assert "#d62728" in bars["marker"]["color"]              # the sampled token marked
    marked = bars["marker"]["color"].index("#d62728")
    assert bars["text"][marked].startswith("sampled")
    assert bars["x"][marked].startswith(shown_piece(explorer.steps[-1].piece))
    logits = explorer.steps[-1].logits
    at = set_values(at, ins_temperature=1.8)                 # redrawn from the stored logits
    (hot,) = plotly_specs(at)
    assert at.session_state["ins_explorer"] is explorer and explorer.steps[-1].logits is logits
    assert len(explorer.steps) == 10 and hot["data"][0]["y"] != bars["y"]
    assert max(hot["data"][0]["y"]) < max(bars["y"])         # hotter: flatter
    drawn = explorer.steps[-1].token_id
    choices = [c.token_id for c in explorer.top(explorer.distribution(1.8, logits=logits), 12)]
    other = next(i for i in choices if i != drawn)
    at.selectbox(key="ins_pick").set_value(other)
    at = click(at, "Use it instead")
    assert not at.exception and not at.error
    assert len(explorer.steps) == 10 and explorer.steps[-1].picked and explorer.steps[-1].token_id == other
    assert any("picked by hand" in body for body in htmls(at))
    at = click(at, "Take back")
    assert len(explorer.steps) == 9
    at = click(at, "Start again")
    assert at.session_state["ins_explorer"].steps == []


def test_neurons_of_a_gru_with_the_feature_finder(pretrained):
    at = set_values(inspect_page(new_app()), ins_text=TEXT * 3)
    assert not at.exception and not at.error
    (table,) = at.dataframe
    features = list(table.value["feature"])
    assert "inside quotes" in features and "position in the line" in features
    units = at.selectbox(key="ins_unit_choice")
    assert units.options[0].split(":")[0] in features and units.options[-1] == "choose one by hand"
    at = set_values(at, ins_unit_choice="choose one by hand")
    at = set_values(at, ins_unit=5)
    view = next(body for body in htmls(at) if "hidden unit 5:" in body)
    assert shown_text(view) == TEXT * 3


@pytest.mark.parametrize("arch", ["attention", "cnn"])
def test_attention_and_receptive_field_views(pretrained, app_env, arch):
    name = add_model(app_env, arch, layers=2, context=16)
    at = set_values(inspect_page(new_app()), ins_model=name)
    at = set_values(at, ins_text=TEXT)
    assert not at.exception and not at.error
    at = set_values(at, ins_position=40)
    marked = [body for body in htmls(at) if "tgi-here" in body.split("</style>", 1)[-1]]
    assert len(marked) == 1 and shown_text(marked[0]) == TEXT[:41]
    tab = {"attention": "Attention", "cnn": "Receptive field"}[arch]
    assert tab in [t.label for t in at.tabs]
    if arch == "attention":
        at = set_values(at, ins_head=1, ins_block=1)
        assert not at.exception and any("tokens back)" in body for body in htmls(at))
    else:
        assert any("outside the receptive field" in body for body in htmls(at))


def test_a_corpus_excerpt_and_a_generated_sample(pretrained, app_env, monkeypatch):
    corpora = app_env / "corpora"
    corpora.mkdir()
    (corpora / "prairie.txt").write_text("O bury me not on the lone prairie.\n" * 80)
    monkeypatch.setenv("TEXTGEN_DATA_DIR", str(corpora))
    at = set_values(inspect_page(new_app()), ins_source="A corpus excerpt")
    at = set_values(at, ins_start=35, ins_length=70)
    assert not at.exception and at.selectbox(key="ins_corpus").value == "prairie"
    heat_map = next(body for body in htmls(at) if "the model expected:" in body)
    assert shown_text(heat_map) == ("O bury me not on the lone prairie.\n" * 3)[:70]
    at = set_values(at, ins_source="A generated sample")
    assert any("No sample yet" in c.value for c in at.caption)
    at = click(at, "Sample a text from this model")
    assert not at.exception and not at.error
    sample = tg.generate(tg.load(pretrained), "", length=400, temperature=0.8, seed=1)[0]
    heat_map = next(body for body in htmls(at) if "the model expected:" in body)
    assert shown_text(heat_map) == sample
