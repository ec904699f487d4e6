"""Chunked sampling (the steps a GPU records as a CUDA graph): the same text as step-by-step sampling
where it must be, valid draws where it is random, and on a GPU the recorded graph equals the eager
chunks token for token."""
from __future__ import annotations

import pytest
import torch

from textgen_core import ModelConfig, build_model, graphed_sampling
from textgen_core.graphed_sampling import ChunkedSampler
from textgen_core.sampling import SamplingOptions, next_token_probs, sample_ids

VOCAB = 40
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def rnn_model(arch: str, device: str = "cpu") -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(arch, "tiny", VOCAB, layers=2, hidden=48, dropout=0.3))
    return model.to(device).eval()


def chunked(model, prompt, length, batch=1, temperature=1.0, top_k=None, top_p=None, banned=(), seed=0):
    """Ids (length, B) from a ChunkedSampler run eagerly (no graph), after the prompt's forward pass."""
    device = model.device
    mask = None
    if banned:
        mask = torch.zeros(VOCAB, dtype=torch.bool, device=device)
        mask[list(banned)] = True
    sampler = ChunkedSampler(model, batch, temperature == 0, top_k, top_p is not None, mask is not None)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        logits, state = model(torch.tensor([prompt] * batch, device=device))
        return torch.stack(list(sampler.generate(logits[:, -1], state, length, temperature, top_p, mask,
                                                 generator)))


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_chunks_equal_step_by_step_sampling(arch, batch):
    model = rnn_model(arch)
    length = 75  # over two chunks of 32 and a part: the state and logits cross chunk boundaries
    steps = torch.stack(list(sample_ids(model, [1, 2, 3], SamplingOptions(length=length, temperature=0,
                                                                           num_samples=batch))))
    assert torch.equal(chunked(model, [1, 2, 3], length, batch, temperature=0), steps)


def test_same_seed_same_ids_and_banned_never_drawn():
    model = rnn_model("lstm")
    a = chunked(model, [5], 90, batch=4, temperature=1.5, banned=(0, 7), seed=3)
    b = chunked(model, [5], 90, batch=4, temperature=1.5, banned=(0, 7), seed=3)
    c = chunked(model, [5], 90, batch=4, temperature=1.5, banned=(0, 7), seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.isin(a, torch.tensor([0, 7])).any()
    assert len(set(a.flatten().tolist())) > 10   # a hot temperature spreads over the vocabulary


def test_top_k_one_is_greedy_and_top_p_keeps_the_nucleus():
    model = rnn_model("gru")
    greedy = chunked(model, [1, 2], 40, batch=2, temperature=0)
    assert torch.equal(chunked(model, [1, 2], 40, batch=2, temperature=1.0, top_k=1, seed=9), greedy)
    # with top-p 0.5 every drawn id must lie in the nucleus of the logits it was drawn from: replay
    # the ids through the model and check each against its own distribution
    ids = chunked(model, [1, 2], 30, batch=2, temperature=1.0, top_p=0.5, seed=2)
    with torch.inference_mode():
        logits, state = model(torch.tensor([[1, 2]] * 2))
        for row in ids:
            kept = next_token_probs(logits[:, -1], 1.0, None, 0.5) > 0
            assert kept.gather(1, row[:, None]).all()
            logits, state = model(row[:, None], state)


def test_draws_follow_the_model_distribution():
    """The exponential race picks each id with its probability: 20,000 first draws against softmax."""
    model = rnn_model("gru")
    batch = 20_000
    first = chunked(model, [3, 4], 1, batch=batch, temperature=1.0, seed=1)[0]
    with torch.inference_mode():
        probs = torch.softmax(model(torch.tensor([[3, 4]]))[0][0, -1], dim=-1)
    counts = torch.bincount(first, minlength=VOCAB).double()
    expected = probs.double() * batch
    # every id within 5 standard deviations of its binomial count
    assert ((counts - expected).abs() <= 5 * (expected * (1 - probs.double())).sqrt() + 1).all()


def test_only_plain_rnn_models_on_a_gpu_qualify():
    assert not graphed_sampling.supports_chunks(rnn_model("gru"))           # on the CPU
    torch.manual_seed(0)
    cnn = build_model(ModelConfig.from_preset("cnn", "tiny", VOCAB)).eval()
    assert not graphed_sampling.supports_chunks(cnn)


@cuda
@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("batch", [1, 64])
def test_recorded_graph_equals_the_eager_chunks(arch, batch, monkeypatch):
    model = rnn_model(arch, "cuda")
    options = SamplingOptions(length=100, temperature=0.9, top_k=20, top_p=0.95, num_samples=batch, seed=5)
    graphed = torch.stack(list(sample_ids(model, [1, 2, 3], options, banned_ids=(0,))))
    sampler = next(iter(graphed_sampling._SAMPLERS[model].values()))
    assert sampler.graph is not None                   # the graph path was taken
    again = torch.stack(list(sample_ids(model, [1, 2, 3], options, banned_ids=(0,))))   # replayed from cache
    monkeypatch.setenv("TEXTGEN_CUDA_GRAPHS", "0")
    eager = torch.stack(list(sample_ids(model, [1, 2, 3], options, banned_ids=(0,))))
    assert torch.equal(graphed, eager) and torch.equal(graphed, again)
    assert graphed.shape == (100, batch) and not (graphed == 0).any()


@cuda
def test_greedy_graph_equals_the_step_by_step_gpu_path():
    model = rnn_model("lstm", "cuda")
    options = SamplingOptions(length=70, temperature=0)
    graphed = torch.stack(list(sample_ids(model, [1, 2, 3], options)))
    hook = model.register_forward_hook(lambda *args: None)   # hooks keep the step-by-step path
    try:
        steps = torch.stack(list(sample_ids(model, [1, 2, 3], options))).cpu()
    finally:
        hook.remove()
    assert torch.equal(graphed, steps)
