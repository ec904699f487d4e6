"""gru_layer (native/gru_train.cpp): the GRU's compiled training loop computes what nn.GRU computes, its
outputs, last state and every gradient, to float rounding; the model uses it on the CPU and falls back
to nn.GRU where it cannot run."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from textgen_core import devices, gru_layer, native_step
from textgen_core.models import build_model
from textgen_core.models.config import ModelConfig


def outputs_and_grads(rnn: nn.GRU, run, x: torch.Tensor, h0, out_weight: torch.Tensor, last_weight: torch.Tensor):
    """A loss on both the outputs and the last state, so both backward paths carry a gradient."""
    inputs = [x] + ([h0] if h0 is not None else []) + list(rnn.parameters())
    out, last = run(x, h0)
    loss = (out * out_weight).sum() + (last * last_weight).sum()
    return out, last, torch.autograd.grad(loss, inputs)


def check_equals_nn_gru(batch: int, steps: int, inputs: int, hidden: int, layers: int, dtype: torch.dtype,
                        tolerance: float, with_state: bool) -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(inputs, hidden, layers, batch_first=True).to(dtype)
    x = torch.randn(batch, steps, inputs, dtype=dtype, requires_grad=True)
    h0 = torch.randn(layers, batch, hidden, dtype=dtype, requires_grad=True) if with_state else None
    out_weight = torch.randn(batch, steps, hidden, dtype=dtype)
    last_weight = torch.randn(layers, batch, hidden, dtype=dtype)
    expected = outputs_and_grads(rnn, rnn, x, h0, out_weight, last_weight)
    got = outputs_and_grads(rnn, lambda x, h0: gru_layer.gru(rnn, x, h0), x, h0, out_weight, last_weight)
    for want, have in zip(expected[:2] + expected[2], got[:2] + got[2]):
        assert want.shape == have.shape
        torch.testing.assert_close(have, want, atol=tolerance, rtol=tolerance)


HAS_AVX2 = {"avx2", "fma"} <= set(devices.cpu_flags())


@pytest.fixture(params=["avx2", "blas"])
def step_products(request, monkeypatch):
    """The loops' step products by the AVX2 kernels (where the CPU has AVX2 and FMA), then by torch's BLAS."""
    if request.param == "avx2" and not HAS_AVX2:
        pytest.skip("the CPU lacks AVX2 or FMA")
    monkeypatch.setattr(gru_layer, "cpu_prefers_avx2_products", lambda: request.param == "avx2")
    return request.param


# 37: a width no vector length divides; T=1 and B=1: the loop's edges; 3 layers: a middle one
# 1024: large enough that its recurrent weights are packed (where torch has MKL); 300 with 13 rows:
# products longer than the AVX2 kernels' blocks of 256 rows, and rows past their tiles of 6
@pytest.mark.parametrize("batch, steps, inputs, hidden, layers", [(4, 7, 5, 6, 2), (3, 1, 4, 37, 3),
                                                                  (1, 9, 8, 8, 1), (2, 5, 16, 33, 2),
                                                                  (3, 4, 8, 1024, 1), (13, 3, 8, 300, 1)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
@pytest.mark.parametrize("with_state", [True, False])
def test_the_compiled_gru_equals_nn_gru(native, step_products, batch, steps, inputs, hidden, layers, dtype,
                                        tolerance, with_state):
    check_equals_nn_gru(batch, steps, inputs, hidden, layers, dtype, tolerance, with_state)


# Enough rows that the gate passes split them between two threads: 9 of width 1024 (4 rows a task), and
# 130 of width 37 (110 a task: two unequal shares of a width no vector length divides)
@pytest.mark.parametrize("batch, hidden, layers", [(9, 1024, 1), (130, 37, 2)])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_the_gate_passes_split_between_threads_equal_nn_gru(native, step_products, batch, hidden, layers, dtype,
                                                           tolerance):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        check_equals_nn_gru(batch, 3, 8, hidden, layers, dtype, tolerance, with_state=True)
    finally:
        torch.set_num_threads(threads)


def test_a_loss_on_the_last_state_alone_reaches_every_weight(native):
    """No gradient reaches the outputs (the backward gets none for them): the loop runs on zeros."""
    torch.manual_seed(1)
    rnn = nn.GRU(3, 5, 2, batch_first=True).double()
    x = torch.randn(2, 4, 3, dtype=torch.double)
    want = torch.autograd.grad(rnn(x)[1].sum(), list(rnn.parameters()))
    have = torch.autograd.grad(gru_layer.gru(rnn, x, None)[1].sum(), list(rnn.parameters()))
    for expected, got in zip(want, have):
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)


# 5 ids in 6 tokens: the first layer's projection from the per-id table; 40 in 6: looked up row by row
@pytest.mark.parametrize("vocab", [5, 40])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_the_gru_from_ids_equals_nn_gru_on_the_embedded_rows(native, vocab, dtype, tolerance):
    torch.manual_seed(2)
    rnn = nn.GRU(7, 9, 2, batch_first=True).to(dtype)
    embedding = torch.randn(vocab, 7, dtype=dtype, requires_grad=True)
    ids = torch.tensor([[0, 4, 4], [1, 0, 3]])            # ids repeat: the table's gradient sums them
    h0 = torch.randn(2, 2, 9, dtype=dtype, requires_grad=True)
    out_weight, last_weight = torch.randn(2, 3, 9, dtype=dtype), torch.randn(2, 2, 9, dtype=dtype)
    want = outputs_and_grads(rnn, lambda table, h0: rnn(table[ids], h0), embedding, h0, out_weight, last_weight)
    have = outputs_and_grads(rnn, lambda table, h0: gru_layer.gru_from_ids(rnn, table, ids, h0), embedding, h0,
                             out_weight, last_weight)
    for expected, got in zip(want[:2] + want[2], have[:2] + have[2]):
        torch.testing.assert_close(got, expected, atol=tolerance, rtol=tolerance)


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch built without MKL")
def test_the_loops_pack_large_recurrent_weights_where_torch_has_mkl(native):
    """Packed, the (64, 1024) x (1024, 3072) products ran 1.25-1.7x as fast: a build that lost them
    would train slower with every test still passing. Small matrices stay unpacked: MKL's buffer
    would be many times their size."""
    product = torch.ops.textgen_native.gru_step_product
    w_hh = torch.randn(3 * 1024, 1024)
    assert product(w_hh.t(), 64, False) == product(w_hh, 64, False) == "mkl packed"   # forward's view, backward's
    assert product(torch.randn(768, 256).t(), 32, False) == "mm"


@pytest.mark.skipif(not HAS_AVX2, reason="the CPU lacks AVX2 or FMA")
def test_the_loops_take_the_avx2_products_when_asked(native):
    product = torch.ops.textgen_native.gru_step_product
    w_hh = torch.randn(3 * 1024, 1024)
    assert product(w_hh.t(), 64, True) == product(w_hh, 64, True) == "avx2"
    assert product(torch.randn(768, 256).t(), 32, True) == "avx2"


# each size at and either side of the kernels' edges: 6 rows a tile, 16 columns a panel, 256 rows a block
@pytest.mark.skipif(not HAS_AVX2, reason="the CPU lacks AVX2 or FMA")
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (5, 7, 3), (6, 256, 16), (7, 257, 17), (13, 255, 15),
                                     (64, 1024, 3072), (64, 3072, 1024), (12, 600, 40), (3, 0, 5)])
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_the_avx2_products_equal_a_float64_product(native, m, k, n, layout):
    torch.manual_seed(m * 7 + k + n)
    a = torch.randn(m, k + 3)[:, 1:k + 1]             # rows with a stride past their width
    b = torch.randn(k, n) if layout == "rows" else torch.randn(n, k).t()   # the backward's w_hh, the forward's view
    want = (a.double() @ b.double()).float()
    got = torch.ops.textgen_native.avx2_matmul(a, b)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6 * max(k, 1))


def test_the_avx2_products_are_chosen_for_an_avx2_cpu_without_avx512(monkeypatch):
    for flags, chosen in [(("sse4_2", "avx2", "fma"), True), (("avx2", "fma", "avx512f", "avx512bw"), False),
                          (("avx2",), False), (("sse4_2",), False)]:
        monkeypatch.setattr(devices, "usable_cpu_flags", lambda flags=flags: flags)
        assert devices.cpu_prefers_avx2_products() is chosen, flags


def gru_model(dropout: float = 0.0):
    torch.manual_seed(3)
    config = ModelConfig(arch="gru", vocab_size=30, embedding=8, hidden=16, layers=2, dropout=dropout)
    return build_model(config)


def test_the_model_trains_its_gru_through_the_compiled_loop(native, monkeypatch):
    model = gru_model()
    ids = torch.randint(0, 30, (4, 12))
    calls = []
    compiled = gru_layer._stack
    monkeypatch.setattr(gru_layer, "_stack", lambda *args: calls.append(1) or compiled(*args))
    logits, _ = model(ids)
    nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten()).backward()
    assert calls, "the model's GRU did not run through the compiled loop"
    have = [p.grad.clone() for p in model.parameters()]

    model.zero_grad()
    monkeypatch.setattr(native_step, "available", lambda **kwargs: False)
    logits_eager, _ = model(ids)
    nn.functional.cross_entropy(logits_eager.flatten(0, 1), ids.flatten()).backward()
    assert len(calls) == 1, "without the library the model still took the compiled loop"
    torch.testing.assert_close(logits, logits_eager, atol=2e-6, rtol=1e-5)
    for got, eager in zip(have, [p.grad for p in model.parameters()]):
        torch.testing.assert_close(got, eager, atol=2e-6, rtol=1e-5)


def test_dropout_between_layers_applies_in_training_only(native):
    model = gru_model(dropout=0.5)
    ids = torch.randint(0, 30, (2, 10))
    model.train()
    torch.manual_seed(4)
    first, _ = model(ids)
    second, _ = model(ids)
    assert not torch.allclose(first, second), "dropout between the layers drew nothing in training"
    model.eval()                           # autograd still on: the compiled loop, without dropout
    eval_out, _ = model(ids)
    eager_out = model.head(model.rnn(model.embed(ids))[0])
    torch.testing.assert_close(eval_out, eager_out, atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["autocast", "no grad", "no library", "lstm", "trace"])
def test_the_compiled_loop_steps_aside_where_it_cannot_run(native, monkeypatch, case):
    rnn: nn.Module = nn.GRU(4, 6, 1, batch_first=True)
    x = torch.randn(2, 3, 4)
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not gru_layer.usable(rnn, x)
        return
    if case == "no grad":                  # evaluation and sampling keep nn.GRU's exact rounding
        with torch.no_grad():
            assert not gru_layer.usable(rnn, x)
        with torch.inference_mode():
            assert not gru_layer.usable(rnn, x)
        return
    if case == "no library":
        monkeypatch.setattr(native_step, "available", lambda **kwargs: False)
    elif case == "lstm":
        rnn = nn.LSTM(4, 6, 1, batch_first=True)
    elif case == "trace":
        monkeypatch.setattr(torch.jit, "is_tracing", lambda: True)
    assert gru_layer.usable(nn.GRU(4, 6, 1, batch_first=True), x) == (case not in ("no library", "trace"))
    assert not gru_layer.usable(rnn, x)


def test_kept_buffers_are_reused_only_once_no_tensor_uses_them(native):
    """The loops keep their large buffers (1 MB and up) between calls. Two forwards before either backward
    (gradient accumulation) must each get their own, and both backwards must match nn.GRU's."""
    torch.manual_seed(5)
    rnn = nn.GRU(8, 512, 1, batch_first=True)
    xs = [torch.randn(16, 40, 8) for _ in range(2)]        # ns alone (40, 16, 512) is 1.3 MB
    gru_layer.release_buffers()
    outs = [gru_layer.gru(rnn, x, None)[0] for x in xs]      # the first's buffers still saved for backward
    assert outs[0].data_ptr() != outs[1].data_ptr()
    sum(out.square().sum() for out in outs).backward()
    have = [p.grad.clone() for p in rnn.parameters()]
    rnn.zero_grad()
    sum(rnn(x)[0].square().sum() for x in xs).backward()
    for expected, got in zip([p.grad for p in rnn.parameters()], have):
        torch.testing.assert_close(got, expected, atol=2e-4, rtol=2e-4)

    first = outs[0].data_ptr()
    del outs
    again = gru_layer.gru(rnn, xs[0], None)[0]
    assert again.data_ptr() == first                         # the memory of a finished step, used again
    del again
    assert gru_layer.release_buffers() > 0
    assert gru_layer.release_buffers() == 0                  # nothing left to free
