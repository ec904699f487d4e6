// Batch-1 GRU/LSTM sampling on the CPU as one C++ loop: textgen_core/fused_step.py's step and
// sampling.pick_next's draw: the same operations in the same order.
//
// The sigmoids, tanhs, the softmax and the draw's exponential noise are the ATen kernels the Python step
// calls, on the same buffers and views in the same order, called directly (at::cpu::, past the
// dispatcher); the matrix products are the BLAS call ATen's addmm makes, made directly where it gives
// addmm's bits (checked when the loop is set up); the cells' additions, products and copies and the
// draw's divisions and argmax are plain loops that give ATen's results. So the logits and ids are bit
// for bit those of fused_step.FusedRnnStep (tests/test_native_step.py). What goes is the
// Python between the ops and most of the ops' overhead: at batch 1 each op's dispatch, checks and set-up
// cost about as much as its work.
// Built by textgen_core/native_step.py with the machine's C++ compiler against the installed torch.
#include <ATen/ATen.h>
#include <ATen/CPUFunctions.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

// The BLAS's sgemm, which ATen's addmm calls for float tensors on the CPU: weak, so that a torch without
// it exported still loads the library (then every product goes through at::cpu::addmm_out).
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc) __attribute__((weak));

namespace {

// out (1, G) = bias (G) + x (1, K) @ w_t (K, G), w_t the transposed view of a contiguous (G, K) weight,
// on buffers fixed for the sampler's life. ATen's addmm copies the bias into out and calls
// sgemm('T', 'N', G, 1, K, 1, w, K, x, K, 1, out, G); made so directly it skips the op's dispatch,
// shape checks and the copy's TensorIterator (about 2 us of a product's 3 at the head's size).
struct Product {
  at::Tensor out, bias, x, w_t;
  bool direct = false;

  void run() {
    if (!direct) {
      at::cpu::addmm_out(out, bias, x, w_t);
      return;
    }
    const int g = static_cast<int>(w_t.size(1)), k = static_cast<int>(w_t.size(0)), one = 1;
    const float unit = 1.0f;
    float* result = out.data_ptr<float>();
    std::memcpy(result, bias.data_ptr<float>(), sizeof(float) * g);
    sgemm_("T", "N", &g, &one, &k, &unit, w_t.data_ptr<float>(), &k, x.data_ptr<float>(), &k, &unit, result, &g);
  }

  // Makes the product directly from now on if that gives addmm's bits on these very buffers (a
  // product's rounding can depend on its operands' alignment), x filled with values like a state's and
  // then restored.
  void choose_direct() {
    direct = false;
    if (sgemm_ == nullptr || w_t.stride(0) != 1 || w_t.stride(1) != w_t.size(0) || !out.is_contiguous() ||
        !bias.is_contiguous() || !x.is_contiguous() || w_t.size(1) > std::numeric_limits<int>::max() / 2)
      return;
    const at::Tensor saved = x.clone();
    x.copy_(at::sin(at::arange(x.numel(), x.options()).mul_(0.37)).view_as(x));
    run();
    const at::Tensor expected = out.clone();
    direct = true;
    run();
    direct = std::memcmp(expected.data_ptr<float>(), out.data_ptr<float>(), sizeof(float) * out.numel()) == 0;
    x.copy_(saved);
  }
};

struct RnnSampler : torch::CustomClassHolder {
  bool lstm;
  int64_t layers, table_rows;
  // weights as fused_step keeps them: transposed views (in, G) and (H, G), biases, head (H, V)
  std::vector<at::Tensor> w_ih, w_hh, b_ih, b_hh;
  at::Tensor head_w, head_b, embedding;
  // the first layer's input projection of each id below table_rows, made when the id first comes; the
  // last one made for an id beyond them
  at::Tensor table, fresh_row;
  std::vector<uint8_t> filled;
  // the state (L, 1, H) with each layer's row a view, as ATen unbinds hx; per-step buffers, with each
  // layer's hidden projection (then its gates) in a buffer of its own
  at::Tensor h_state, c_state, x_proj, scratch, logits, scaled, probabilities, noise;
  std::vector<at::Tensor> out, h_rows, c_rows, h_gates, paired_gates;
  std::vector<std::vector<at::Tensor>> gate_parts;
  // the products with fixed operands: each layer's hidden projection, the input projection of each layer
  // above the first (input_products[l - 1]), the head
  std::vector<Product> hidden_products, input_products;
  Product head;
  // the first two gates' sigmoids (LSTM i and f, GRU r and z) as one call where H is a multiple of 32,
  // as FusedRnnStep.paired_sigmoid: it rounds every element as two calls do
  bool paired_sigmoid;
  int64_t steps_taken = 0;
  // layer 0's hidden projection for the next step is already in h_gates[0] (see two_layer_step)
  bool next_projection_made = false;

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
    probabilities = at::empty_like(logits);
    noise = at::empty_like(logits);
    h_rows = h_state.unbind(0);
    c_rows = c_state.unbind(0);
    paired_sigmoid = hidden % 32 == 0;
    for (int64_t l = 0; l < layers; ++l) {
      paired_gates.push_back(h_gates[l].narrow(1, 0, 2 * hidden));
      hidden_products.push_back(Product{h_gates[l], b_hh[l], h_rows[l], w_hh[l]});
      if (l > 0) input_products.push_back(Product{x_proj, b_ih[l], out[l - 1], w_ih[l]});
    }
    head = Product{logits, head_b, out[layers - 1], head_w};
    for_each_product([](Product& product) { product.choose_direct(); });
  }

  template <typename F>
  void for_each_product(F&& visit) {
    for (Product& product : hidden_products) visit(product);
    for (Product& product : input_products) visit(product);
    visit(head);
  }

  void load_state(at::Tensor h, std::optional<at::Tensor> c) {
    h_state.copy_(h);
    if (lstm && c.has_value()) c_state.copy_(*c);
    next_projection_made = false;
  }

  // the layer's input projection (G floats): x_proj, a table row, or fresh_row
  const float* input_projection(int64_t layer, int64_t id) {
    if (layer > 0) {
      input_products[layer - 1].run();
      return x_proj.data_ptr<float>();
    }
    const int64_t gates = table.size(1);
    if (id < table_rows && filled[id]) return table.data_ptr<float>() + id * gates;
    // the one-row product the step makes for this id: a fresh copy of its embedding row times W_ih
    fresh_row = at::addmm(b_ih[0], embedding.narrow(0, id, 1).clone(), w_ih[0]);
    if (id < table_rows) {
      table.narrow(0, id, 1).copy_(fresh_row);
      filled[id] = 1;
    }
    return fresh_row.data_ptr<float>();
  }

  // The cells' additions, products and copies are plain loops over the buffers: one IEEE operation per
  // element each, rounded as ATen's kernels round them (its add computes a + 1*b, exact in one rounding;
  // FLAGS has -ffp-contract=off, so no product and sum are fused), without an op's dispatch and
  // TensorIterator set-up each. The sigmoids and tanhs stay ATen's, whose bits depend on its kernels.
  void sigmoid_pair(int64_t layer) {
    if (paired_sigmoid) {
      at::cpu::sigmoid_(paired_gates[layer]);
    } else {
      at::cpu::sigmoid_(gate_parts[layer][0]);
      at::cpu::sigmoid_(gate_parts[layer][1]);
    }
  }

  void lstm_cell(int64_t layer, const float* ih) {
    // gates = hh + ih; i, f, o sigmoid, g tanh; c = f*c + i*g; h = o*tanh(c)
    std::vector<at::Tensor>& part = gate_parts[layer];
    const int64_t hidden = scratch.size(1), size = 4 * hidden;
    float* gates = h_gates[layer].data_ptr<float>();
    for (int64_t k = 0; k < size; ++k) gates[k] = gates[k] + ih[k];
    sigmoid_pair(layer);
    at::cpu::tanh_(part[2]);
    at::cpu::sigmoid_(part[3]);
    float* c = c_rows[layer].data_ptr<float>();
    const float *in_gate = gates, *forget_gate = gates + hidden, *cell_gate = gates + 2 * hidden;
    for (int64_t k = 0; k < hidden; ++k) {
      const float kept = c[k] * forget_gate[k], added = in_gate[k] * cell_gate[k];
      c[k] = kept + added;
    }
    at::cpu::tanh_out(scratch, c_rows[layer]);
    const float *out_gate = gates + 3 * hidden, *tanh_c = scratch.data_ptr<float>();
    float *h = out[layer].data_ptr<float>(), *state = h_rows[layer].data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) state[k] = h[k] = out_gate[k] * tanh_c[k];
  }

  void gru_cell(int64_t layer, const float* ih) {
    // r = sig(hh_r + ih_r); z = sig(hh_z + ih_z); n = tanh(ih_n + r*hh_n); h = (h - n) * z + n
    const int64_t hidden = scratch.size(1);
    float* gates = h_gates[layer].data_ptr<float>();
    for (int64_t k = 0; k < 2 * hidden; ++k) gates[k] = gates[k] + ih[k];
    sigmoid_pair(layer);
    const float *reset = gates, *update = gates + hidden, *ih_new = ih + 2 * hidden;
    float *hh_new = gates + 2 * hidden, *n = scratch.data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) {
      hh_new[k] = hh_new[k] * reset[k];
      n[k] = ih_new[k] + hh_new[k];
    }
    at::cpu::tanh_(scratch);
    float *h = out[layer].data_ptr<float>(), *state = h_rows[layer].data_ptr<float>();
    for (int64_t k = 0; k < hidden; ++k) {
      const float kept = (state[k] - n[k]) * update[k];
      state[k] = h[k] = kept + n[k];
    }
  }

  void hidden_projection(int64_t layer) { hidden_products[layer].run(); }

  // The order of the products, for the cache: a 2x256 LSTM's three 1 MB matrices (a GRU's 0.75 MB) do
  // not all fit in a core's L2, so each step reads some of them from L3 again. Read in the same order
  // every step, each would be evicted before its next use; so every other step takes them in another
  // order, one that starts with the matrices the step before read last. Each product is the same call
  // on the same buffers in any order, so the bits stay (benchmarks/bench_step_order.py measures orders).
  void step(int64_t id) {
    const bool odd = steps_taken++ & 1;
    if (layers == 2) {
      two_layer_step(id, odd);
    } else {
      // every other step the hidden projections first, from the last layer down (as FusedRnnStep.step)
      const bool hidden_first = layers > 1 && odd;
      if (hidden_first)
        for (int64_t l = layers - 1; l >= 0; --l) hidden_projection(l);
      for (int64_t l = 0; l < layers; ++l) {
        const float* x = input_projection(l, id);
        if (!hidden_first) hidden_projection(l);
        cell(l, x);
      }
    }
    head.run();
  }

  // Layer 0's hidden projection for the next step (A) is made as soon as its new state is, which leaves
  // A, layer 1's input projection (B) and layer 1's hidden one (C) free to go in any order between the
  // two cells: A B C, then C B A. (With more layers the input projections chain through the cells, and
  // the order above measured faster.)
  void two_layer_step(int64_t id, bool reverse) {
    if (!next_projection_made) hidden_projection(0);
    cell(0, input_projection(0, id));
    hidden_projection(reverse ? 1 : 0);
    const float* x = input_projection(1, id);
    hidden_projection(reverse ? 0 : 1);
    cell(1, x);
    next_projection_made = true;
  }

  void cell(int64_t layer, const float* ih) {
    if (lstm) lstm_cell(layer, ih);   // each cell also writes the layer's new state into h_rows[layer]
    else gru_cell(layer, ih);
  }

  // The draw's divisions and argmax are plain loops too, as cheap as the cells' and as exact: ATen divides
  // float tensors, and a float tensor by a number cast to float, with one IEEE division per element;
  // its argmax is the first NaN, else the first of the largest values, whatever order it reduces in.
  // (As ATen ops they took about 15 us of a step, their code fetched anew after the products.)
  static int64_t argmax(const at::Tensor& values) {
    const float* v = values.data_ptr<float>();
    int64_t best = 0;
    for (int64_t k = 1, n = values.numel(); k < n && !std::isnan(v[best]); ++k)
      if (std::isnan(v[k]) || v[k] > v[best]) best = k;
    return best;
  }

  // fused_step.draw: what torch.multinomial(probs, 1) draws for one sample
  int64_t draw(const at::Tensor& probs, at::Tensor& buffer, std::optional<at::Generator> gen) {
    at::cpu::exponential_(buffer, 1, gen);
    const float* p = probs.data_ptr<float>();
    float* q = buffer.data_ptr<float>();
    for (int64_t k = 0, n = buffer.numel(); k < n; ++k) q[k] = p[k] / q[k];
    return argmax(buffer);
  }

  // sampling.pick_next (top_k <= 0 and top_p >= 1 mean no filter)
  int64_t pick(double temperature, int64_t top_k, double top_p, std::optional<at::Generator> gen) {
    if (temperature == 0) return argmax(logits);
    if (top_k <= 0 && top_p >= 1) {
      const float divisor = static_cast<float>(temperature);
      const float* l = logits.data_ptr<float>();
      float* out = scaled.data_ptr<float>();
      for (int64_t k = 0, n = logits.numel(); k < n; ++k) out[k] = l[k] / divisor;
      at::cpu::_softmax_out(probabilities, scaled, -1, false);
      return draw(probabilities, noise, gen);
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

  // how many of the products are made by the direct BLAS call (the rest through at::cpu::addmm_out)
  int64_t direct_products() {
    int64_t count = 0;
    for_each_product([&count](Product& product) { count += product.direct; });
    return count;
  }

  // every product through at::cpu::addmm_out, as where the direct call is missing or differs (for the tests)
  void use_addmm() {
    for_each_product([](Product& product) { product.direct = false; });
  }

  // one unfiltered draw from ``given`` logits: (the id, the scaled logits, the probabilities, their
  // quotients by the noise), for the tests' comparison with ATen's ops
  std::vector<at::Tensor> draw_parts(at::Tensor given, double temperature, std::optional<at::Generator> gen) {
    logits.copy_(given);
    const int64_t id = pick(temperature, 0, 1.0, gen);
    return {at::scalar_tensor(id, at::kLong), scaled.clone(), probabilities.clone(), noise.clone()};
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
      .def("step_logits", &RnnSampler::step_logits)
      .def("direct_products", &RnnSampler::direct_products)
      .def("use_addmm", &RnnSampler::use_addmm)
      .def("draw_parts", &RnnSampler::draw_parts);
}
