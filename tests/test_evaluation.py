"""The validation loss read in warmed-up parallel streams is the loss of one long read."""
from pathlib import Path

import pytest
import torch

import textgen_core as tg
from textgen_core import evaluation
from textgen_core.data import stream_positions
from textgen_core.evaluation import eval_stream_count, total_nats, warmup_tokens
from textgen_core.models import ModelConfig, build_model
from textgen_core.runs import encode_corpus

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
BUNDLED_GRU = Path(tg.__file__).parent / "pretrained_models" / "shakespeare-char-gru"


@pytest.mark.parametrize("predictions, streams, warmup", [
    (1, 1, 0), (2, 1, 256), (1000, 7, 50), (5000, 3, 1), (20_000, 39, 128), (111_539, 64, 256), (4097, 64, 0)])
def test_the_scored_positions_tile_the_predictions_once(predictions, streams, warmup):
    index, scored = stream_positions(predictions, streams, warmup)
    assert index.shape == scored.shape and index.shape[0] == streams
    assert torch.equal(index[scored], torch.arange(predictions))     # each once, in order
    assert int(index.max()) == predictions - 1 and int(index.min()) == 0
    if streams > 1:   # each later stream reads the warmup positions before its own part, unscored
        first_scored = scored.int().argmax(1)
        assert torch.equal(first_scored[1:], torch.full((streams - 1,), warmup))
        assert torch.equal(index[1:, warmup], index[:-1, warmup] + index.shape[1] - warmup)


def test_the_warm_ups_add_at_most_a_quarter():
    assert eval_stream_count(111_539, 64, 128) == 64
    assert eval_stream_count(20_000, 64, 128) == 39                  # 39 x 128 <= 5,000
    assert eval_stream_count(16_384, 64, 1) == 1                     # short: one stream, exact
    assert eval_stream_count(10**7, 8, 256) == 8                     # the caller's cap


@pytest.mark.parametrize("arch", ["cnn", "attention"])
def test_a_receptive_field_warm_up_scores_exactly_what_one_stream_does(arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(arch, "tiny", 50)).eval()
    warmup = warmup_tokens(model)
    ids = torch.randint(0, 50, (20_000 + 1,), dtype=torch.int16)
    assert eval_stream_count(len(ids) - 1, 64, warmup) > 1
    one_stream = total_nats(model, ids, 256, streams=1)
    streams = total_nats(model, ids, 64)
    assert streams[1] == one_stream[1] == len(ids) - 1
    assert streams[0] == pytest.approx(one_stream[0], rel=1e-5)


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="needs ../shared/data/tinyshakespeare.txt")
def test_warmed_up_gru_streams_score_as_one_stream_and_cold_ones_do_not(monkeypatch):
    """The bundled char GRU on 24,000 characters of tiny Shakespeare: 46 streams, each after the first
    warmed up on the 128 characters before its part, agree with one stream; the same streams from no
    state at all score each stream's first characters worse."""
    bundle = tg.load(BUNDLED_GRU)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    ids = encode_corpus(bundle.tokenizer, text[-24_000:])
    nats, count = total_nats(bundle.model, ids, 256, streams=1)
    one_stream = nats / count
    assert eval_stream_count(count, 64, warmup_tokens(bundle.model)) == 46
    warm_nats, warm_count = total_nats(bundle.model, ids, 64)
    assert warm_count == count
    assert warm_nats / warm_count == pytest.approx(one_stream, abs=1e-4)
    monkeypatch.setattr(evaluation, "RNN_WARMUP_TOKENS", 0)
    cold_nats, _ = total_nats(bundle.model, ids, 64, streams=46)
    assert cold_nats / count - one_stream > 10 * abs(warm_nats / warm_count - one_stream)
    assert cold_nats / count - one_stream > 1e-3                      # measured: 0.0027
