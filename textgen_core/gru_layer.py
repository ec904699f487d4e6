"""A stacked GRU for training on the CPU: the time loop of ``native/gru_train.cpp`` with its own backward.

``nn.GRU`` on the CPU has no fused kernel (the LSTM has oneDNN's): each step is a dozen small ops that
autograd records one by one, and its backward makes a (3H, B) x (B, H) weight-gradient product and an
accumulation at every step. Here the input projection of all steps is one product, and each layer's
time loop is one autograd node: the loop runs in C++ (a recurrent product and a pass over the gates per
step), and its backward forms the recurrent weights' gradients as single products over the sequence.
The first layer's input projection is a lookup in a per-id table when the model gives the ids
(``gru_from_ids``). On a CPU with AVX2 and FMA but no AVX-512, the loop's step products run on the
project's own AVX2 kernels (``native/avx2_gemm.cpp``, ``devices.cpu_prefers_avx2_products``), elsewhere on MKL.

It computes what ``nn.GRU`` does, with the module's own weights (so checkpoints are unchanged), to
float rounding (``tests/test_gru_layer.py``). ``RNNLanguageModel`` uses it to train a GRU on the CPU
in fp32 or fp64 outside autocast, where the compiled library is loaded (``native_step``); else, and
whenever autograd is off, ``nn.GRU``.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from . import native_step
from .devices import cpu_prefers_avx2_products


class _GruLoop(torch.autograd.Function):
    """One layer's time loop from its input projections: (gi (T, B, 3H), h0 (B, H), W_hh, b_hh) ->
    (out (T, B, H), h_T). The input projection stays outside, an ordinary product autograd handles."""

    @staticmethod
    def forward(ctx: Any, gi: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor,
                b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        avx2 = cpu_prefers_avx2_products()
        hs, rz, ns, ghn = torch.ops.textgen_native.gru_layer_forward(gi, h0.contiguous(), w_hh.t(), b_hh, avx2)
        ctx.save_for_backward(hs, rz, ns, ghn, w_hh)
        ctx.avx2 = avx2
        return hs[1:], hs[gi.shape[0]]

    @staticmethod
    def backward(ctx: Any, d_out: Optional[torch.Tensor], d_last: Optional[torch.Tensor]):
        hs, rz, ns, ghn, w_hh = ctx.saved_tensors
        steps, batch, hidden = ns.shape
        d_gi, d_gh, d_h0 = torch.ops.textgen_native.gru_layer_backward(d_out, d_last, hs, rz, ns, ghn, w_hh,
                                                                       ctx.avx2)
        d_gh = d_gh.view(steps * batch, 3 * hidden)
        need = ctx.needs_input_grad
        d_w_hh = d_gh.t() @ hs[:steps].reshape(steps * batch, hidden) if need[2] else None
        return d_gi, d_h0 if need[1] else None, d_w_hh, d_gh.sum(0) if need[3] else None


def release_buffers() -> int:
    """Frees the large buffers the time loops keep between calls (their saved states and gates, their
    gate gradients) that no tensor uses any more; returns the bytes freed (0 without the library).
    The trainer calls it when a run ends, so a finished run does not hold a step's worth of memory."""
    if not native_step.available(build_in_background=False):
        return 0
    return int(torch.ops.textgen_native.gru_release_buffers())


def _input_projection(seq: torch.Tensor, w_ih: torch.Tensor, b_ih: torch.Tensor) -> torch.Tensor:
    """seq (T, B, I) -> every step's input part of the gates at once, (T, B, 3H) = seq @ W_ih^T + b_ih."""
    steps, batch, _ = seq.shape
    return torch.addmm(b_ih, seq.reshape(steps * batch, -1), w_ih.t()).view(steps, batch, -1)


def usable(rnn: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``gru`` runs this GRU on this input: training (autograd on), the CPU, fp32/fp64, no
    autocast, the library loaded. Without autograd nn.GRU runs, so evaluation and sampling keep its
    exact rounding (the samplers' bit-for-bit tests compare against it) and lose little: there is no
    backward to save."""
    return (torch.is_grad_enabled() and isinstance(rnn, nn.GRU) and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and rnn.bias and rnn.batch_first and not rnn.bidirectional
            and not torch.is_autocast_enabled("cpu") and not _tracing() and native_step.available())


def _tracing() -> bool:
    """Inside an ONNX export, a TorchScript trace or torch.compile: these see nn.GRU, not a custom op."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def gru(rnn: nn.GRU, x: torch.Tensor, h0: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``rnn(x, h0)`` for a batch-first, one-way ``nn.GRU`` with biases: x (B, T, I), h0 (L, B, H) or None
    -> (out (B, T, H), h_T (L, B, H)). Dropout between layers as the module applies it (training only)."""
    seq = x.transpose(0, 1).contiguous()                       # (T, B, I): each step's rows contiguous
    w_ih, _, b_ih, _ = _weights(rnn, 0)
    return _stack(rnn, _input_projection(seq, w_ih, b_ih), h0)


def gru_from_ids(rnn: nn.GRU, embedding: torch.Tensor, ids: torch.Tensor,
                 h0: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(rnn, embedding[ids], h0)``: ids (B, T) into an embedding matrix (V, I).

    The first layer's input part of the gates depends only on the id, so it is a row of one table,
    (V, 3H) = embedding @ W_ih^T + b_ih, made once a call. Each step's rows are gathered from it, and
    its gradient is the gathered rows' gradients summed per id. That replaces three (B*T, I) x (I, 3H)
    products (forward, the embedding's gradient, W_ih's) with (V, I) x (I, 3H) ones, where there are
    fewer ids in the vocabulary than tokens in the batch; else the rows are looked up first as usual.
    """
    if embedding.shape[0] >= ids.numel():
        return gru(rnn, embedding[ids], h0)
    w_ih, _, b_ih, _ = _weights(rnn, 0)
    table = torch.addmm(b_ih, embedding, w_ih.t())                             # (V, 3H)
    steps, batch = ids.shape[1], ids.shape[0]
    gi = table.index_select(0, ids.t().reshape(-1)).view(steps, batch, -1)   # (T, B, 3H), time-major
    return _stack(rnn, gi, h0)


def _stack(rnn: nn.GRU, first_gi: torch.Tensor, h0: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The layers in turn from the first one's input projections (T, B, 3H) -> (out (B, T, H), h_T)."""
    layers, batch = rnn.num_layers, first_gi.shape[1]
    if h0 is None:
        h0 = first_gi.new_zeros(layers, batch, rnn.hidden_size)
    _, w_hh, _, b_hh = _weights(rnn, 0)
    seq, last = _GruLoop.apply(first_gi, h0[0], w_hh, b_hh)                # seq (T, B, H)
    finals = [last]
    for layer in range(1, layers):
        if rnn.dropout and rnn.training:
            seq = nn.functional.dropout(seq, rnn.dropout, training=True)
        w_ih, w_hh, b_ih, b_hh = _weights(rnn, layer)
        seq, last = _GruLoop.apply(_input_projection(seq, w_ih, b_ih), h0[layer], w_hh, b_hh)
        finals.append(last)
    return seq.transpose(0, 1), torch.stack(finals)


def _weights(rnn: nn.GRU, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A layer's (W_ih, W_hh, b_ih, b_hh), the module's own parameters."""
    return tuple(getattr(rnn, f"{name}_l{layer}")
                 for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
