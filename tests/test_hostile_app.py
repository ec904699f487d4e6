"""Whatever one session sends (AppTest): out-of-range numbers block Start with the engine's message
instead of training with the previous values; broken run.json files, Markdown in names and bad
server settings never break a page."""
import json
import shutil
from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from textgen_core import SamplingOptions, TextgenError, TrainConfig, read_text, sampling
from textgen_core.models import ModelConfig
from ui.text import escape_markdown

from app_support import (  # noqa: F401
    APP,
    SONG,
    app_env,
    click,
    join,
    new_app,
    plain,
    press,
    pretrained,
    set_values,
    texts,
    tiny_settings,
    trained_folder,
    upload,
)

pytestmark = pytest.mark.app
HOSTILE = "**x**[link](javascript:alert(1))_y_.txt"
BROKEN_INFO = {"best_val_loss": "x", "best_val_bpc": "low", "corpus": 5, "parameters": None, "steps": "many",
               "elapsed_s": "long", "best_step": [1], "hardware": 7, "stop_message": {"why": 1},
               "chars_per_token": "wide", "name": 12}


def page(at, name: str):
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def engine_message(check) -> str:
    """What the engine says when ``check()`` refuses a value, as the page shows it."""
    with pytest.raises(TextgenError) as refused:
        check()
    return escape_markdown(refused.value)


def disabled(at, label: str) -> list[bool]:
    return [b.disabled for b in at.button if b.label == label]


# --- out-of-range numbers ----------------------------------------------------------------------
def test_train_settings_out_of_range_block_start_then_the_typed_values_train(app_env):
    at = set_values(page(upload(new_app()), "train"), explicit_sizes=True)
    at = set_values(at, hidden=100_000, lr=1e9, batch=0, seq_len=0)
    assert not at.exception
    (error,) = texts(at.error)
    assert f"**Hidden**: {engine_message(lambda: ModelConfig(hidden=100_000, vocab_size=2).validated())}" in error
    assert f"**Learning rate**: {engine_message(lambda: TrainConfig(lr=1e9).validated())}" in error
    assert f"**Batch size**: {engine_message(lambda: TrainConfig(batch_size=0).validated())}" in error
    assert f"**Sequence length**: {engine_message(lambda: TrainConfig(seq_len=0).validated())}" in error
    assert "from 1 to 8192 (got 100000)" in error  # the range and the value
    assert disabled(at, "Start") == [True] and at.session_state["train_job"] is None
    # values the engine takes (sequence length 1 too) start, and the job trains with exactly them
    at = set_values(at, embedding=16, hidden=32, layers=1, lr=0.004, batch=4, seq_len=1, eval_every=5,
                    budget_kind="steps", budget_steps=5)
    assert not at.error and disabled(at, "Start") == [False]
    at = click(at, "Start")
    job = at.session_state["train_job"]
    join([job])
    assert (job.settings.hidden, job.settings.train.seq_len, job.settings.train.batch_size) == (32, 1, 4)
    assert job.settings.train.lr == 0.004 and job.snapshot().step == 5


def test_compare_settings_out_of_range_block_start(app_env):
    at = set_values(page(upload(new_app()), "compare"), cmp_batch=0, cmp_lr_1=50.0, cmp_steps=-1, cmp_hidden_0=0,
                    cmp_dropout_1=1.5)
    assert not at.exception
    (error,) = texts(at.error)
    assert f"**Batch size**: {engine_message(lambda: TrainConfig(batch_size=0).validated())}" in error
    assert (f"**Learning rate (configuration 2)**: {engine_message(lambda: TrainConfig(lr=50.0).validated())}"
            in error)
    assert f"**Steps each**: {engine_message(lambda: TrainConfig(max_steps=-1).validated())}" in error
    hidden = engine_message(lambda: ModelConfig(hidden=0, vocab_size=2).validated())
    dropout = engine_message(lambda: ModelConfig(dropout=1.5, vocab_size=2).validated())
    assert f"**Hidden (configuration 1)**: {hidden}" in error and f"**Dropout (configuration 2)**: {dropout}" in error
    assert disabled(at, "Start comparison") == [True]
    at = set_values(at, cmp_batch=8, cmp_lr_1=0.003, cmp_steps=10, cmp_hidden_0=64, cmp_dropout_1=0.2)
    assert not at.error and disabled(at, "Start comparison") == [False]


def test_recipe_minutes_out_of_range_block_every_run(app_env):
    at = set_values(page(new_app(), "recipes"), recipe_minutes=0.0)
    assert not at.exception
    (error,) = texts(at.error)
    assert f"**Minutes per run**: {engine_message(lambda: TrainConfig(max_minutes=0.0).validated())}" in error
    assert set(disabled(at, "Run")) == {True}
    at = set_values(at, recipe_minutes=0.5)
    assert not at.error and set(disabled(at, "Run")) == {False}


def test_generate_numbers_out_of_range_block_generate_then_generate(pretrained):
    at = set_values(page(new_app(), "generate"), gen_samples=300, gen_top_k=-1, gen_length=20)
    assert not at.exception
    (error,) = texts(at.error)
    assert f"**Samples**: {engine_message(lambda: SamplingOptions(num_samples=300).validated())}" in error
    assert f"**Top-k (0: off)**: {engine_message(lambda: SamplingOptions(top_k=-1).validated())}" in error
    assert disabled(at, "Generate") == [True]
    at = click(set_values(at, gen_samples=3, gen_seed=-5, gen_top_k=2), "Generate")
    assert not at.exception and not at.error and len(texts(at.code)) == 3


def test_the_prompt_boxes_are_bounded_by_the_engines_cap(pretrained):
    at = page(new_app(), "generate")
    assert at.text_area(key="gen_prompt").proto.max_chars == sampling.MAX_PROMPT_CHARS


@pytest.mark.parametrize("native", [False, True])
def test_precision_offers_bf16_only_where_the_device_computes_it(app_env, monkeypatch, native):
    from textgen_core import devices
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    at = page(upload(new_app()), "train")
    assert not at.exception
    assert ("bf16 autocast" in at.selectbox(key="precision").options) is native


def test_a_remembered_bf16_falls_back_where_the_device_has_none(app_env, monkeypatch):
    from textgen_core import devices
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    at = set_values(page(upload(new_app()), "train"), precision="bf16")
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    at.run()
    # the recommended CPU precision where bf16 does not run: the defaults ask the same engine function
    assert not at.exception and at.selectbox(key="precision").value == "fp32"


# --- broken model folders ----------------------------------------------------------------------
def test_card_rows_format_only_numbers_as_numbers(trained_folder):
    from textgen_core.hub import load_folder
    from ui.models import card_rows, model_summary
    from ui.sampling import tokens_for_chars

    bundle = load_folder(trained_folder)
    for info in (BROKEN_INFO, [1, 2], "text", None):
        broken = replace(bundle, info=info)
        rows = dict(card_rows(broken))
        assert rows["parameters"] == f"{bundle.model.num_parameters():,}"  # from the model itself
        assert not {"corpus", "best validation loss", "best validation bits per char"} & set(rows)
        assert rows.get("stopped because") is None
        assert "bits/char" not in model_summary(broken) and tokens_for_chars(broken, 50) == 50
    rows = dict(card_rows(replace(bundle, info={**bundle.info, "best_step": "x", "hardware": None})))
    assert rows["best validation loss"].endswith("at step ?") and rows["training"].endswith("on ?")


@pytest.mark.parametrize("info", [BROKEN_INFO, [1, 2]], ids=["wrong-types", "not-an-object"])
def test_a_broken_run_json_never_breaks_models_or_generate(pretrained, info):
    (pretrained / "run.json").write_text(json.dumps(info))
    at = page(new_app(), "models")
    assert not at.exception
    if not at.error:  # loaded despite the file (else the engine refused it, with its message)
        shown = plain("\n".join(texts(at.markdown)))
        assert "**parameters:**" in shown and "many" not in shown and "**corpus:**" not in shown
    at = page(at, "generate")
    assert not at.exception
    if not at.error:
        at = press(at, "Generate", gen_length=20, gen_prompt="Home")
        assert not at.exception and texts(at.code)[0].startswith("Home")


# --- names are text, not Markdown --------------------------------------------------------------
def test_escape_markdown_shows_the_name_as_it_is():
    for name in (HOSTILE, "# heading", "1. first", "- item", "a\nb", "$x$ ~y~ `z` <b>", "plain name.txt"):
        escaped = escape_markdown(name)
        assert plain(escaped) == " ".join(name.splitlines())
        assert not any(c in escaped.replace("\\" + c, "") for c in "*[]`_$~<>" if c in name)
    assert escape_markdown("plain name.txt") == "plain name.txt"


def test_an_uploaded_files_name_reaches_markdown_escaped(app_env):
    at = upload(new_app(), name=HOSTILE)
    assert not at.exception and at.session_state["corpus"].name == HOSTILE
    escaped = escape_markdown(HOSTILE)
    assert [h.value for h in at.subheader][0] == escaped
    at = page(at, "train")
    assert any(f"Corpus **{escaped}** (" in c for c in texts(at.caption))
    at = page(at, "compare")
    assert any(f"(**{escaped}**)" in c for c in texts(at.caption))
    first = AppTest.from_file(APP, default_timeout=60)  # the sidebar as a page first draws it
    first.session_state["corpus"] = read_text(SONG.encode(), HOSTILE)
    first.run()
    assert f"**Corpus:** {escaped}  \n" in "\n".join(texts(first.sidebar.markdown))
    for element in ("markdown", "caption", "subheader"):
        assert not any(HOSTILE in e.value for e in getattr(at, element)), element


def test_a_model_folders_name_reaches_markdown_escaped(pretrained):
    name = "**m**[x](javascript:alert(1))"
    shutil.move(pretrained, pretrained.parent / name)
    at = page(new_app(), "models")
    assert not at.exception
    assert [e.label for e in at.expander] == [f"**{escape_markdown(name + ' · pretrained')}**"]


# --- table cells a run does not have -----------------------------------------------------------
def queued_job(name: str, settings=None):
    from textgen_core.jobs import new_job
    return new_job(read_text(SONG.encode(), "song.txt"), settings or tiny_settings(), name=name)


def test_results_tables_show_a_dash_for_missing_values(app_env):
    from textgen_core.recipes import RECIPES

    def recipe_table(job) -> None:
        from textgen_core.recipes import RECIPES
        from ui.recipes import show_runs
        show_runs([job.snapshot()], RECIPES["word-gru-paragraph"])

    item = RECIPES["word-gru-paragraph"]
    at = AppTest.from_function(recipe_table, args=(queued_job(f"{item.name}-reference"),)).run()
    assert not at.exception
    (table,) = at.dataframe
    assert table.proto.placeholder == "–" and table.value["ended by"].isna().all()
    at = new_app()  # the Compare page, with one run that has not started
    at.session_state["compare_jobs"] = [queued_job("gru-tiny-char")]
    at = page(at, "compare")
    assert not at.exception
    (table,) = at.dataframe
    assert table.proto.placeholder == "–" and table.value["parameters"].isna().all()


# --- server settings ---------------------------------------------------------------------------
WHOLE, SECONDS = "a whole number of at least 1", "a number of seconds above 0"


@pytest.mark.parametrize("variable, value, rule", [
    ("TEXTGEN_MAX_JOBS", "0", WHOLE), ("TEXTGEN_MAX_JOBS", "abc", WHOLE),
    ("TEXTGEN_JOB_TIMEOUT_S", "-1", SECONDS), ("TEXTGEN_JOB_TIMEOUT_S", "abc", SECONDS)])
def test_a_bad_server_setting_is_named_and_its_default_used(app_env, monkeypatch, variable, value, rule):
    from textgen_core import registry
    monkeypatch.setattr(registry, "_registry", None)  # made again from the environment below
    monkeypatch.setattr(registry, "_registry_warnings", (), raising=False)
    monkeypatch.setenv(variable, value)
    at = AppTest.from_file(APP, default_timeout=60).run()   # AppTest draws the sidebar on the first run only
    assert not at.exception
    (warning,) = [plain(w.value) for w in at.sidebar.warning]
    assert f"{variable} must be {rule}" in warning and f"(got '{value}')" in warning
    assert "using the default" in warning
    assert any("of 2 training slots in use" in c for c in texts(at.sidebar.caption))
    limits = (registry.get_registry().max_running, registry.get_registry().stale_after_s)
    assert limits == (registry.DEFAULT_MAX_RUNNING, registry.DEFAULT_STALE_AFTER_S)
    at = page(upload(page(at, "corpus")), "train")
    assert not at.exception and disabled(at, "Start") == [False]


def test_good_server_settings_are_used_without_a_warning(monkeypatch):
    from textgen_core import registry
    monkeypatch.setenv("TEXTGEN_MAX_JOBS", " 3 ")
    monkeypatch.setenv("TEXTGEN_JOB_TIMEOUT_S", "12.5")
    assert registry.env_limits() == (3, 12.5, [])
    monkeypatch.setenv("TEXTGEN_JOB_TIMEOUT_S", "nan")
    assert registry.env_limits()[1:] == (registry.DEFAULT_STALE_AFTER_S, [
        "TEXTGEN_JOB_TIMEOUT_S must be a number of seconds above 0 (got 'nan'); using the default, 1800"])
