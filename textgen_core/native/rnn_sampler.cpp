// Batch-1 GRU/LSTM sampling on the CPU as one C++ loop: textgen_core/fused_step.py's step and
// sampling.pick_next's draw: the same operations in the same order.
//
// The products, sigmoids, tanhs and the draw are the ATen ops the Python step calls, on the same buffers
// and views in the same order; the cells' additions, products and copies are plain loops that round as
// ATen's do. So the logits and ids are bit for bit those of fused_step.FusedRnnStep
// (tests/test_native_step.py). What goes is the Python between the ops and most of the small ops
// themselves: at batch 1 each costs a few microseconds of dispatch and set-up, about as much as its work.
// Built by textgen_core/native_step.py with the machine's C++ compiler against the installed torch.
#include <ATen/ATen.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace {

struct RnnSampler : torch::CustomClassHolder {
  bool lstm;
  int64_t layers, table_rows;
  // weights as fused_step keeps them: transposed views (in, G) and (H, G), biases, head (H, V)
  std::vector<at::Tensor> w_ih, w_hh, b_ih, b_hh;
  at::Tensor head_w, head_b, embedding;
  // the first layer's input projection of each id below table_rows, made when the id first comes
  at::Tensor table;
  std::vector<uint8_t> filled;
  // the state (L, 1, H) with each layer's row a view, as ATen unbinds hx; per-step buffers, with each
  // layer's hidden projection (then its gates) in a buffer of its own
  at::Tensor h_state, c_state, x_proj, scratch, logits, scaled, noise;
  std::vector<at::Tensor> out, h_rows, c_rows, h_gates;
  std::vector<std::vector<at::Tensor>> gate_parts;
  int64_t steps_taken = 0;

  RnnSampler(bool is_lstm, std::vector<at::Tensor> w_ih_t, std::vector<at::Tensor> w_hh_t,
             std::vector<at::Tensor> bias_ih, std::vector<at::Tensor> bias_hh, at::Tensor head_weight_t,
             at::Tensor head_bias, at::Tensor embedding_weight, int64_t rows)
      : lstm(is_lstm), layers(static_cast<int64_t>(w_hh_t.size())), table_rows(rows), w_ih(std::move(w_ih_t)),
        w_hh(std::move(w_hh_t)), b_ih(std::move(bias_ih)), b_hh(std::move(bias_hh)),
        head_w(std::move(head_weight_t)), head_b(std::move(head_bias)), embedding(std::move(embedding_weight)) {
    TORCH_CHECK(layers > 0 && static_cast<int64_t>(w_ih.size()) == layers, "one weight per layer");
    const int64_t hidden = w_hh[0].size(0), gates = w_hh[0].size(1), parts = lstm ? 4 : 3;
    table = at::empty({table_rows, gates});
    filled.assign(static_cast<size_t>(table_rows), 0);
    h_state = at::zeros({layers, 1, hidden});
    c_state = at::zeros({layers, 1, hidden});
    for (int64_t l = 0; l < layers; ++l) {
      out.push_back(at::empty({1, hidden}));
      h_gates.push_back(at::empty({1, gates}));
      gate_parts.push_back(h_gates.back().unsafe_chunk(parts, 1));
    }
    x_proj = at::empty({1, gates});
    scratch = at::empty({1, hidden});
    logits = at::empty({1, head_w.size(1)});
    scaled = at::empty_like(logits);
    noise = at::empty_like(logits);
    h_rows = h_state.unbind(0);
    c_rows = c_state.unbind(0);
  }

  void load_state(at::Tensor h, std::optional<at::Tensor> c) {
    h_state.copy_(h);
    if (lstm && c.has_value()) c_state.copy_(*c);
  }

  at::Tensor input_projection(int64_t layer, int64_t id) {
    if (layer > 0) return at::addmm_out(x_proj, b_ih[layer], out[layer - 1], w_ih[layer]);
    if (id < table_rows && filled[id]) return table.narrow(0, id, 1);
    // the one-row product the step makes for this id: a fresh copy of its embedding row times W_ih
    at::Tensor row = at::addmm(b_ih[0], embedding.narrow(0, id, 1).clone(), w_ih[0]);
    if (id < table_rows) {
      table.narrow(0, id, 1).copy_(row);
      filled[id] = 1;
    }
    return row;
  }

  // The cells' additions, products and copies are plain loops over the buffers: one IEEE operation per
  // element each, rounded as ATen's kernels round them (its add computes a + 1*b, exact in one rounding;
  // FLAGS has -ffp-contract=off, so no product and sum are fused), without an op's dispatch and
  // TensorIterator set-up each. The sigmoids and tanhs stay ATen's, whose bits depend on its kernels.
  void lstm_cell(int64_t layer, const at::Tensor& x) {
    // gates = hh + ih; i, f, o sigmoid, g tanh; c = f*c + i*g; h = o*tanh(c)
    const std::vector<at::Tensor>& part = gate_parts[layer];
    const int64_t hidden = scratch.size(1), size = 4 * hidden;
    float* gates = h_gates[layer].data_ptr<float>();
    const float* ih = x.data_ptr<float>();
    for (int64_t k = 0; k < size; ++k) gates[k] = gates[k] + ih[k];
    part[0].sigmoid_();
    part[1].sigmoid_();
    part[2].tanh_();
    part[3].sigmoid_();
    float* c = c_rows[layer].data_ptr<float>();
    const float *in_gate = gates, *forget_gate = gates + hidden, *cell_gate = gates + 2 * hidden;
    for (int64_t k = 0; k < hidden; ++k) {
      const float kept = c[k] * forget_gate[k], added = in_gate[k] * cell_gate[k];
      c[k] = kept + added;
    }
    at::tanh_out(scratch, c_rows[layer]);
    const float *out_gate = gates + 3 * hidden, *tanh_c = scratch.data_ptr<float>();
    float *h = out[layer].data_ptr<float>(), *state = h_rows[layer].data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) state[k] = h[k] = out_gate[k] * tanh_c[k];
  }

  void gru_cell(int64_t layer, const at::Tensor& x) {
    // r = sig(hh_r + ih_r); z = sig(hh_z + ih_z); n = tanh(ih_n + r*hh_n); h = (h - n) * z + n
    const std::vector<at::Tensor>& part = gate_parts[layer];
    const int64_t hidden = scratch.size(1);
    float* gates = h_gates[layer].data_ptr<float>();
    const float* ih = x.data_ptr<float>();
    for (int64_t k = 0; k < 2 * hidden; ++k) gates[k] = gates[k] + ih[k];
    part[0].sigmoid_();
    part[1].sigmoid_();
    const float *reset = gates, *update = gates + hidden, *ih_new = ih + 2 * hidden;
    float *hh_new = gates + 2 * hidden, *n = scratch.data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) {
      hh_new[k] = hh_new[k] * reset[k];
      n[k] = ih_new[k] + hh_new[k];
    }
    scratch.tanh_();
    float *h = out[layer].data_ptr<float>(), *state = h_rows[layer].data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) {
      const float kept = (state[k] - n[k]) * update[k];
      state[k] = h[k] = kept + n[k];
    }
  }

  void hidden_projection(int64_t layer) { at::addmm_out(h_gates[layer], b_hh[layer], h_rows[layer], w_hh[layer]); }

  // every other step the hidden projections first, from the last layer down: see FusedRnnStep.step
  void step(int64_t id) {
    const bool hidden_first = layers > 1 && (steps_taken++ & 1);
    if (hidden_first)
      for (int64_t l = layers - 1; l >= 0; --l) hidden_projection(l);
    for (int64_t l = 0; l < layers; ++l) {
      at::Tensor x = input_projection(l, id);
      if (!hidden_first) hidden_projection(l);
      if (lstm) lstm_cell(l, x);   // each cell also writes the layer's new state into h_rows[l]
      else gru_cell(l, x);
    }
    at::addmm_out(logits, head_b, out[layers - 1], head_w);
  }

  // fused_step.draw: what torch.multinomial(probs, 1) draws for one sample
  int64_t draw(const at::Tensor& probs, at::Tensor& buffer, std::optional<at::Generator> gen) {
    buffer.exponential_(1, gen);
    at::div_out(buffer, probs, buffer);
    return buffer.argmax(-1).item<int64_t>();
  }

  // sampling.pick_next (top_k <= 0 and top_p >= 1 mean no filter)
  int64_t pick(double temperature, int64_t top_k, double top_p, std::optional<at::Generator> gen) {
    if (temperature == 0) return logits.argmax(-1).item<int64_t>();
    if (top_k <= 0 && top_p >= 1) {
      at::div_out(scaled, logits, temperature);
      return draw(at::softmax(scaled, -1), noise, gen);
    }
    at::Tensor filtered = at::div(logits, temperature);
    if (top_k > 0) {   // sampling.top_k_filter
      const int64_t k = std::min<int64_t>(top_k, filtered.size(-1));
      at::Tensor threshold = std::get<0>(at::topk(filtered, k, -1)).narrow(-1, k - 1, 1);
      filtered = filtered.masked_fill(filtered < threshold, -std::numeric_limits<double>::infinity());
    }
    if (top_p < 1) {   // sampling.top_p_filter
      auto [sorted_logits, order] = at::sort(filtered, -1, true);
      at::Tensor probs = at::softmax(sorted_logits, -1);
      at::Tensor drop = (probs.cumsum(-1) - probs) >= top_p;
      drop.select(-1, 0).fill_(false);
      filtered = filtered.masked_fill(drop.scatter(-1, order, drop), -std::numeric_limits<double>::infinity());
    }
    at::Tensor probs = at::softmax(filtered, -1);
    at::Tensor buffer = at::empty_like(probs);
    return draw(probs, buffer, gen);
  }

  // ``steps`` ids, each drawn from the current logits and then fed (the last one only when
  // ``feed_last``); ``first``: the logits to draw the first id from (empty: the carried ones).
  at::Tensor sample(at::Tensor first, int64_t steps, bool feed_last, double temperature, int64_t top_k,
                    double top_p, std::optional<at::Generator> gen) {
    if (first.numel()) logits.copy_(first);
    at::Tensor ids = at::empty({steps}, at::kLong);
    int64_t* id_data = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < steps; ++i) {
      const int64_t id = pick(temperature, top_k, top_p, gen);
      id_data[i] = id;
      if (i + 1 < steps || feed_last) step(id);
    }
    return ids;
  }

  // one step's (1, V) logits, for the tests' bit-for-bit comparison
  at::Tensor step_logits(int64_t id) {
    step(id);
    return logits.clone();
  }
};

}  // namespace

TORCH_LIBRARY(textgen_native, m) {
  m.class_<RnnSampler>("RnnSampler")
      .def(torch::init<bool, std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                       std::vector<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, int64_t>())
      .def("load_state", &RnnSampler::load_state)
      .def("sample", &RnnSampler::sample)
      .def("step_logits", &RnnSampler::step_logits);
}
