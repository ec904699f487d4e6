"""Bad input in the app (AppTest): every odd upload, setting and sampling extreme gets a clear
message or a correct result, never an exception, and what the session had before stays usable."""
import pytest

from app_support import (  # noqa: F401
    SONG,
    all_text,
    app_env,
    click,
    join,
    new_app,
    press,
    pretrained,
    set_values,
    shown_texts,
    texts,
    tiny_settings,
    trained_folder,
    upload,
)

pytestmark = pytest.mark.app
TINY = dict(preset="tiny", batch=8, seq_len=32, eval_every=5, patience=0, budget_kind="steps", budget_steps=20)
MIXED = "Emoji 🙂🎸, 中文歌词 and العربية, e\u0301 combining marks.\n"

REFUSED = {
    "empty": (b"", "is empty (0 bytes)"),
    "whitespace": (b" \n\t \r\n  \n", "contains only whitespace"),
    "one-char": (b"a", "has only 1 characters"),
    "binary-nul": (bytes(range(256)) * 8, "looks like a binary file"),
}


def page(at, name: str):
    at.switch_page(f"app_pages/{name}.py")
    return at.run()


def metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


# --- Corpus page -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", REFUSED)
def test_a_refused_upload_keeps_the_corpus_loaded_before(app_env, name):
    at = upload(new_app())
    at = upload(at, REFUSED[name][0], f"{name}.txt")
    assert not at.exception
    (error,) = texts(at.error)
    assert REFUSED[name][1] in error and f"{name}.txt" in error
    assert "song.txt, is still in use" in error
    assert at.session_state["corpus"].name == "song.txt"
    assert metrics(at)["characters"] == f"{len(SONG):,}"  # the page still shows the kept corpus
    at = page(at, "train")
    assert not at.exception and "Corpus **song.txt**" in all_text(at)
    assert [b.disabled for b in at.button if b.label == "Start"] == [False]


def test_the_kept_corpus_still_trains(app_env):
    at = upload(upload(new_app()), b"", "empty.txt")
    at = click(set_values(page(at, "train"), **{**TINY, "budget_steps": 10}), "Start")
    assert not at.exception and not at.error
    join([at.session_state["train_job"]])
    at.run()
    assert any("reached the step budget (10 steps)" in t for t in texts(at.success))


def test_a_first_refused_upload_says_so_without_a_corpus(app_env):
    at = upload(new_app(), b"a", "one.txt")
    assert not at.exception and at.session_state["corpus"] is None
    (error,) = texts(at.error)
    assert "has only 1 characters" in error and "still in use" not in error


ACCEPTED = {
    "utf16-bom": (("Lyrics line one\nAnd line two\n" * 20).encode("utf-16"), "utf-16", "Lyrics line one"),
    "cp1252": (("Caf\xe9 \u201cquoted\u201d r\xe9sum\xe9 \u2014 na\xefve\n" * 20).encode("cp1252"), "cp1252",
               "Café “quoted” résumé — naïve"),
    "crlf-and-cr": (b"first line\r\nsecond line\rthird line\n" * 20, "utf-8", "first line\nsecond line\nthird"),
    "mixed-scripts": ((MIXED * 10).encode(), "utf-8", "🙂🎸, 中文歌词 and العربية, e\u0301"),
    "huge-single-line": (("one very long line without any break " * 50_000).encode(), "utf-8", "one very long"),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_odd_but_valid_uploads_are_decoded(app_env, name):
    data, encoding, shown = ACCEPTED[name]
    at = upload(new_app(), data, f"{name}.txt")
    assert not at.exception and not at.error
    corpus = at.session_state["corpus"]
    assert corpus.encoding.startswith(encoding) and "\r" not in corpus.text and "\ufeff" not in corpus.text
    assert metrics(at)["characters"] == f"{len(corpus.text):,}"
    assert shown in at.code[0].value  # the preview
    assert "characters per token" in all_text(at)  # the tokenizer preview ran


def test_line_endings_are_counted_after_normalising(app_env):
    at = upload(new_app(), ACCEPTED["crlf-and-cr"][0], "crlf.txt")
    assert metrics(at)["lines"] == "60"


@pytest.mark.parametrize("tokenizer", ["word", "sentencepiece"])
def test_other_tokenizers_on_mixed_scripts_and_one_huge_line(app_env, tokenizer):
    for name in ("mixed-scripts", "huge-single-line"):
        at = upload(new_app(), ACCEPTED[name][0], f"{name}.txt")
        at = set_values(at, tokenizer=tokenizer)
        if tokenizer == "sentencepiece":
            at = set_values(at, vocab_sp=100)
        assert not at.exception, name
        assert at.error or "characters per token" in all_text(at), name


def test_text_shorter_than_one_window_ends_with_a_clear_message(app_env):
    at = upload(new_app(), ("a short poem about the sea and the sky and the land " * 5).encode(), "short.txt")
    assert not at.error
    at = click(set_values(page(at, "train"), **{**TINY, "seq_len": 2048}), "Start")
    job = at.session_state["train_job"]
    if job is not None:  # refused in the training thread: the job ends failed, with the reason
        join([job])
        at.run()
    assert not at.exception
    (error,) = texts(at.error)
    assert "too few for windows of 2048 tokens" in error and "shorter sequence length" in error


# --- Train page --------------------------------------------------------------------------------
POSITIVE = ("embedding", "hidden", "layers", "lr", "batch", "seq_len", "eval_every", "budget_steps")


def start_disabled(at, label: str = "Start") -> bool:
    (button,) = [b for b in at.button if b.label == label]
    return button.disabled


def test_numeric_settings_cannot_be_zero_or_negative(app_env):
    """The fields have no widget bounds (a browser keeps the old value of a field out of its bounds,
    silently): the engine's validators refuse a bad value, the page names it, and Start stays off."""
    at = set_values(page(upload(new_app()), "train"), explicit_sizes=True)
    at = set_values(at, embedding=0, hidden=-1, layers=0, lr=-1.0, batch=0, seq_len=-5, eval_every=0,
                    budget_kind="steps", budget_steps=0, patience=-1)
    assert not at.exception
    (error,) = texts(at.error)
    for label in ("Embedding", "Hidden", "Layers", "Learning rate", "Batch size", "Sequence length",
                  "Evaluate every (steps)", "Budget (steps)", "Patience (evaluations)"):
        assert f"**{label}**" in error, label
    assert "embedding must be a whole number from 1 to 8192 (got 0)" in error
    assert "seq len must be a whole number from 1 to 1000000 (got -5)" in error
    assert start_disabled(at) and at.session_state["train_job"] is None
    for kind in ("epochs", "minutes"):
        at = set_values(set_values(at, budget_kind=kind), **{f"budget_{kind}": 0.0})
        assert f"**Budget ({kind})**" in texts(at.error)[0] and "must be above 0 (got 0.0)" in texts(at.error)[0]
    at = set_values(at, patience=0, seed=0)  # 0 is meaningful here: no early stopping, seed 0
    assert "Patience" not in texts(at.error)[0] and "Seed" not in texts(at.error)[0]


@pytest.mark.parametrize("eval_every, kept", [(5, True), (50, False)])
def test_a_diverging_learning_rate_ends_with_a_clear_message(app_env, eval_every, kept):
    settings = {**TINY, "arch": "gru", "eval_every": eval_every, "budget_steps": 200, "lr": 1.0,  # a GRU blows up
                "dropout": 0.1, "weight_decay": 0.01}                                        # at lr 1 (after step 5)
    at = click(set_values(page(upload(new_app()), "train"), **settings), "Start")
    job = at.session_state["train_job"]
    join([job])
    at.run()
    assert not at.exception
    snap = job.snapshot()
    assert snap.step < 200 and snap.end.reason == "diverged"
    if kept:  # the best weights before the blow-up are saved and offered for download
        (warning,) = texts(at.warning)
        assert "training diverged at step" in warning and "kept the best weights" in warning
        assert "Lower the learning rate (now 1)" in warning
        assert job.bundle is not None and job.bundle.info["best_step"] == snap.best["step"] < snap.step
        assert [d.proto.label for d in at.get("download_button")] == ["Download the model (.zip)"]
    else:     # diverged before the first evaluation: nothing to keep, and it says so
        (error,) = texts(at.error)
        assert "training diverged at step" in error and "nothing was kept" in error
        assert "Lower the learning rate (now 1)" in error and job.bundle is None


def test_a_model_too_big_for_the_memory_is_refused_before_starting(app_env, monkeypatch):
    from textgen_core import memory
    monkeypatch.setattr(memory, "free_memory_bytes", lambda device: 200_000_000)
    at = set_values(page(upload(new_app()), "train"), explicit_sizes=True)
    at = set_values(at, hidden=4096, layers=16)  # refused before Start is pressed: Start is off
    assert not at.exception and at.session_state["train_job"] is None and start_disabled(at)
    (error,) = texts(at.error)
    assert "needs about" in error and "more than the 0.2 GB free" in error
    at = set_values(at, hidden=256, layers=1, batch=1024, seq_len=2048)
    assert "with batches of 1024 x 2048 tokens needs about" in texts(at.error)[0] and start_disabled(at)
    tiny = {k: v for k, v in TINY.items() if k != "preset"}
    at = click(set_values(at, **{**tiny, "budget_steps": 10}, embedding=16, hidden=64, layers=1), "Start")
    assert not at.error and at.session_state["train_job"] is not None
    join([at.session_state["train_job"]])


# --- Generate page -----------------------------------------------------------------------------
EXTREMES = {
    "greedy": dict(gen_temperature=0.0),
    "hottest": dict(gen_temperature=2.0),
    "top-p-min": dict(gen_top_p=0.05),
    "top-p-off": dict(gen_top_p=1.0),
    "top-k-above-vocab": dict(gen_top_k=100_000),
    "top-k-one": dict(gen_top_k=1),
    "shortest": dict(gen_length=10),
    "longest": dict(gen_length=2000),
    "unseen-characters": dict(gen_prompt="Ωж 🙂 中文 «¿»"),
    "empty-prompt": dict(gen_prompt=""),
}


@pytest.mark.parametrize("name", EXTREMES)
def test_sampling_extremes_give_text(pretrained, name):
    values = {"gen_prompt": "Home", "gen_length": 40, **EXTREMES[name]}
    at = press(page(new_app(), "generate"), "Generate", **values)
    assert not at.exception and not at.error
    (text,) = texts(at.code)
    assert text.startswith(values["gen_prompt"]) and len(text) > len(values["gen_prompt"])


def test_greedy_ignores_the_seed(pretrained):
    at = set_values(page(new_app(), "generate"), gen_temperature=0.0, gen_length=30, gen_seed=1)
    first = texts(click(at, "Generate").code)
    at = click(set_values(at, gen_seed=99), "Generate")
    assert shown_texts(at) == first


def test_sampling_numbers_out_of_range_block_generate(pretrained):
    at = page(new_app(), "generate")
    assert at.slider(key="gen_temperature").min == 0 and at.slider(key="gen_top_p").min > 0
    assert at.slider(key="gen_length").min >= 1
    at = set_values(at, gen_top_k=-3, gen_samples=0, gen_seed=-1)
    assert not at.exception
    (error,) = texts(at.error)
    assert "**Top-k (0: off)**: top-k must be a whole number of at least 1 (got -3)" in error
    assert "**Samples**: number of samples must be from 1 to 256 (got 0)" in error
    assert "Seed" not in error  # any 64-bit seed is a seed
    assert start_disabled(at, "Generate") and not at.code


def test_no_temperature_chosen_disables_generate(pretrained):
    at = set_values(page(new_app(), "generate"), gen_several=True)
    at = set_values(at, gen_temperatures=[])
    assert not at.exception
    assert [b.disabled for b in at.button if b.label == "Generate"] == [True]
    assert "Choose at least one temperature." in texts(at.caption)


def test_a_word_model_takes_unseen_words(app_env):
    from dataclasses import replace

    from textgen_core import read_text, train_model

    settings = replace(tiny_settings(10), tokenizer="word")
    train_model(read_text(SONG.encode(), "song.txt"), settings, app_env / "pretrained" / "song-word")
    at = press(page(new_app(), "generate"), "Generate", gen_prompt="Zebras xylophone quietly", gen_length=15)
    assert not at.exception and not at.error
    (text,) = texts(at.code)
    assert text.startswith("Zebras xylophone quietly") and len(text.split()) > 3
