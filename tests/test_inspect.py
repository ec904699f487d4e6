"""Inside the model: surprisal, the step-by-step explorer, RNN unit activations and the feature finder,
attention weights and receptive fields, the HTML heat maps and the `surprisal` command."""
from __future__ import annotations

import html
import random
import re

import pytest
import torch
import torch.nn.functional as F

import textgen_core as tg
from textgen_core import ConfigError, SamplingOptions
from textgen_core.hub import Bundle, save_folder
from textgen_core.inspection import (
    Explorer,
    activations,
    attention_from,
    find_units,
    influence,
    surprisal,
    visible_offsets,
)
from textgen_core.inspection import surprise as surprise_module
from textgen_core.inspection.attention_map import attention_matrix
from textgen_core.inspection.features import char_features, correlations
from textgen_core.inspection.html import difference_html, document, surprisal_html
from textgen_core.models import ModelConfig, build_model
from textgen_core.models.attention import window_bias
from textgen_core.sampling import next_token_probs
from textgen_core.tokenizers import make_tokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. \"Quoth the raven\", said he (twice).\n"
        "A stitch in time saves nine; the early bird catches the worm.\n"
        "All that glitters is not gold, and still waters run deep.\n") * 6
SIZES = {"gru": dict(hidden=32, layers=2), "lstm": dict(hidden=32, layers=2),
         "cnn": dict(hidden=32, layers=3, context=16), "attention": dict(hidden=32, layers=2, context=16)}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tokenizer_for(kind: str, text: str = TEXT):
    vocab = {"char": None, "word": 60, "sentencepiece": 300}[kind]
    return make_tokenizer(kind, vocab).fit(text)


def bundle_for(arch: str, kind: str = "char", seed: int = 0, text: str = TEXT) -> Bundle:
    """An untrained model (its random predictions are as good as any for exact comparisons); dropout
    is on, so that a pass in training mode would show."""
    tokenizer = tokenizer_for(kind, text)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, embedding=16, dropout=0.1,
                                    **SIZES[arch]))
    return Bundle(model=model, tokenizer=tokenizer, info={"name": f"{arch}-{kind}"})


# --- surprisal --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["gru", "lstm", "cnn", "attention"])
@pytest.mark.parametrize("kind", ["char", "word", "sentencepiece"])
def test_summed_surprisal_is_evaluates_total_loss(arch, kind):
    bundle = bundle_for(arch, kind)
    text = TEXT + "Zyzzyva and ünïcödé 日本 are unknown here."
    result = surprisal(bundle, text)
    scores = tg.evaluate(bundle, text)          # one stream for a text this short: the same reading
    assert scores["tokens"] == len(result) - 1
    assert result.total_nats == pytest.approx(scores["loss"] * scores["tokens"], rel=1e-4)
    assert bundle.model.training                # put back as it was


@pytest.mark.parametrize("kind", ["char", "word", "sentencepiece"])
def test_pieces_and_offsets_cover_the_text(kind):
    bundle = bundle_for("gru", kind)
    text = "Zyzzyva said \"日本\" <b>twice</b>\n" + TEXT[:200]
    result = surprisal(bundle, text)
    assert len(result) == len(bundle.tokenizer.encode(text))
    assert result.text == text
    records = list(result)
    assert "".join(r.piece for r in records) == text
    for record in records:
        assert text[record.offset:record.offset + len(record.piece)] == record.piece
    if kind == "word":      # an unknown word shows as itself, not as <unk>
        assert records[0].piece == "Zyzzyva" and records[0].token_id == bundle.tokenizer.unk_id
    if kind == "sentencepiece":   # byte fallback: the character goes to its first byte, the rest are empty
        nichi = next(r for r in records if "日" in r.piece)
        assert nichi.piece == "日" and records[nichi.index + 1].piece == "" and \
            records[nichi.index + 1].offset == nichi.offset + 1


def test_the_first_token_has_no_prediction_and_bits_per_char_counts_the_rest():
    result = surprisal(bundle_for("lstm"), TEXT)
    first = result[0]
    assert first.nats is None and first.bits is None and first.top == ()
    assert all(r.nats is not None and r.nats >= 0 for r in list(result)[1:])
    assert result.predicted_chars == len(TEXT) - 1
    assert result.bits_per_char == pytest.approx(result.total_bits / (len(TEXT) - 1))
    assert result[-1] == result[len(result) - 1]
    with pytest.raises(IndexError):
        result[len(result)]


@pytest.mark.parametrize("arch", ["lstm", "attention"])
def test_top_k_is_the_samplers_distribution_at_temperature_one(arch):
    bundle = bundle_for(arch)
    result = surprisal(bundle, TEXT[:300], k=5)
    model = bundle.model.eval()
    for index in (1, 17, 150, 299):
        with torch.no_grad():    # the prefix read from scratch: the prediction for token `index`
            logits, _ = model(result.ids[:index][None])
        probs = next_token_probs(logits[:, -1], 1.0, None, None)[0]
        expected = torch.topk(probs, 5)
        record = result[index]
        assert [p for p, _ in record.top] == bundle.tokenizer.token_strings(expected.indices.tolist())
        assert torch.allclose(torch.tensor([p for _, p in record.top]), expected.values, atol=1e-5)
        assert record.nats == pytest.approx(-probs[result.ids[index]].log().item(), abs=1e-4)


@pytest.mark.parametrize("arch", ["gru", "cnn", "attention"])
def test_a_long_text_read_in_parallel_streams_matches_one_stream(arch, monkeypatch):
    bundle = bundle_for(arch, seed=1)
    text = (TEXT * 30)[:20_000]              # over SINGLE_STREAM_TOKENS: streams with a warm-up
    reads = []
    read = surprise_module.read
    monkeypatch.setattr(surprise_module, "read", lambda *a, **k: (reads.append(a[1].shape), read(*a, **k))[1])
    streamed = surprisal(bundle, text)
    assert len(reads) == 2 and reads[0][0] > 1   # warm-ups and the rest, all streams at once: none read again
    assert surprise_module.stream_layout(len(text) - 1, surprise_module.stream_warmup(bundle.model))[0] > 1
    monkeypatch.setattr(surprise_module, "SINGLE_STREAM_TOKENS", 10**9)
    single = surprisal(bundle, text)
    assert torch.allclose(streamed.nats[1:], single.nats[1:], atol=1e-4)
    assert torch.equal(streamed.top_ids[1:, 0], single.top_ids[1:, 0])


def test_a_model_that_never_forgets_has_its_streams_read_again(monkeypatch):
    """An LSTM whose forget gates stay open carries its whole past in its cells: a warmed-up stream
    cannot catch up with it, so the check between streams must send them back to the true state."""
    bundle = bundle_for("lstm", seed=3)
    rnn, hidden = bundle.model.rnn, 32
    with torch.no_grad():
        for layer in range(2):
            getattr(rnn, f"bias_ih_l{layer}")[hidden:2 * hidden] = 30.0       # forget gate: always 1
            getattr(rnn, f"weight_ih_l{layer}")[2 * hidden:3 * hidden] *= 0.05  # small steps: no saturation
    text = (TEXT * 30)[:20_000]
    monkeypatch.setattr(surprise_module, "SINGLE_STREAM_TOKENS", 10**9)
    single = surprisal(bundle, text)
    monkeypatch.setattr(surprise_module, "SINGLE_STREAM_TOKENS", 16_384)
    checked = surprisal(bundle, text)
    # rounding differences between batch sizes grow in cells that never forget: 1e-2, not 1e-5
    assert (checked.nats[1:] - single.nats[1:]).abs().max() < 1e-2
    monkeypatch.setattr(surprise_module, "STATE_TOLERANCE", float("inf"))    # without the check
    unchecked = surprisal(bundle, text)
    assert (unchecked.nats[1:] - single.nats[1:]).abs().max() > 0.1


def test_stream_layout_tiles_the_text_once():
    for predictions, warmup in ((20_000, 1024), (100_000, 127), (16_385, 508), (65_537, 1)):
        streams, segment = surprise_module.stream_layout(predictions, warmup)
        assert streams > 1 and streams * segment + warmup >= predictions
        assert (streams - 1) * segment + warmup < predictions    # no stream is all padding


def test_surprisal_refuses_what_it_cannot_score():
    bundle = bundle_for("gru")
    for text, k in (("T", 5), ("", 5), (b"bytes", 5), (TEXT, 0), (TEXT, 51), (TEXT, True)):
        with pytest.raises(ConfigError):
            surprisal(bundle, text, k)


# --- HTML ------------------------------------------------------------------------------------
def test_heat_map_escapes_every_piece_and_tooltip():
    bundle = bundle_for("gru")
    text = 'a <script>alert("x")</script> & \'quotes\'\n' + TEXT[:100]
    result = surprisal(bundle, text)
    page = document("t", surprisal_html(result))
    assert "<script" not in page and "&lt;" in page and "&quot;" in page and "&#x27;" in page
    heat_map = page[page.index('<div class="tgi-map">'):page.rindex("</div>")]
    shown = html.unescape(re.sub(r"<[^>]+>", "", heat_map)).replace("↵\n", "\n")
    assert shown == text          # every character escaped: none was taken for markup
    assert page.count('class="tgi-t') == len(result)              # one span per token (char tokens)
    assert page.count("the model expected:") == len(result) - 1   # every predicted token has its top 5
    assert "nothing read yet" in page


def test_difference_map_says_where_each_model_wins():
    text = TEXT[:400]
    a = surprisal(bundle_for("gru", seed=1), text)
    same = difference_html(a, surprisal(bundle_for("gru", seed=1), text))
    assert "is better by" not in same and "a tie" in same
    other = surprisal(bundle_for("gru", "word", seed=2), text)   # another tokenizer: compared per character
    diff = difference_html(a, other, names=("char", "word"))
    assert "char is better by" in diff and "word is better by" in diff
    with pytest.raises(ValueError):
        difference_html(a, surprisal(bundle_for("gru"), text + "x"))


# --- the command line ------------------------------------------------------------------------
def test_cli_writes_a_self_contained_heat_map(tmp_path, capsys):
    from textgen_core.cli import main

    bundle = bundle_for("gru")
    folder = save_folder(tmp_path / "model", bundle.model, bundle.tokenizer, [], {"name": "tiny"}, "# tiny\n")
    corpus = tmp_path / "poem.txt"
    corpus.write_text(TEXT[:500])
    out = tmp_path / "map.html"
    assert main(["surprisal", str(folder), str(corpus), "--html", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = surprisal(tg.load(folder), TEXT[:500]).bits_per_char
    assert printed.startswith(f"{expected:.4f} bits/char")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    assert page.count('class="tgi-t') == 500


@pytest.mark.parametrize("args", [["{model}", "{missing}"], ["{model}", "{corpus}", "--html", "{nowhere}"],
                                  ["{model}", "{corpus}", "--top-k", "0"], ["{nomodel}", "{corpus}"]])
def test_cli_errors_exit_2_with_one_error_line(args, tmp_path, capsys):
    from textgen_core.cli import main

    bundle = bundle_for("gru")
    folder = save_folder(tmp_path / "model", bundle.model, bundle.tokenizer, [], {}, "# tiny\n")
    corpus = tmp_path / "poem.txt"
    corpus.write_text(TEXT[:200])
    paths = dict(model=folder, missing=tmp_path / "missing.txt", corpus=corpus, nowhere=tmp_path / "no" / "map.html",
                 nomodel=tmp_path / "nomodel")
    assert main(["surprisal", *[a.format(**paths) for a in args]]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in errors[0]
    assert not (tmp_path / "no").exists()


# --- the explorer ----------------------------------------------------------------------------
@pytest.mark.parametrize("arch,kind", [("gru", "char"), ("lstm", "word"), ("attention", "sentencepiece"),
                                       ("cnn", "char")])
@pytest.mark.parametrize("settings", [dict(temperature=0.9), dict(temperature=1.3, top_k=7),
                                      dict(temperature=0.7, top_p=0.8), dict(temperature=0)])
def test_explorer_samples_what_generate_samples(arch, kind, settings):
    bundle = bundle_for(arch, kind)
    options = SamplingOptions(length=30, seed=7, **settings)
    explorer = Explorer(bundle, "The quick", seed=7)
    explorer.run(options, 30)
    assert explorer.text == tg.generate(bundle, "The quick", length=30, seed=7, **settings)[0]


def test_a_picked_token_changes_the_text_and_replays_exactly():
    bundle = bundle_for("gru")
    options = SamplingOptions(temperature=1.0)
    free = Explorer(bundle, "The", seed=3)
    free.run(options, 12)
    explorer = Explorer(bundle, "The", seed=3)
    explorer.run(options, 4)
    drawn = free.steps[4].token_id
    pick = next(i for i in range(2, bundle.tokenizer.vocab_size) if i != drawn)
    step = explorer.step(options, pick=pick)
    assert step.picked and step.token_id == pick
    explorer.run(options, 7)
    assert explorer.generated_ids[:4] == free.generated_ids[:4] and explorer.text != free.text
    again = Explorer.replay(bundle, "The", 3, explorer.moves)
    assert again.text == explorer.text and again.generated_ids == explorer.generated_ids


def test_undo_restores_the_state_and_the_generator():
    bundle = bundle_for("lstm")
    options = SamplingOptions(temperature=1.2)
    explorer = Explorer(bundle, "A stitch", seed=11)
    explorer.run(options, 5)
    before = explorer.logits.clone()
    first = explorer.step(options)
    explorer.undo()
    assert torch.equal(explorer.logits, before) and len(explorer.steps) == 5
    assert explorer.step(options).token_id == first.token_id
    while explorer.can_undo:
        explorer.undo()
    with pytest.raises(ConfigError):
        explorer.undo()


def test_distributions_come_from_stored_logits_and_each_step_feeds_one_token():
    bundle = bundle_for("attention")
    model = bundle.model
    fed = []
    forward = model.forward
    model.forward = lambda ids, state=None: (fed.append(tuple(ids.shape)), forward(ids, state))[1]
    explorer = Explorer(bundle, "The quick brown", seed=5)
    explorer.run(SamplingOptions(temperature=0.8), 6)
    assert fed[0] == (1, len(bundle.tokenizer.encode("The quick brown"))) and fed[1:] == [(1, 1)] * 6
    model.forward = lambda *a, **k: pytest.fail("the model ran to redraw a distribution")
    with torch.no_grad():   # the same distributions as a fresh read of the whole text
        model.eval()
        logits, _ = forward(torch.tensor([explorer.prompt_ids + explorer.generated_ids]))
    for temperature, top_k, top_p in ((1.0, None, None), (0.5, 5, None), (1.7, None, 0.9)):
        probs = explorer.distribution(temperature, top_k, top_p)
        masked = logits[0, -1].masked_fill(explorer.banned, float("-inf"))
        expected = next_token_probs(masked[None], temperature, top_k, top_p)[0]
        assert torch.allclose(probs, expected, atol=1e-5)
        assert probs[bundle.tokenizer.unk_id] == 0
    greedy = explorer.distribution(0)
    assert greedy.max() == 1 and greedy.sum() == 1
    past = explorer.distribution(1.0, logits=explorer.steps[2].logits)
    assert past.shape == probs.shape and not torch.allclose(past, explorer.distribution(1.0))


def test_explorer_refuses_bad_picks_and_names_tokens():
    explorer = Explorer(bundle_for("gru"), "The", seed=1)
    for pick in (-1, 10**6, 1.5, True):
        with pytest.raises(ConfigError):
            explorer.step(pick=pick)
    assert explorer.piece(explorer.token_id("e")) == "e"
    with pytest.raises(ConfigError):
        explorer.token_id("ee")
    top = explorer.top(explorer.distribution(1.0), 5, always=explorer.token_id("Q"))
    assert len(top) == 6 and top[-1].piece == "Q" and top[0].probability >= top[1].probability


# --- activations and the finder --------------------------------------------------------------
def test_lstm_layer_states_match_the_module_and_lstm_cell():
    bundle = bundle_for("lstm")
    model = bundle.model.eval()
    acts = activations(bundle, TEXT[:300])
    with torch.no_grad():
        x = model.embed(acts.ids[None])
        out, (h_n, c_n) = model.rnn(x)
    top = model.config.layers - 1
    assert torch.allclose(acts.values[(top, "hidden")], out[0], atol=1e-5)
    for layer in range(model.config.layers):
        assert torch.allclose(acts.values[(layer, "hidden")][-1], h_n[layer, 0], atol=1e-5)
        assert torch.allclose(acts.values[(layer, "cell")][-1], c_n[layer, 0], atol=1e-5)
    cell = torch.nn.LSTMCell(16, 32)    # layer 0 step by step, with the module's own weights
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.rnn, f"{name}_l0"))
        h = c = torch.zeros(1, 32)
        for t in range(len(acts.ids)):
            h, c = cell(x[:, t], (h, c))
            assert torch.allclose(h[0], acts.values[(0, "hidden")][t], atol=1e-5)
            assert torch.allclose(c[0], acts.values[(0, "cell")][t], atol=1e-5)
    assert acts.unit(0, "cell", 3).shape == (len(acts.ids),)


def test_gru_layer_states_match_the_module_and_gru_cell():
    bundle = bundle_for("gru", "word")
    model = bundle.model.eval()
    acts = activations(bundle, TEXT[:300])
    assert acts.kinds == ("hidden",) and acts.layers == 2
    with torch.no_grad():
        x = model.embed(acts.ids[None])
        out, h_n = model.rnn(x)
        cell = torch.nn.GRUCell(16, 32)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.rnn, f"{name}_l0"))
        h = torch.zeros(1, 32)
        for t in range(len(acts.ids)):
            h = cell(x[:, t], h)
            assert torch.allclose(h[0], acts.values[(0, "hidden")][t], atol=1e-5)
    assert torch.allclose(acts.values[(1, "hidden")], out[0], atol=1e-5)
    with pytest.raises(ConfigError):
        acts.unit(0, "cell", 0)
    with pytest.raises(ConfigError):
        activations(bundle_for("cnn"), TEXT)


def test_char_features_follow_quotes_brackets_lines_and_words():
    text = 'ab "cd" (e)\nf'
    features = char_features(text)
    assert features["inside quotes"].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert features["inside brackets"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert features["position in the line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0]
    assert features["start of a word"].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1]
    assert features["after a newline"].tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    values = torch.stack([features["inside quotes"], -2 * features["inside quotes"] + 1,
                          torch.zeros(len(text))], dim=1)
    assert correlations(values, features["inside quotes"]).tolist() == pytest.approx([1, -1, 0])


def quoted_text(rng: random.Random, lines: int) -> str:
    """Lower-case words, with upper-case words between quotes: a model must remember whether a quote
    is open to guess the case of the next letter."""
    out = []
    for _ in range(lines):
        words = []
        for _ in range(rng.randint(4, 9)):
            if rng.random() < 0.3:
                inner = " ".join("".join(rng.choice("ABCDEFGH") for _ in range(rng.randint(2, 5)))
                                 for _ in range(rng.randint(1, 4)))
                words.append(f'"{inner}"')
            else:
                words.append("".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 5))))
        out.append(" ".join(words))
    return "\n".join(out) + "\n"


def test_the_finder_recovers_a_planted_quote_unit():
    rng = random.Random(0)
    train_text, probe_text = quoted_text(rng, 600), quoted_text(rng, 40)
    tokenizer = make_tokenizer("char").fit(train_text)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="lstm", vocab_size=tokenizer.vocab_size, embedding=16, hidden=32,
                                    layers=1, dropout=0.0))
    ids = torch.tensor(tokenizer.encode(train_text))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):   # a few seconds: enough to learn the case rule
        starts = torch.randint(0, len(ids) - 65, (32,), generator=generator)
        window = ids[starts[:, None] + torch.arange(65)]
        logits, _ = model(window[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    found = find_units(activations(Bundle(model, tokenizer), probe_text))
    best = found["inside quotes"][0]
    assert abs(best.correlation) > 0.8, found["inside quotes"]
    assert "inside brackets" not in found       # no brackets in the text: nothing to follow
    assert best.label.startswith("layer 0 ")


# --- attention and receptive fields ---------------------------------------------------------
def test_attention_weights_are_the_ones_the_block_applies():
    bundle = bundle_for("attention")
    model = bundle.model.eval()
    ids = torch.tensor([bundle.tokenizer.encode(TEXT[:40])])
    with torch.no_grad():
        x = model.proj(model.embed(ids))
        bias = window_bias(model.slopes, ids.shape[1], 0, model.config.context)
        block = model.blocks[0]
        weights, v = attention_matrix(block, x, bias)
        B, T, C = x.shape
        q, k, _ = block.qkv(block.norm1(x)).split(C, dim=2)
        q, k = (t.view(B, T, block.heads, C // block.heads).transpose(1, 2) for t in (q, k))
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert torch.allclose(weights @ v, expected, atol=1e-5)
    assert torch.allclose(weights.sum(-1), torch.ones(1, block.heads, T), atol=1e-5)


def test_attention_from_a_position_reads_only_what_it_needs():
    bundle = bundle_for("attention")
    model = bundle.model.eval()
    text = TEXT[:200]
    row = attention_from(bundle, text, 150)
    assert row.start == 150 - model.receptive_field + 1 and row.weights.shape == (2, 4, model.receptive_field)
    # the same weights as a pass over the whole text up to the position
    ids = torch.tensor([bundle.tokenizer.encode(text)[:151]])
    with torch.no_grad():
        x = model.proj(model.embed(ids))
        bias = window_bias(model.slopes, 151, 0, model.config.context)
        for layer, block in enumerate(model.blocks):
            weights, _ = attention_matrix(block, x, bias)
            assert torch.allclose(weights[0, :, -1, row.start:], row.weights[layer], atol=1e-5)
            x, _ = block(x, bias, (torch.zeros(1, 4, 0, 8), torch.zeros(1, 4, 0, 8)), keep=15)
    # one block looks context - 1 positions back, no further
    assert (row.weights[0, :, :-model.config.context] == 0).all() and (row.weights[0, :, -16:] > 0).all()
    assert row.over_tokens(1).shape == (len(text),) and row.over_tokens(1).sum() == pytest.approx(1, abs=1e-5)
    with pytest.raises(ConfigError):
        attention_from(bundle_for("gru"), text)
    with pytest.raises(ConfigError):
        attention_from(bundle, text, 10**6)


def test_a_cnn_prediction_depends_on_exactly_its_visible_offsets():
    bundle = bundle_for("cnn", seed=2)
    model = bundle.model
    offsets = visible_offsets(model)
    assert offsets == list(range(model.receptive_field))     # doubling dilations leave no gap
    result = influence(bundle, TEXT[:200], 120)
    changed = {result.position - (result.start + j) for j in (result.change > 0).nonzero().flatten().tolist()}
    assert changed == set(offsets)
    assert result.over_tokens().shape == (200,) and (result.change >= 0).all()
    assert not model.embed.weight.grad_fn and model.embed.weight.grad is None    # the model is untouched
    assert model.training and model.embed.num_embeddings == bundle.tokenizer.vocab_size


def test_visible_offsets_follow_the_taps_of_each_block():
    model = build_model(ModelConfig(arch="cnn", vocab_size=5, hidden=8, layers=2, context=64, kernel_size=2))
    dilations = [block.conv.dilation[0] for block in model.blocks]
    assert dilations == [1, 2]
    assert visible_offsets(model) == [0, 1, 2, 3]
    assert visible_offsets(bundle_for("gru").model) is None
    rnn = influence(bundle_for("gru"), TEXT, 300)
    assert len(rnn.change) == 256 and rnn.change[-1] > 0      # an RNN: probed 256 tokens back
