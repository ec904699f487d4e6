"""One-sample GRU/LSTM steps on the CPU with fewer, larger ops: what batch-1 sampling runs.

At batch 1 a step of a 2x256 LSTM reads 4 MB of weights in four matrix-vector products and spends
as long again in per-op overhead: torch.lstm's argument handling, stacking the layers' states, the
checks and the draw of ``torch.multinomial`` (about 14 small ops). ``FusedRnnStep`` keeps what a
step needs in preallocated buffers and calls exactly the kernels ATen's CPU cell calls, in the same
order on the same shapes, so its logits are bit for bit those of ``torch.lstm``/``torch.gru`` (a test
checks it). What it keeps:
  * the first layer's input projection of each token id once it has come (a row of 4H), made with the
    same one-row ``addmm`` a step makes, so a step looks its row up instead of reading the (4H x E)
    matrix: one of the four products gone once the ids repeat;
  * the head's bias with -inf at the ids never to be generated, instead of masking every step;
  * the transposed weights as views, the bias tensors, the state and a gate buffer per layer, so that
    every other step can read the weight matrices in another order and find two in the cache (``step``).

``draw`` replaces ``torch.multinomial(probs, 1)`` with the ops multinomial runs for one sample
(an exponential draw of the same shape from the same generator, a division and an argmax), leaving
out the validity checks that finite probabilities always pass: the same ids.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard, cast

import torch

from .models.base import LanguageModel

if TYPE_CHECKING:
    from .models.rnn import RNNLanguageModel

# The first layer's projections kept for the ids seen, at most this many bytes of them (a 32k-piece
# vocabulary at 4 x 1024 floats would be 512 MB): ids beyond it are multiplied at every step.
MAX_TABLE_BYTES = 64_000_000


def fused_step_supported(model: LanguageModel) -> TypeGuard[RNNLanguageModel]:
    """A plain GRU/LSTM language model of the project's class in eval mode on the CPU, fp32, one
    direction, no projections, no hooks (``sampling.plain_rnn_in_eval``)."""
    from .sampling import plain_rnn_in_eval

    if not plain_rnn_in_eval(model, "cpu"):
        return False
    embed, rnn, head = model.embed, model.rnn, model.head
    return (type(embed) is torch.nn.Embedding and embed.max_norm is None and type(head) is torch.nn.Linear
            and type(rnn) in (torch.nn.GRU, torch.nn.LSTM) and not rnn.bidirectional and rnn.batch_first
            and not getattr(rnn, "proj_size", 0) and rnn.bias and head.bias is not None
            and all(p.dtype == torch.float32 for p in model.parameters()) and _bounded(model))


# Weights below this in magnitude keep every step finite: the hidden states of a GRU/LSTM stay in
# [-1, 1] (an LSTM's cell grows by at most 1 a step), so no product of a row can overflow, and the
# step needs no check of its logits (the sampler checks the prompt's and every unfused step's).
MAX_WEIGHT = 1e15


def _bounded(model: LanguageModel) -> bool:
    with torch.no_grad():
        return all(bool(p.abs().max() < MAX_WEIGHT) for p in model.parameters() if p.numel())


class FusedRnnStep:
    """``step(token_id) -> (1, V) logits`` with the state carried inside; ``load_state`` takes the
    state a full forward pass returned ((L, 1, H) tensors, as ``torch.lstm``/``torch.gru`` give)."""

    def __init__(self, model: LanguageModel, banned_ids: tuple[int, ...] = ()) -> None:
        if not fused_step_supported(model):
            raise ValueError("the fused step needs a plain GRU/LSTM model in eval mode on the CPU")
        rnn, head = model.rnn, model.head
        self.lstm = type(rnn) is torch.nn.LSTM
        self.layers, hidden = rnn.num_layers, rnn.hidden_size
        gates = (4 if self.lstm else 3) * hidden
        self.w_ih = [getattr(rnn, f"weight_ih_l{i}").detach().t() for i in range(self.layers)]   # (in, G)
        self.w_hh = [getattr(rnn, f"weight_hh_l{i}").detach().t() for i in range(self.layers)]   # (H, G)
        self.b_ih = [getattr(rnn, f"bias_ih_l{i}").detach() for i in range(self.layers)]
        self.b_hh = [getattr(rnn, f"bias_hh_l{i}").detach() for i in range(self.layers)]
        self.head_w, self.head_b = head.weight.detach().t(), head.bias.detach()          # (H, V), (V,)
        if banned_ids:   # -inf in the bias makes those logits -inf, as masking them would; the rest unchanged
            self.head_b = self.head_b.clone()
            self.head_b[list(banned_ids)] = float("-inf")
        self.embedding = model.embed.weight.detach()                                       # (V, E)
        # the first layer's projection of each id, made when the id first comes (a row costs what the
        # step's product would) and kept, up to MAX_TABLE_BYTES
        self.table: dict[int, torch.Tensor] = {}
        self.max_rows = MAX_TABLE_BYTES // (4 * gates)
        # MKL's product of a row can round differently with the row's memory alignment, so every
        # operand lives where ATen's has it: the state as (L, 1, H) with each layer's row a view at
        # offset l*H (ATen unbinds hx so), and each layer's new hidden state (the next layer's input
        # and the head's) in a fresh, aligned buffer, copied into the state afterwards.
        self.h_state = torch.zeros(self.layers, 1, hidden)
        self.c_state = torch.zeros(self.layers, 1, hidden) if self.lstm else None
        self.out = [torch.empty(1, hidden) for _ in range(self.layers)]                    # (1, H) each
        self.x_proj = torch.empty(1, gates)      # the input projection of the layer being stepped
        self.h_gates = [torch.empty(1, gates) for _ in range(self.layers)]   # each layer's hidden projection,
        # then its gates: a buffer per layer, so that every other step can make them all first (``step``)
        self.steps_taken = 0
        self.next_projection_made = False   # layer 0's next hidden projection already in h_gates[0]
        self.scratch = torch.empty(1, hidden)
        self.logits = torch.empty(1, head.out_features)
        # Views of those buffers made once: a step's narrow/select/chunk calls cost about as much as an
        # elementwise op each, some 30 us a step. The buffers are never resized, so the views stay valid.
        self.h_rows = list(self.h_state.unbind(0))                                          # (1, H) each
        self.c_rows = list(self.c_state.unbind(0)) if self.c_state is not None else []
        self.gate_parts = [gates.unsafe_chunk(4 if self.lstm else 3, 1) for gates in self.h_gates]
        # the first two gates (LSTM i and f, GRU r and z) as one view: their sigmoids as one call where
        # that rounds as two do. ATen's vectorized loop takes 2 vectors (at most 2 x 16 floats) at a time
        # and the rest one by one, so with H a multiple of 32 no element moves between the two paths.
        self.paired_sigmoid = hidden % 32 == 0
        self.paired_gates = [gates[:, :2 * hidden] for gates in self.h_gates]
        self.x_parts = self._gru_parts(self.x_proj)
        self.row_parts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}   # a table row's views (GRU)

    def _embed(self, token_id: int) -> torch.Tensor:
        """(1, E) a fresh copy of the id's embedding row, aligned as F.embedding's output is."""
        return self.embedding[token_id:token_id + 1].clone()

    def load_state(self, state) -> None:
        """Copy a forward pass's state (h or (h, c), each (L, 1, H)) into the buffers."""
        h, c = state if self.lstm else (state, None)
        self.h_state.copy_(h)
        if c is not None:   # an LSTM's: its c_state is a buffer
            cast(torch.Tensor, self.c_state).copy_(c)
        self.next_projection_made = False

    def state(self):
        """The current state as a forward pass returns it (new tensors)."""
        return ((self.h_state.clone(), cast(torch.Tensor, self.c_state).clone()) if self.lstm else
                self.h_state.clone())

    def _input_projection(self, layer: int, token_id: int) -> torch.Tensor:
        if layer == 0:
            row = self.table.get(token_id)
            if row is None:
                # the exact one-row product the step would make for this id (the same bits each time)
                row = torch.addmm(self.b_ih[0], self._embed(token_id), self.w_ih[0])
                if len(self.table) < self.max_rows:
                    self.table[token_id] = row
            return row
        return torch.addmm(self.b_ih[layer], self.out[layer - 1], self.w_ih[layer], out=self.x_proj)

    @staticmethod
    def _gru_parts(x_proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r and z's input projections as one (1, 2H) view, n's (1, H))."""
        hidden = x_proj.shape[1] // 3
        return x_proj[:, :2 * hidden], x_proj[:, 2 * hidden:]

    def _input_parts(self, layer: int, token_id: int, x_proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x_proj``'s views (GRU, ``_gru_parts``): the buffer's, or a table row's, made once."""
        if layer > 0:
            return self.x_parts
        parts = self.row_parts.get(token_id)
        if parts is None:
            parts = self._gru_parts(x_proj)
            if token_id in self.table:
                self.row_parts[token_id] = parts
        return parts

    def _sigmoid_pair(self, layer: int) -> None:
        """The first two gates' sigmoids (``paired_sigmoid``)."""
        if self.paired_sigmoid:
            self.paired_gates[layer].sigmoid_()
        else:
            first, second = self.gate_parts[layer][:2]
            first.sigmoid_()
            second.sigmoid_()

    def _hidden_projection(self, layer: int) -> torch.Tensor:
        return torch.addmm(self.b_hh[layer], self.h_rows[layer], self.w_hh[layer], out=self.h_gates[layer])

    def step(self, token_id: int) -> torch.Tensor:
        """Feed one token; the (1, V) logits of the next (a buffer, overwritten by the next step).

        A step reads each weight matrix once, and a 2x256 LSTM's three 1 MB ones do not fit a 2 MB L2
        together: read in the same order every step, each is evicted before it is read again. So every
        other step reads them in another order, one that begins with the matrices the step before read
        last, still in the cache. The same products of the same operands in another order: the same
        bits (benchmarks/bench_step_order.py times the orders)."""
        odd = self.steps_taken % 2 == 1
        self.steps_taken += 1
        if self.layers == 2:
            self._two_layer_step(token_id, reverse=odd)
        else:
            # every other step the hidden projections first, from the last layer down (they need only
            # the state)
            hidden_first = self.layers > 1 and odd
            if hidden_first:
                for layer in reversed(range(self.layers)):
                    self._hidden_projection(layer)
            for layer in range(self.layers):
                x_proj = self._input_projection(layer, token_id)
                if not hidden_first:
                    self._hidden_projection(layer)
                self._cell(layer, token_id, x_proj)
        return torch.addmm(self.head_b, self.out[-1], self.head_w, out=self.logits)

    def _two_layer_step(self, token_id: int, reverse: bool) -> None:
        """Layer 0's hidden projection for the next step (A) is made as soon as its new state is, which
        leaves A, layer 1's input projection (B) and layer 1's hidden one (C) free to go in any order
        between the two cells: A B C, then C B A. (With more layers the input projections chain through
        the cells, and the order in ``step`` measured faster.)"""
        if not self.next_projection_made:
            self._hidden_projection(0)
        self._cell(0, token_id, self._input_projection(0, token_id))
        self._hidden_projection(1 if reverse else 0)
        x_proj = self._input_projection(1, token_id)
        self._hidden_projection(0 if reverse else 1)
        self._cell(1, token_id, x_proj)
        self.next_projection_made = True

    def _cell(self, layer: int, token_id: int, x_proj: torch.Tensor) -> None:
        """The layer's cell on its hidden projection (in ``h_gates``) and ``x_proj``; its new state into
        ``h_rows``."""
        if self.lstm:
            self._lstm_cell(layer, self.h_gates[layer], x_proj)
        else:
            self._gru_cell(layer, self._input_parts(layer, token_id, x_proj))
        self.h_rows[layer].copy_(self.out[layer])

    def _lstm_cell(self, layer: int, gates: torch.Tensor, x_proj: torch.Tensor) -> None:
        # ATen's LSTMCell on the CPU: gates = hh + ih; i, f, o sigmoid, g tanh; c = f*c + i*g; h = o*tanh(c)
        gates.add_(x_proj)
        in_gate, forget_gate, cell_gate, out_gate = self.gate_parts[layer]   # views of ``gates``
        self._sigmoid_pair(layer)
        cell_gate.tanh_()
        out_gate.sigmoid_()
        c = self.c_rows[layer]
        c.mul_(forget_gate)                 # f * c: multiplication commutes bit for bit
        c.add_(in_gate.mul_(cell_gate))     # + i * g
        torch.tanh(c, out=self.scratch)
        torch.mul(out_gate, self.scratch, out=self.out[layer])

    def _gru_cell(self, layer: int, x_parts: tuple[torch.Tensor, torch.Tensor]) -> None:
        # ATen's GRUCell on the CPU: r = sig(hh_r + ih_r); z = sig(hh_z + ih_z); n = tanh(ih_n + r*hh_n);
        # h = (h - n) * z + n. The r and z sums as one add: each element is rounded once either way.
        i_rz, i_n = x_parts
        reset, update, h_n = self.gate_parts[layer]   # views of the layer's hidden projection
        self.paired_gates[layer].add_(i_rz)
        self._sigmoid_pair(layer)
        new = torch.add(i_n, h_n.mul_(reset), out=self.scratch).tanh_()
        torch.sub(self.h_rows[layer], new, out=self.out[layer]).mul_(update).add_(new)


def draw(probs: torch.Tensor, generator: torch.Generator, noise: torch.Tensor) -> torch.Tensor:
    """(B, V) probabilities -> (B,) ids: what ``torch.multinomial(probs, 1, generator=generator)``
    draws on the CPU (for one sample it takes argmax(p / q) with q ~ Exp(1) of p's shape), without
    its checks, which finite softmax outputs always pass. ``noise``: a (B, V) float32 buffer."""
    noise.exponential_(1, generator=generator)
    torch.div(probs, noise, out=noise)
    return noise.argmax(dim=-1)
