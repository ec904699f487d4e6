"""Train page (AppTest): it starts from settings proposed for the corpus and the device, says why, and
explains what the choices mean for this corpus (parameters, epochs, a model big enough to memorise)."""
import pytest
from conftest import shared_corpus

from textgen_core.defaults import propose_settings
from textgen_core.models import PRESETS, ModelConfig, build_model
from ui import state

from app_support import app_env, new_app, plain, set_values, texts, upload  # noqa: F401

pytestmark = pytest.mark.app
SIZES = {"4 KB": ("lyrics_public_domain.txt", 4_000), "100 KB": ("alice.txt", 100_000),
         "1 MB": ("tinyshakespeare.txt", 1_000_000)}
WIDGETS = {"arch": "arch", "preset": "preset", "batch": "batch_size", "seq_len": "seq_len", "lr": "lr",
           "eval_every": "eval_every", "budget_minutes": "max_minutes"}


def text_of(size: str) -> str:
    name, chars = SIZES[size]
    return shared_corpus(name).read_text(encoding="utf-8")[:chars]


def train_page(at):
    at.switch_page("app_pages/train.py")
    return at.run()


def value(at, key: str):
    return at.get_by_key(key).value


@pytest.mark.parametrize("size", SIZES)
def test_the_widgets_start_from_the_settings_proposed_for_the_corpus(app_env, size):
    at = train_page(upload(new_app(), text_of(size).encode(), "corpus.txt"))
    assert not at.exception and not at.error
    chars = at.session_state["corpus"].stats.chars
    proposal = propose_settings(chars, state.device_options()[0])
    proposed = proposal.settings
    for key, setting in WIDGETS.items():
        assert value(at, key) == pytest.approx(proposed[setting]), key
    assert value(at, "dropout") == pytest.approx(proposed["dropout"])
    assert value(at, "weight_decay") == pytest.approx(proposed.get("weight_decay", 0.01))
    assert value(at, "patience") == (proposed.get("patience") or 0)
    assert value(at, "carry_state") == proposed.get("carry_state", False)
    assert value(at, "budget_kind") == "minutes" and value(at, "precision") == proposed["precision"]
    (why,) = at.expander
    assert why.label.startswith(f"Proposed for this corpus ({chars:,} characters)")
    shown = plain(why.markdown[0].value)
    assert all(f"- {reason}" in shown for reason in proposal.reasons)
    (meaning,) = [c for c in texts(at.caption) if "minutes ≈" in c]
    assert meaning.startswith(f"{proposed['max_minutes']:g} minutes ≈ ") and "epochs of this corpus" in meaning


def test_a_new_corpus_proposes_again_and_keeps_what_the_user_changed(app_env):
    at = train_page(upload(new_app(), text_of("4 KB").encode(), "song.txt"))
    assert value(at, "preset") == "tiny" and value(at, "batch") == 16
    at = set_values(at, lr=0.01)
    at.switch_page("app_pages/corpus.py")
    at = train_page(upload(at.run(), text_of("1 MB").encode(), "shakespeare.txt"))
    proposed = propose_settings(at.session_state["corpus"].stats.chars, state.device_options()[0]).settings
    assert (value(at, "preset"), value(at, "batch"), value(at, "eval_every")) == (
        proposed["preset"], proposed["batch_size"], proposed["eval_every"])
    assert value(at, "lr") == pytest.approx(0.01)   # the user's own value stays


def test_presets_show_their_sizes_and_parameters_for_this_corpus(app_env):
    at = train_page(upload(new_app(), text_of("4 KB").encode(), "song.txt"))
    vocab = at.session_state["corpus"].stats.distinct_chars + 1
    options = at.selectbox(key="preset").options
    arch = at.selectbox(key="arch").value          # the proposal's (a GRU on a one-core CPU without bf16)
    for preset, option in zip(PRESETS, options):
        config = ModelConfig.from_preset(arch, preset, vocab)
        count = build_model(config).num_parameters()
        assert option == (f"{preset}: {config.hidden} hidden x {config.layers} layer{'s' * (config.layers > 1)}, "
                          f"{config.embedding}-dim embedding · {count:,} parameters")
    at = set_values(at, arch="lstm" if arch == "gru" else "gru")
    assert at.selectbox(key="preset").options != options   # another architecture, other counts


def test_budgets_say_how_many_epochs_of_this_corpus_they_mean(app_env):
    at = train_page(upload(new_app(), text_of("4 KB").encode(), "song.txt"))
    at = set_values(at, batch=16, seq_len=32, budget_kind="steps", budget_steps=450)
    train_tokens = int(at.session_state["corpus"].stats.chars * 0.9)
    epochs = 450 * 16 * 32 / train_tokens
    assert f"450 steps ≈ {epochs:.1f} epochs of this corpus (16 x 32 tokens a step" in "\n".join(texts(at.caption))
    at = set_values(at, budget_kind="epochs", budget_epochs=2.0)
    assert f"2 epochs ≈ {round(2 * train_tokens / 512):,} steps of 16 x 32 tokens" in "\n".join(texts(at.caption))


def test_a_big_model_on_a_short_text_is_flagged_before_start(app_env):
    at = train_page(upload(new_app(), text_of("4 KB").encode(), "song.txt"))
    assert not at.warning   # the proposed tiny model
    at = set_values(at, preset="large")
    (warning,) = texts(at.warning)
    chars = int(at.session_state["corpus"].stats.chars * 0.9)
    assert warning.startswith("This model has ") and f"parameters for {chars:,} characters of text" in warning
    assert "it can memorise the text. A smaller preset or more dropout generalises better." in warning
    assert [b.disabled for b in at.button if b.label == "Start"] == [False]   # a warning, not a refusal


def test_every_setting_has_a_line_of_help(app_env):
    at = set_values(train_page(upload(new_app(), text_of("4 KB").encode(), "song.txt")), explicit_sizes=True)
    keys = ("arch", "explicit_sizes", "embedding", "hidden", "layers", "dropout", "lr", "weight_decay", "batch",
            "seq_len", "carry_state", "eval_every", "patience", "budget_kind", "budget_minutes", "device",
            "precision", "seed")
    for key in keys:
        help_text = at.get_by_key(key).help
        assert help_text and len(help_text) > 40 and "\n" not in help_text, key
