// One GRU layer's time loop for training on the CPU, forward and backward: textgen_core/gru_layer.py.
//
// nn.GRU on the CPU runs each step as a dozen small ATen ops, and autograd records them all; its
// backward then makes a (3H, B) x (B, H) weight-gradient product and an accumulation at every step.
// Here a step is one matrix product over the recurrent weights plus one pass of plain loops over the
// gates (sigmoid and tanh through ATen's vectorized kernels), the batch's rows split between the threads;
// the gate gradients of all steps are kept, so gru_layer.py forms the weight gradients as a few products
// over the whole sequence. On two threads, splitting the rows made the training step of a GRU 2x256 (batch
// 32) 1.06-1.09x as fast, of a GRU 1024 (batch 64) 1.05-1.08x.
//
// Shapes (time-major, as nn.GRU lays out its gates r, z, n):
//   gi (T, B, 3H)  x @ W_ih^T + b_ih for every step, made by the caller in one product
//   hs (T+1, B, H) the state before and after each step (hs[0] = h0)
//   rz (T, B, 2H)  the reset and update gates after the sigmoid
//   ns (T, B, H)   the candidate n after the tanh;  ghn (T, B, H): W_hn h + b_hn, which r multiplies
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

// MKL's packed products (the BLAS of torch's x86 builds): a matrix packed once into the layout its
// kernels read, then multiplied many times. Weak, so that a torch without them still loads the library;
// then every product goes through at::addmm_out.
extern "C" {
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k) __attribute__((weak));
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest) __attribute__((weak));
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc) __attribute__((weak));
}

// native/avx2_gemm.cpp: the AVX2 products, b packed once
namespace textgen_gemm {
bool supported();
int64_t packed_size(int64_t k, int64_t n);
void pack(const float* b, int64_t k, int64_t n, int64_t row_stride, int64_t col_stride, float* packed);
void multiply(const float* a, int64_t lda, int64_t m, const float* packed, int64_t k, int64_t n, float* c,
              int64_t ldc);
}  // namespace textgen_gemm

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kMatrixB = 162;

// The product a (M, K) @ w, w the (K, N) right-hand matrix of every step's product. The time loops make
// the same product with the same weights at every step, so the weights are packed once a call:
// - with avx2 (the caller's choice: gru_layer.py asks for it on a CPU with AVX2 and FMA but not AVX-512),
//   into the layout of native/avx2_gemm.cpp's kernels, which made the GRU 1024's step products 1.2-1.45x
//   (one core) and 1.4-1.8x (two) as fast as MKL's on a 2-core AMD EPYC without AVX-512;
// - else by MKL's packed products. On 2 threads that made the (64, 1024) x (1024, 3072) product 1.25-1.4x
//   (AVX2) to 1.7x (AVX-512) as fast, the (32, 256) x (256, 768) one 1.03-1.16x; the packed buffer limits
//   it to the larger matrices (below).
template <typename scalar_t>
struct StepProduct {
  at::Tensor w, packed, avx2;  // packed (MKL's) or avx2 (ours): empty where unused; both for floats only
  int64_t rows;                // M, the rows of every left-hand matrix

  // w (K, N) laid out row by row or column by column (a transposed view of a contiguous weight)
  StepProduct(const at::Tensor& w_, int64_t rows_, bool use_avx2) : w(w_), rows(rows_) {
    if constexpr (std::is_same_v<scalar_t, float>) {
      const int64_t k = w.size(0), n = w.size(1);
      if (use_avx2 && textgen_gemm::supported()) {
        avx2 = at::empty({textgen_gemm::packed_size(k, n)}, w.options());
        textgen_gemm::pack(w.data_ptr<float>(), k, n, w.stride(0), w.stride(1), avx2.data_ptr<float>());
        return;
      }
      const int64_t limit = std::numeric_limits<int>::max() / 4;
      const bool by_rows = w.stride(1) == 1 && w.stride(0) >= w.size(1);
      const bool by_columns = !by_rows && w.stride(0) == 1 && w.stride(1) >= w.size(0);
      if (cblas_sgemm_pack_get_size == nullptr || cblas_sgemm_pack == nullptr || cblas_sgemm_compute == nullptr ||
          !(by_rows || by_columns) || w.numel() > limit || rows * k > limit || rows * n > limit)
        return;
      const size_t bytes = cblas_sgemm_pack_get_size(kMatrixB, static_cast<int>(rows), static_cast<int>(n),
                                                     static_cast<int>(k));
      // MKL asks about 7.5 MB beyond the matrix at any size: many times a small matrix, whose products
      // gained least (1.03-1.16x at 256 x 768). Only where the buffer is under 2.5x the matrix.
      if (bytes > 5 * sizeof(float) * static_cast<size_t>(w.numel()) / 2) return;
      packed = at::empty({static_cast<int64_t>(bytes / sizeof(float)) + 16}, w.options());
      cblas_sgemm_pack(kRowMajor, kMatrixB, by_rows ? kNoTrans : kTrans, static_cast<int>(rows),
                       static_cast<int>(n), static_cast<int>(k), 1.0f, w.data_ptr<float>(),
                       static_cast<int>(by_rows ? w.stride(0) : w.stride(1)), packed.data_ptr<float>());
    }
  }

  // which product runs: "avx2", "mkl packed" or "mm" (for the tests)
  const char* kind() const { return avx2.defined() ? "avx2" : packed.defined() ? "mkl packed" : "mm"; }

  // out (M, N) = a (M, K) @ w; the bias or the other part of a sum is added by the gate passes
  void run(at::Tensor& out, const at::Tensor& a) const {
    const bool rows_contiguous = a.stride(1) == 1 && out.stride(1) == 1;
    if (avx2.defined() && rows_contiguous) {
      textgen_gemm::multiply(reinterpret_cast<const float*>(a.data_ptr()), a.stride(0), a.size(0),
                             avx2.data_ptr<float>(), w.size(0), w.size(1), reinterpret_cast<float*>(out.data_ptr()),
                             out.stride(0));
      return;
    }
    if (!packed.defined() || !a.is_contiguous() || !out.is_contiguous() || a.size(0) != rows) {
      at::mm_out(out, a, w);
      return;
    }
    const int m = static_cast<int>(a.size(0)), k = static_cast<int>(w.size(0)), n = static_cast<int>(w.size(1));
    cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, m, n, k, reinterpret_cast<const float*>(a.data_ptr()), k,
                        packed.data_ptr<float>(), n, 0.0f, reinterpret_cast<float*>(out.data_ptr()), n);
  }
};

// The loops' large buffers (the saved states and gates, the gate gradients: about 290 MB a step for a
// GRU 1024 at batch 64 x 100), kept between calls. glibc hands allocations this large back to the kernel
// when they are freed, so fresh ones cost a page fault and a zeroed page every 4 KB at every step: on a
// 2-core AVX2 EPYC that was about 60,000 faults a step of that GRU. A buffer is reused only when nothing
// but the cache's own tensor holds its memory (an alias handed out, a view of one, or a tensor autograd
// saved for a backward still to come holds it too). Buffers unused for kStaleRequests requests
// go at the next miss, and release_buffers() drops every unused one (the trainer calls it when it ends).
class BufferCache {
 public:
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    const int64_t bytes = c10::multiply_integers(sizes) * static_cast<int64_t>(options.dtype().itemsize());
    if (bytes < kMinBytes) return at::empty(sizes, options);
    std::lock_guard<std::mutex> lock(mutex_);
    ++requests_;
    for (Entry& entry : entries_) {
      if (unused(entry.tensor) && entry.tensor.sizes() == sizes && entry.tensor.dtype() == options.dtype()) {
        entry.last_request = requests_;
        return entry.tensor.alias();
      }
    }
    std::erase_if(entries_, [&](const Entry& entry) {
      return unused(entry.tensor) && requests_ - entry.last_request > kStaleRequests;
    });
    entries_.push_back({at::empty(sizes, options), requests_});
    return entries_.back().tensor.alias();
  }

  // drops every buffer no tensor uses; returns the bytes they held
  int64_t release() {
    std::lock_guard<std::mutex> lock(mutex_);
    int64_t bytes = 0;
    std::erase_if(entries_, [&](const Entry& entry) {
      if (!unused(entry.tensor)) return false;
      bytes += static_cast<int64_t>(entry.tensor.nbytes());
      return true;
    });
    return bytes;
  }

 private:
  static constexpr int64_t kMinBytes = 1 << 20;     // smaller ones come from glibc's heap, no faults
  static constexpr uint64_t kStaleRequests = 64;    // a training step of an L-layer GRU makes 6L requests
  struct Entry {
    at::Tensor tensor;
    uint64_t last_request;
  };
  // Only aliases are handed out (a tensor of their own on the same memory): the cache's tensor never gets
  // a Python object, which would keep a second reference to it for as long as the cache holds it.
  static bool unused(const at::Tensor& tensor) { return tensor.storage().use_count() == 1; }
  std::mutex mutex_;
  std::vector<Entry> entries_;
  uint64_t requests_ = 0;
};

BufferCache& buffers() {
  static BufferCache cache;
  return cache;
}

// The gate passes of a step split the batch's rows between the threads (ATen's, those the products use),
// in tasks of at least this many floats (chosen, not tuned: a GRU 256's batch of 32 splits in two, and
// a small batch stays on one thread, where starting the threads would cost more than they save).
constexpr int64_t kFloatsPerTask = 4096;

int64_t rows_per_task(int64_t hidden) { return std::max<int64_t>(1, kFloatsPerTask / hidden); }

template <typename scalar_t>
void forward_loop(const at::Tensor& gi, const at::Tensor& w_hh_t, const at::Tensor& b_hh, bool avx2, at::Tensor& hs,
                  at::Tensor& rz, at::Tensor& ns, at::Tensor& ghn) {
  const int64_t steps = gi.size(0), batch = gi.size(1), hidden = hs.size(2);
  at::Tensor gh = at::empty({batch, 3 * hidden}, gi.options());
  const scalar_t* gh_p = gh.data_ptr<scalar_t>();
  const scalar_t* bias = b_hh.data_ptr<scalar_t>();
  const StepProduct<scalar_t> recurrent(w_hh_t, batch, avx2);
  for (int64_t t = 0; t < steps; ++t) {
    recurrent.run(gh, hs[t]);                                 // (B, 3H): W_hh h, b_hh added below
    const scalar_t* gi_p = gi.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    scalar_t* rz_p = rz.data_ptr<scalar_t>() + t * batch * 2 * hidden;
    scalar_t* n_p = ns.data_ptr<scalar_t>() + t * batch * hidden;
    scalar_t* ghn_p = ghn.data_ptr<scalar_t>() + t * batch * hidden;
    const scalar_t* h_p = hs.data_ptr<scalar_t>() + t * batch * hidden;
    scalar_t* h_next_p = hs.data_ptr<scalar_t>() + (t + 1) * batch * hidden;
    at::parallel_for(0, batch, rows_per_task(hidden), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* __restrict gi_row = gi_p + b * 3 * hidden;
        const scalar_t* __restrict gh_row = gh_p + b * 3 * hidden;
        scalar_t* __restrict rz_row = rz_p + b * 2 * hidden;
        #pragma GCC ivdep  // the rows never overlap
        for (int64_t j = 0; j < 2 * hidden; ++j) rz_row[j] = gi_row[j] + (gh_row[j] + bias[j]);
      }
      rz[t].narrow(0, begin, end - begin).sigmoid_();
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* __restrict gi_n = gi_p + b * 3 * hidden + 2 * hidden;
        const scalar_t* __restrict gh_n = gh_p + b * 3 * hidden + 2 * hidden;
        const scalar_t* __restrict bias_n = bias + 2 * hidden;
        const scalar_t* __restrict r = rz_p + b * 2 * hidden;
        scalar_t* __restrict n_row = n_p + b * hidden;
        scalar_t* __restrict ghn_row = ghn_p + b * hidden;
        #pragma GCC ivdep  // the rows never overlap
        for (int64_t j = 0; j < hidden; ++j) {
          ghn_row[j] = gh_n[j] + bias_n[j];
          n_row[j] = gi_n[j] + r[j] * ghn_row[j];
        }
      }
      ns[t].narrow(0, begin, end - begin).tanh_();
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t* __restrict z = rz_p + b * 2 * hidden + hidden;
        const scalar_t* __restrict n_row = n_p + b * hidden;
        const scalar_t* __restrict h = h_p + b * hidden;
        scalar_t* __restrict h_next = h_next_p + b * hidden;
        #pragma GCC ivdep  // the rows never overlap
        for (int64_t j = 0; j < hidden; ++j) h_next[j] = n_row[j] + z[j] * (h[j] - n_row[j]);
      }
    });
  }
}

// gi (T, B, 3H), h0 (B, H), w_hh_t (H, 3H), b_hh (3H) -> [hs, rz, ns, ghn]; avx2: the step products
// by avx2_gemm.cpp's kernels where this CPU has AVX2 and FMA (else, and for doubles, by torch's BLAS)
std::vector<at::Tensor> gru_layer_forward(at::Tensor gi, at::Tensor h0, at::Tensor w_hh_t, at::Tensor b_hh,
                                          bool avx2) {
  TORCH_CHECK(gi.dim() == 3 && h0.dim() == 2 && gi.size(1) == h0.size(0) && gi.size(2) == 3 * h0.size(1),
              "gi (T, B, 3H) and h0 (B, H)");
  gi = gi.contiguous();
  const int64_t steps = gi.size(0), batch = gi.size(1), hidden = h0.size(1);
  at::Tensor hs = buffers().empty({steps + 1, batch, hidden}, gi.options());
  hs[0].copy_(h0);
  at::Tensor rz = buffers().empty({steps, batch, 2 * hidden}, gi.options());
  at::Tensor ns = buffers().empty({steps, batch, hidden}, gi.options());
  at::Tensor ghn = buffers().empty({steps, batch, hidden}, gi.options());
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "gru_layer_forward", [&] {
    forward_loop<scalar_t>(gi, w_hh_t, b_hh.contiguous(), avx2, hs, rz, ns, ghn);
  });
  return {hs, rz, ns, ghn};
}

template <typename scalar_t>
void backward_loop(const at::Tensor& d_out, const at::Tensor& hs, const at::Tensor& rz, const at::Tensor& ns,
                   const at::Tensor& ghn, const at::Tensor& w_hh, bool avx2, at::Tensor& dh, at::Tensor& d_gi,
                   at::Tensor& d_gh) {
  const int64_t steps = ns.size(0), batch = ns.size(1), hidden = ns.size(2);
  // dL/dh_{t-1} = direct + dh: the part that flows through z, and d_gh W_hh (made by the product)
  at::Tensor direct = at::zeros_like(dh);
  const StepProduct<scalar_t> recurrent(w_hh, batch, avx2);
  for (int64_t t = steps - 1; t >= 0; --t) {
    const int64_t at_t = t * batch * hidden;
    const scalar_t* d_out_p = d_out.data_ptr<scalar_t>() + at_t;
    const scalar_t* rz_p = rz.data_ptr<scalar_t>() + t * batch * 2 * hidden;
    const scalar_t* n_p = ns.data_ptr<scalar_t>() + at_t;
    const scalar_t* ghn_p = ghn.data_ptr<scalar_t>() + at_t;
    const scalar_t* h_p = hs.data_ptr<scalar_t>() + at_t;
    scalar_t* d_gi_p = d_gi.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    scalar_t* d_gh_p = d_gh.data_ptr<scalar_t>() + t * batch * 3 * hidden;
    const scalar_t* dh_p = dh.data_ptr<scalar_t>();
    scalar_t* direct_p = direct.data_ptr<scalar_t>();
    at::parallel_for(0, batch, rows_per_task(hidden), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
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
        scalar_t* __restrict direct_row = direct_p + row;   // read, then overwritten for the step before
        #pragma GCC ivdep  // the rows never overlap
        for (int64_t j = 0; j < hidden; ++j) {
          const scalar_t g = (direct_row[j] + dh_row[j]) + d_out_row[j];   // dL/dh_t
          const scalar_t d_n = g * (scalar_t(1) - z[j]) * (scalar_t(1) - n[j] * n[j]);  // before the tanh
          const scalar_t d_r = d_n * gh_n[j] * r[j] * (scalar_t(1) - r[j]);          // before the sigmoid
          const scalar_t d_z = g * (h[j] - n[j]) * z[j] * (scalar_t(1) - z[j]);
          d_gi_row[j] = d_r;
          d_gi_row[hidden + j] = d_z;
          d_gi_row[2 * hidden + j] = d_n;
          d_gh_row[j] = d_r;
          d_gh_row[hidden + j] = d_z;
          d_gh_row[2 * hidden + j] = d_n * r[j];
          direct_row[j] = g * z[j];
        }
      }
    });
    recurrent.run(dh, d_gh[t]);                               // d_gh W_hh, of dL/dh_{t-1}
  }
  dh.add_(direct);                                             // dL/dh_0
}

// d_out (T, B, H) or undefined, d_h_last (B, H) or undefined, the forward's saved tensors, w_hh (3H, H)
// -> [d_gi (T, B, 3H), d_gh (T, B, 3H), d_h0 (B, H)]
std::vector<at::Tensor> gru_layer_backward(std::optional<at::Tensor> d_out, std::optional<at::Tensor> d_h_last,
                                           at::Tensor hs, at::Tensor rz, at::Tensor ns, at::Tensor ghn,
                                           at::Tensor w_hh, bool avx2) {
  const int64_t steps = ns.size(0), batch = ns.size(1), hidden = ns.size(2);
  // dh: the gradient at the last state; the loop then makes it d_gh W_hh at each step
  at::Tensor dh = d_h_last.has_value() ? d_h_last->clone(at::MemoryFormat::Contiguous) : at::zeros({batch, hidden}, ns.options());
  // no gradient for the outputs (only the last state is used): zeros keep the loop free of branches
  at::Tensor outs = d_out.has_value() ? d_out->contiguous() : at::zeros({steps, batch, hidden}, ns.options());
  at::Tensor d_gi = buffers().empty({steps, batch, 3 * hidden}, ns.options());
  at::Tensor d_gh = buffers().empty({steps, batch, 3 * hidden}, ns.options());
  AT_DISPATCH_FLOATING_TYPES(ns.scalar_type(), "gru_layer_backward", [&] {
    backward_loop<scalar_t>(outs, hs, rz, ns, ghn, w_hh.contiguous(), avx2, dh, d_gi, d_gh);
  });
  return {d_gi, d_gh, dh};
}

// which product the time loops make with w (K, N), a float matrix, for `rows` rows (for the tests)
std::string gru_step_product(const at::Tensor& w, int64_t rows, bool avx2) {
  return StepProduct<float>(w, rows, avx2).kind();
}

// a (M, K) @ b (K, N), floats, by avx2_gemm.cpp's kernels (for the tests); an error without AVX2 and FMA
at::Tensor avx2_matmul(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(textgen_gemm::supported(), "this CPU lacks AVX2 or FMA");
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0) && a.scalar_type() == at::kFloat &&
                  b.scalar_type() == at::kFloat, "a (M, K) and b (K, N), floats");
  const at::Tensor rows = a.stride(1) == 1 ? a : a.contiguous();
  const StepProduct<float> product(b, rows.size(0), true);
  at::Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  product.run(out, rows);
  return out;
}

// drops the kept buffers no tensor uses; returns the bytes freed
int64_t gru_release_buffers() { return buffers().release(); }

}  // namespace

TORCH_LIBRARY_FRAGMENT(textgen_native, m) {
  m.def("gru_release_buffers() -> int", &gru_release_buffers);
  m.def("gru_step_product(Tensor w, int rows, bool avx2) -> str", &gru_step_product);
  m.def("avx2_matmul(Tensor a, Tensor b) -> Tensor", &avx2_matmul);
  m.def("gru_layer_forward(Tensor gi, Tensor h0, Tensor w_hh_t, Tensor b_hh, bool avx2) -> Tensor[]",
        &gru_layer_forward);
  m.def("gru_layer_backward(Tensor? d_out, Tensor? d_h_last, Tensor hs, Tensor rz, Tensor ns, Tensor ghn, "
        "Tensor w_hh, bool avx2) -> Tensor[]",
        &gru_layer_backward);
}
