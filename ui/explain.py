"""Every training setting in plain words: a line of help for each widget, what a size preset is and
how many parameters it has for this corpus, what a budget means in passes over the text, and a
warning when a model is big enough to learn the text by heart. No streamlit here."""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

from textgen_core.memory import count_parameters
from textgen_core.models import ModelConfig

# One line each: what the setting does, and what raising it does.
HELP = {
    "arch": "The kind of network that reads the text. GRU and LSTM read it one character after another and "
            "carry a memory; CNN and attention look at a fixed window of recent text.",
    "preset": "The model's size: embedding, hidden and layers chosen together. Bigger learns more and "
              "remembers more, but trains slower and memorises a short text sooner.",
    "explicit": "Off: pick a size preset. On: set embedding, hidden and layers yourself.",
    "embedding": "How many numbers describe each character or word. More gives tokens richer meanings and "
                 "adds parameters.",
    "hidden": "How many numbers the model keeps in its memory (channels for CNN, width for attention). More "
              "learns more patterns, trains slower, and overfits a short text sooner.",
    "layers": "How many layers are stacked. More lets the model build patterns on patterns; it trains "
              "slower and is harder to train.",
    "dropout": "The share of the model's signals switched off at random while it trains, so that it cannot "
               "lean on memorised details. Raise it when validation loss turns up (overfitting).",
    "lr": "How big a step the model takes on each update. Higher learns faster but can become unstable and "
          "diverge; lower is steadier and slower.",
    "weight_decay": "A gentle pull of every weight towards zero that keeps the model simple. Raise it against "
                    "overfitting; too high and it learns little.",
    "batch": "How many pieces of text the model reads before each update. Bigger gives steadier updates and "
             "uses more memory; each step takes longer.",
    "seq_len": "How many tokens each piece of text is. Longer lets the model learn from further back, and "
               "makes each step slower.",
    "carry_state": "Each row of a batch reads on through its own part of the text, and the model's memory carries "
                   "over from one step to the next (as char-rnn does), so it learns with the long context it has "
                   "when it writes. Off: random pieces, each read from a blank memory.",
    "eval_every": "Steps between checks on the held-out text (a point on the validation curve and a sample). "
                  "Lower draws more points and spends more time checking.",
    "patience": "Stop when this many checks in a row found no better validation loss; 0 trains to the end of "
                "the budget. Lower stops sooner once the model stops improving.",
    "budget_kind": "Count the training time in steps (updates), epochs (passes over the whole text) or "
                   "minutes.",
    "budget": "How long to train; it stops sooner when stopped or by patience. More can learn more, and on a "
              "short text it mostly memorises.",
    "device": "Where the model trains: a GPU is many times faster than the CPU.",
    "precision": "How exactly the numbers are computed. bf16 is about twice as fast where the chip has bf16 "
                 "units, and a little less exact; the weights stay fp32.",
    "seed": "The starting point of every random choice (weights, batches, dropout). The same seed repeats "
            "the same run; another shows how much luck there is.",
    "tokenizer": "How the text is cut into tokens: characters, words or subword pieces (vocabulary sizes as "
                 "on the Corpus page).",
    "compare_budget": "Give every configuration the same number of steps (the same text read), or the same "
                      "minutes (the faster model reads more).",
}

# Parameters per training character above which the page warns that the model can learn the text by
# heart: above the proposal's own choice for a short text (a tiny LSTM on a 4 KB song: about 25), below
# the default CPU model on it (about 240).
MEMORISE_RATIO = 50


@lru_cache(maxsize=256)
def _parameters(arch: str, vocab: int, embedding: int, hidden: int, layers: int, context: int) -> int:
    return count_parameters(ModelConfig(arch=arch, vocab_size=vocab, embedding=embedding, hidden=hidden,
                                        layers=layers, context=context).validated())


def parameters(config: ModelConfig) -> int:
    """The model's parameter count, built on the meta device (nothing allocated), remembered."""
    return _parameters(config.arch, config.vocab_size, config.embedding, config.hidden, config.layers,
                       config.context)


def describe_size(config: ModelConfig) -> str:
    """"256 hidden x 2 layers, 64-dim embedding · 877,250 parameters"."""
    layers = f"{config.layers} layer{'s' if config.layers != 1 else ''}"
    return (f"{config.hidden} hidden x {layers}, {config.embedding}-dim embedding · "
            f"{parameters(config):,} parameters")


def preset_label(arch: str, preset: str, vocab: int) -> str:
    """A size preset as the select box lists it: its sizes and its parameters for this vocabulary."""
    return f"{preset}: {describe_size(ModelConfig.from_preset(arch, preset, vocab))}"


def _epochs(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def budget_text(kind: str, budget: float, batch: int, seq_len: int, train_tokens: float,
                tokens_per_s: Optional[float], proposed_model: bool = True, patience: int = 0) -> Optional[str]:
    """What the budget means for this corpus: its epochs (passes over the ``train_tokens``), and for a
    time budget the speed it assumes (``tokens_per_s``, the proposal's; None: unknown)."""
    per_step = batch * seq_len
    if train_tokens <= 0 or per_step <= 0 or budget <= 0:
        return None
    if kind == "steps":
        text = (f"{int(budget):,} steps ≈ {_epochs(budget * per_step / train_tokens)} epochs of this corpus "
                f"({batch} x {seq_len} tokens a step, {int(train_tokens):,} training tokens)")
    elif kind == "epochs":
        steps = budget * train_tokens / per_step
        text = f"{budget:g} epochs ≈ {max(1, round(steps)):,} steps of {batch} x {seq_len} tokens"
    elif tokens_per_s:
        rate = tokens_per_s / per_step
        caveat = "" if proposed_model else " (the proposed model's speed; other settings train at other speeds)"
        text = (f"{budget:g} minutes ≈ {_epochs(budget * 60 * tokens_per_s / train_tokens)} epochs of this corpus "
                f"at about {rate:{'.1f' if rate < 10 else ',.0f'}} steps a second{caveat}")
    else:
        return None
    if patience > 0:
        text += f"; patience stops it sooner, {patience} evaluations after validation stops improving"
    return text


def size_warning(parameter_count: int, train_chars: int) -> Optional[str]:
    """A warning when the model has far more parameters than the text has characters."""
    if train_chars <= 0 or parameter_count <= MEMORISE_RATIO * train_chars:
        return None
    return (f"This model has {parameter_count:,} parameters for {train_chars:,} characters of text: it can "
            "memorise the text. A smaller preset or more dropout generalises better.")
