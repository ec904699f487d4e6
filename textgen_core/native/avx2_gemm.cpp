// A float matrix product for AVX2 and FMA: c (M, N) = a (M, K) @ b, b packed once and multiplied many
// times (a GRU time loop's recurrent weights, the same at every step: gru_train.cpp).
//
// Why: torch's x86 builds make float products with MKL, which on a 2-core AMD EPYC without AVX-512 ran
// the GRU 1024's step products ((64, 1024) x (1024, 3072) and (64, 3072) x (3072, 1024)) at 49-59 GFLOP/s
// on one core whose FMA units allow about 90; these kernels ran them at 67-73, and at 125-142 on two cores
// against MKL's 70-88 (the best of 80 calls each, BENCHMARKS.md).
//
// The classic layout of such kernels: b is cut into panels of kNr columns, each stored as blocks of kKc
// rows, contiguous and zero-padded past N; a is packed per call the same way, kMr rows at a time. The
// micro-kernel keeps a kMr x kNr tile of c in twelve registers while it walks k, broadcasting one float
// of a and loading two vectors of b per step. The threads split b's panels; a panel's block (16 KB) stays
// in L1 while all of a's row panels pass over it.
//
// The kernels are compiled for AVX2 and FMA whatever the build's flags; supported() says whether this CPU
// may run them, and the caller chooses whether to (gru_train.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace textgen_gemm {

constexpr int64_t kMr = 6;     // rows of a, and of c, per micro-kernel call
constexpr int64_t kNr = 16;    // columns of b and c per panel: two AVX vectors
constexpr int64_t kKc = 256;   // rows of b per panel block: 16 KB, half an L1 data cache

bool supported() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

int64_t panels(int64_t n) { return (n + kNr - 1) / kNr; }

// floats of the packed b (K, N): every panel kNr wide, zero-padded past N
int64_t packed_size(int64_t k, int64_t n) { return k * panels(n) * kNr; }

// b (K, N) with any strides -> packed: block by block of kKc rows, in each block panel by panel, in each
// panel row by row, kNr floats a row. Block p starts at p * kKc * panels * kNr; its panel j at j * kc * kNr.
void pack(const float* b, int64_t k, int64_t n, int64_t row_stride, int64_t col_stride, float* packed) {
  const int64_t count = panels(n);
  at::parallel_for(0, count, 1, [&](int64_t first, int64_t last) {
    for (int64_t block = 0; block < k; block += kKc) {
      const int64_t kc = std::min(kKc, k - block);
      for (int64_t panel = first; panel < last; ++panel) {
        float* out = packed + block * count * kNr + panel * kc * kNr;
        const int64_t col0 = panel * kNr, cols = std::min(kNr, n - col0);
        for (int64_t row = 0; row < kc; ++row) {
          const float* in = b + (block + row) * row_stride + col0 * col_stride;
          int64_t col = 0;
          for (; col < cols; ++col) out[row * kNr + col] = in[col * col_stride];
          for (; col < kNr; ++col) out[row * kNr + col] = 0.0f;
        }
      }
    }
  });
}

// c tile (kMr, kNr) (+)= a packed row panel (kc k's of kMr floats) @ a packed panel block (kc, kNr);
// `rows` and `cols` (at most kMr and kNr) of the tile are stored, the rest computed and dropped.
__attribute__((target("avx2,fma"))) void micro_kernel(int64_t kc, const float* a, const float* b, float* c,
                                                       int64_t ldc, bool accumulate, int64_t rows, int64_t cols) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(),
         c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(),
         c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps(),
         c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b + p * kNr), b1 = _mm256_load_ps(b + p * kNr + 8);
    const float* ap = a + p * kMr;
    __m256 x = _mm256_broadcast_ss(ap);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(ap + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(ap + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(ap + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(ap + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(ap + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  const __m256 tile[kMr][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (rows == kMr && cols == kNr) {
    for (int64_t i = 0; i < kMr; ++i) {
      float* row = c + i * ldc;
      __m256 lo = tile[i][0], hi = tile[i][1];
      if (accumulate) {
        lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
        hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, lo);
      _mm256_storeu_ps(row + 8, hi);
    }
    return;
  }
  alignas(32) float spill[kMr][kNr];
  for (int64_t i = 0; i < kMr; ++i) {
    _mm256_store_ps(spill[i], tile[i][0]);
    _mm256_store_ps(spill[i] + 8, tile[i][1]);
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] = accumulate ? c[i * ldc + j] + spill[i][j] : spill[i][j];
}

// c (M, N), row stride ldc, = a (M, K), row stride lda, @ the packed b (K, N). a is first packed the way
// the micro-kernel reads it (block by block of kKc columns, in each block kMr rows at a time, k by k:
// kMr floats a k, zero rows past M); then the threads split b's panels.
void multiply(const float* a, int64_t lda, int64_t m, const float* packed, int64_t k, int64_t n, float* c,
              int64_t ldc) {
  const int64_t count = panels(n), row_panels = (m + kMr - 1) / kMr;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
    return;
  }
  thread_local std::vector<float> a_packed;   // the calling thread's, kept: a GRU 1024's is 0.8 MB
  a_packed.resize(static_cast<size_t>(row_panels * kMr * k));
  float* ap = a_packed.data();
  at::parallel_for(0, row_panels, 1, [&](int64_t first, int64_t last) {
    for (int64_t block = 0; block < k; block += kKc) {
      const int64_t kc = std::min(kKc, k - block);
      for (int64_t panel = first; panel < last; ++panel) {
        float* out = ap + block * row_panels * kMr + panel * kc * kMr;
        for (int64_t i = 0; i < kMr; ++i) {
          const int64_t row = panel * kMr + i;
          if (row < m) {
            const float* in = a + row * lda + block;
            for (int64_t p = 0; p < kc; ++p) out[p * kMr + i] = in[p];
          } else {
            for (int64_t p = 0; p < kc; ++p) out[p * kMr + i] = 0.0f;
          }
        }
      }
    }
  });
  at::parallel_for(0, count, 1, [&](int64_t first, int64_t last) {
    for (int64_t block = 0; block < k; block += kKc) {
      const int64_t kc = std::min(kKc, k - block);
      for (int64_t panel = first; panel < last; ++panel) {
        const float* b = packed + block * count * kNr + panel * kc * kNr;
        const int64_t col0 = panel * kNr, cols = std::min(kNr, n - col0);
        for (int64_t rp = 0; rp < row_panels; ++rp) {
          const int64_t row0 = rp * kMr;
          micro_kernel(kc, ap + block * row_panels * kMr + rp * kc * kMr, b, c + row0 * ldc + col0, ldc,
                       block > 0, std::min(kMr, m - row0), cols);
        }
      }
    }
  });
}

}  // namespace textgen_gemm
