"""A stacked GRU for training on the CPU: the time loop of ``native/gru_train.cpp`` with its own backward.

``nn.GRU`` on the CPU has no fused kernel (the LSTM has oneDNN's): each step is a dozen small ops that
autograd records one by one, and its backward makes a (3H, B) x (B, H) weight-gradient product and an
accumulation at every step. Here each layer is one autograd node: the input projection of all steps is
one product, the loop runs in C++ (a recurrent product and a pass over the gates per step), and the
backward forms the weight gradients as single products over the whole sequence.

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


class _GruLayer(torch.autograd.Function):
    """One layer over a time-major sequence: (x (T, B, I), h0 (B, H), weights) -> (out (T, B, H), h_T)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
                b_ih: torch.Tensor, b_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps, batch, _ = x.shape
        flat_x = x.reshape(steps * batch, -1)
        gi = torch.addmm(b_ih, flat_x, w_ih.t()).view(steps, batch, -1)   # every step's input part at once
        hs, rz, ns, ghn = torch.ops.textgen_native.gru_layer_forward(gi, h0.contiguous(), w_hh.t(), b_hh)
        ctx.save_for_backward(flat_x, hs, rz, ns, ghn, w_ih, w_hh)
        return hs[1:], hs[steps]

    @staticmethod
    def backward(ctx: Any, d_out: Optional[torch.Tensor], d_last: Optional[torch.Tensor]):
        flat_x, hs, rz, ns, ghn, w_ih, w_hh = ctx.saved_tensors
        steps, batch, hidden = ns.shape
        d_gi, d_gh, d_h0 = torch.ops.textgen_native.gru_layer_backward(d_out, d_last, hs, rz, ns, ghn, w_hh)
        d_gi = d_gi.view(steps * batch, 3 * hidden)
        d_gh = d_gh.view(steps * batch, 3 * hidden)
        need = ctx.needs_input_grad
        d_x = (d_gi @ w_ih).view(steps, batch, -1) if need[0] else None
        d_w_ih = d_gi.t() @ flat_x if need[2] else None
        d_w_hh = d_gh.t() @ hs[:steps].reshape(steps * batch, hidden) if need[3] else None
        return (d_x, d_h0 if need[1] else None, d_w_ih, d_w_hh, d_gi.sum(0) if need[4] else None,
                d_gh.sum(0) if need[5] else None)


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
    layers, batch = rnn.num_layers, x.shape[0]
    if h0 is None:
        h0 = x.new_zeros(layers, batch, rnn.hidden_size)
    seq = x.transpose(0, 1)                                    # (T, B, I): each step's rows contiguous
    finals = []
    for layer in range(layers):
        if layer and rnn.dropout and rnn.training:
            seq = nn.functional.dropout(seq, rnn.dropout, training=True)
        weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        seq, last = _GruLayer.apply(seq.contiguous(), h0[layer], *weights)
        finals.append(last)
    return seq.transpose(0, 1), torch.stack(finals)
