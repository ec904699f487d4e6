// One GRU layer's time loop for training on the CPU, forward and backward: textgen_core/gru_layer.py.
//
// nn.GRU on the CPU runs each step as a dozen small ATen ops, and autograd records them all; its
// backward then makes a (3H, B) x (B, H) weight-gradient product and an accumulation at every step.
// Here a step is one matrix product over the recurrent weights plus one pass of plain loops over the
// gates (sigmoid and tanh through ATen's vectorized kernels); the gate gradients of all steps are kept,
// so gru_layer.py forms the weight gradients as a few products over the whole sequence.
//
// Shapes (time-major, as nn.GRU lays out its gates r, z, n):
//   gi (T, B, 3H)  x @ W_ih^T + b_ih for every step, made by the caller in one product
//   hs (T+1, B, H) the state before and after each step (hs[0] = h0)
//   rz (T, B, 2H)  the reset and update gates after the sigmoid
//   ns (T, B, H)   the candidate n after the tanh;  ghn (T, B, H): W_hn h + b_hn, which r multiplies
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace {

template <typename scalar_t>
void forward_loop(const at::Tensor& gi, const at::Tensor& w_hh_t, const at::Tensor& b_hh, at::Tensor& hs,
                  at::Tensor& rz, at::Tensor& ns, at::Tensor& ghn) {
  const int64_t steps = gi.size(0), batch = gi.size(1), hidden = hs.size(2);
  at::Tensor gh = at::empty({batch, 3 * hidden}, gi.options());
  const scalar_t* gh_p = gh.data_ptr<scalar_t>();
  for (int64_t t = 0; t < steps; ++t) {
    at::addmm_out(gh, b_hh, hs[t], w_hh_t);                  // (B, 3H): W_hh h + b_hh
    const scalar_t* gi_p = gi.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    scalar_t* rz_p = rz.data_ptr<scalar_t>() + t * batch * 2 * hidden;
    for (int64_t b = 0; b < batch; ++b) {
      const scalar_t* __restrict gi_row = gi_p + b * 3 * hidden;
      const scalar_t* __restrict gh_row = gh_p + b * 3 * hidden;
      scalar_t* __restrict rz_row = rz_p + b * 2 * hidden;
      #pragma GCC ivdep  // the rows never overlap
      for (int64_t j = 0; j < 2 * hidden; ++j) rz_row[j] = gi_row[j] + gh_row[j];
    }
    at::Tensor rz_t = rz[t];
    rz_t.sigmoid_();
    scalar_t* n_p = ns.data_ptr<scalar_t>() + t * batch * hidden;
    scalar_t* ghn_p = ghn.data_ptr<scalar_t>() + t * batch * hidden;
    for (int64_t b = 0; b < batch; ++b) {
      const scalar_t* __restrict gi_n = gi_p + b * 3 * hidden + 2 * hidden;
      const scalar_t* __restrict gh_n = gh_p + b * 3 * hidden + 2 * hidden;
      const scalar_t* __restrict r = rz_p + b * 2 * hidden;
      scalar_t* __restrict n_row = n_p + b * hidden;
      scalar_t* __restrict ghn_row = ghn_p + b * hidden;
      #pragma GCC ivdep  // the rows never overlap
      for (int64_t j = 0; j < hidden; ++j) {
        ghn_row[j] = gh_n[j];
        n_row[j] = gi_n[j] + r[j] * gh_n[j];
      }
    }
    at::Tensor n_t = ns[t];
    n_t.tanh_();
    const scalar_t* h_p = hs.data_ptr<scalar_t>() + t * batch * hidden;
    scalar_t* h_next_p = hs.data_ptr<scalar_t>() + (t + 1) * batch * hidden;
    for (int64_t b = 0; b < batch; ++b) {
      const scalar_t* __restrict z = rz_p + b * 2 * hidden + hidden;
      const scalar_t* __restrict n_row = n_p + b * hidden;
      const scalar_t* __restrict h = h_p + b * hidden;
      scalar_t* __restrict h_next = h_next_p + b * hidden;
      #pragma GCC ivdep  // the rows never overlap
      for (int64_t j = 0; j < hidden; ++j) h_next[j] = n_row[j] + z[j] * (h[j] - n_row[j]);
    }
  }
}

// gi (T, B, 3H), h0 (B, H), w_hh_t (H, 3H), b_hh (3H) -> [hs, rz, ns, ghn]
std::vector<at::Tensor> gru_layer_forward(at::Tensor gi, at::Tensor h0, at::Tensor w_hh_t, at::Tensor b_hh) {
  TORCH_CHECK(gi.dim() == 3 && h0.dim() == 2 && gi.size(1) == h0.size(0) && gi.size(2) == 3 * h0.size(1),
              "gi (T, B, 3H) and h0 (B, H)");
  gi = gi.contiguous();
  const int64_t steps = gi.size(0), batch = gi.size(1), hidden = h0.size(1);
  at::Tensor hs = at::empty({steps + 1, batch, hidden}, gi.options());
  hs[0].copy_(h0);
  at::Tensor rz = at::empty({steps, batch, 2 * hidden}, gi.options());
  at::Tensor ns = at::empty({steps, batch, hidden}, gi.options());
  at::Tensor ghn = at::empty({steps, batch, hidden}, gi.options());
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "gru_layer_forward", [&] {
    forward_loop<scalar_t>(gi, w_hh_t.contiguous(), b_hh.contiguous(), hs, rz, ns, ghn);
  });
  return {hs, rz, ns, ghn};
}

template <typename scalar_t>
void backward_loop(const at::Tensor& d_out, const at::Tensor& hs, const at::Tensor& rz, const at::Tensor& ns,
                   const at::Tensor& ghn, const at::Tensor& w_hh, at::Tensor& dh, at::Tensor& d_gi,
                   at::Tensor& d_gh) {
  const int64_t steps = ns.size(0), batch = ns.size(1), hidden = ns.size(2);
  at::Tensor dh_direct = at::empty_like(dh);               // the part of dh_{t-1} that flows through z
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t at_t = t * batch * hidden;
    const scalar_t* d_out_p = d_out.data_ptr<scalar_t>() + at_t;
    const scalar_t* rz_p = rz.data_ptr<scalar_t>() + t * batch * 2 * hidden;
    const scalar_t* n_p = ns.data_ptr<scalar_t>() + at_t;
    const scalar_t* ghn_p = ghn.data_ptr<scalar_t>() + at_t;
    const scalar_t* h_p = hs.data_ptr<scalar_t>() + at_t;
    scalar_t* d_gi_p = d_gi.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    scalar_t* d_gh_p = d_gh.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* direct_p = dh_direct.data_ptr<scalar_t>();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t row = b * hidden;
      const scalar_t* __restrict r = rz_p + b * 2 * hidden;
      const scalar_t* __restrict z = r + hidden;
      const scalar_t* __restrict n = n_p + row;
      const scalar_t* __restrict gh_n = ghn_p + row;
      const scalar_t* __restrict h = h_p + row;
      const scalar_t* __restrict dh_row = dh_p + row;
      const scalar_t* __restrict d_out_row = d_out_p + row;
      scalar_t* __restrict d_gi_row = d_gi_p + b * 3 * hidden;
      scalar_t* __restrict d_gh_row = d_gh_p + b * 3 * hidden;
      scalar_t* __restrict direct = direct_p + row;
      #pragma GCC ivdep  // the rows never overlap
      for (int64_t j = 0; j < hidden; ++j) {
        const scalar_t g = dh_row[j] + d_out_row[j];                 // dL/dh_t
        const scalar_t d_n = g * (scalar_t(1) - z[j]) * (scalar_t(1) - n[j] * n[j]);  // before the tanh
        const scalar_t d_r = d_n * gh_n[j] * r[j] * (scalar_t(1) - r[j]);          // before the sigmoid
        const scalar_t d_z = g * (h[j] - n[j]) * z[j] * (scalar_t(1) - z[j]);
        d_gi_row[j] = d_r;
        d_gi_row[hidden + j] = d_z;
        d_gi_row[2 * hidden + j] = d_n;
        d_gh_row[j] = d_r;
        d_gh_row[hidden + j] = d_z;
        d_gh_row[2 * hidden + j] = d_n * r[j];
        direct[j] = g * z[j];
      }
    }
    at::addmm_out(dh, dh_direct, d_gh[t], w_hh);            // dL/dh_{t-1} = g z + d_gh W_hh
  }
}

// d_out (T, B, H) or undefined, d_h_last (B, H) or undefined, the forward's saved tensors, w_hh (3H, H)
// -> [d_gi (T, B, 3H), d_gh (T, B, 3H), d_h0 (B, H)]
std::vector<at::Tensor> gru_layer_backward(std::optional<at::Tensor> d_out, std::optional<at::Tensor> d_h_last,
                                           at::Tensor hs, at::Tensor rz, at::Tensor ns, at::Tensor ghn,
                                           at::Tensor w_hh) {
  const int64_t steps = ns.size(0), batch = ns.size(1), hidden = ns.size(2);
  at::Tensor dh = d_h_last.has_value() ? d_h_last->clone(at::MemoryFormat::Contiguous) : at::zeros({batch, hidden}, ns.options());
  // no gradient for the outputs (only the last state is used): zeros keep the loop free of branches
  at::Tensor outs = d_out.has_value() ? d_out->contiguous() : at::zeros({steps, batch, hidden}, ns.options());
  at::Tensor d_gi = at::empty({steps, batch, 3 * hidden}, ns.options());
  at::Tensor d_gh = at::empty({steps, batch, 3 * hidden}, ns.options());
  AT_DISPATCH_FLOATING_TYPES(ns.scalar_type(), "gru_layer_backward", [&] {
    backward_loop<scalar_t>(outs, hs, rz, ns, ghn, w_hh.contiguous(), dh, d_gi, d_gh);
  });
  return {d_gi, d_gh, dh};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(textgen_native, m) {
  m.def("gru_layer_forward(Tensor gi, Tensor h0, Tensor w_hh_t, Tensor b_hh) -> Tensor[]", &gru_layer_forward);
  m.def("gru_layer_backward(Tensor? d_out, Tensor? d_h_last, Tensor hs, Tensor rz, Tensor ns, Tensor ghn, "
        "Tensor w_hh) -> Tensor[]",
        &gru_layer_backward);
}
