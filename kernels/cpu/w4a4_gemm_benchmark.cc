// Times the W4A4 GEMM (activation quantization included) per ISA against an FP32 GEMM and the
// scalar reference, on SmolLM2-135M's and a LLaMA-7B-like layer's shapes, at M = 1, 8, 64.
// Prints µs, weight GB/s and the speed-up over FP32 measured in the same run. The scalar
// reference runs where M·N·K ≤ 2^26 (it is slow).
//
//   bazel build //kernels/cpu:w4a4_gemm_benchmark
//   bazel-bin/kernels/cpu/w4a4_gemm_benchmark [--threads=2] [--min_seconds=0.2] [--noreference]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/int4_quantize.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/cpu/w4a4_gemm.h"
#include "kernels/cpu/w4a4_random_operand.h"
#include "kernels/cpu/w4a4_reference.h"

namespace apex4 {
namespace {

struct LayerShape {
  const char* name;
  int64_t n, k;  // logical K; the W4A4 operands pad it to a multiple of 128
};

constexpr LayerShape kShapes[] = {
    {"smollm2 attn_q/attn_output 576x576", 576, 576}, {"smollm2 attn_k/attn_v 192x576", 192, 576},
    {"smollm2 ffn_gate/ffn_up 1536x576", 1536, 576},  {"smollm2 ffn_down 576x1536", 576, 1536},
    {"smollm2 lm_head 49152x576", 49152, 576},        {"llama7b attn 4096x4096", 4096, 4096},
    {"llama7b ffn_up 11008x4096", 11008, 4096},       {"llama7b ffn_down 4096x11008", 4096, 11008},
};

// Fastest of repeated calls lasting at least `min_seconds` in all: the machine is shared, and the
// minimum is the run least disturbed by neighbours (for the baseline and the kernels alike).
double BestSeconds(const std::function<void()>& fn, double min_seconds) {
  fn();  // warm caches and scratch buffers
  std::vector<double> samples;
  double total = 0;
  while (total < min_seconds || samples.size() < 5) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    samples.push_back(s);
    total += s;
  }
  return *std::min_element(samples.begin(), samples.end());
}

__attribute__((target("avx2"))) float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// FP32 baseline until the engine's FP32 linear lands: y = x · w^T with AVX2 FMA, 4 weight rows
// per pass so each activation load feeds four FMAs, threaded over N like the W4A4 GEMM.
__attribute__((target("avx2,fma"))) void Fp32GemmRowsAvx2(const float* x, int64_t m, const float* w,
                                                          int64_t k, int64_t n_begin, int64_t n_end,
                                                          int64_t n, float* y) {
  for (int64_t j = n_begin; j < n_end; j += 4) {
    const int rows = static_cast<int>(std::min<int64_t>(4, n_end - j));
    for (int64_t i = 0; i < m; ++i) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                       _mm256_setzero_ps()};
      for (int64_t kk = 0; kk < k; kk += 8) {
        const __m256 xv = _mm256_loadu_ps(x + i * k + kk);
        for (int r = 0; r < rows; ++r) {
          acc[r] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + (j + r) * k + kk), acc[r]);
        }
      }
      for (int r = 0; r < rows; ++r) y[i * n + j + r] = HorizontalSum(acc[r]);
    }
  }
}

void Run(int threads, double min_seconds, bool with_reference) {
  ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::printf(
      "W4A4 GEMM benchmark: %d thread(s), best ISA %s; times are best of repeats, quantization "
      "of the activations included; GB/s = weight bytes / time\n",
      threads, CpuIsaName(BestCpuIsa()));
  std::printf("%-36s %4s %10s %10s %10s %10s %8s %8s %8s\n", "shape", "M", "fp32 us", "avx2 us",
              "vnni us", "ref us", "fp32GB/s", "avx2x", "vnnix");
  for (const LayerShape& shape : kShapes) {
    const int64_t k_padded = (shape.k + 127) / 128 * 128;
    std::vector<float> w_fp32(shape.n * shape.k);
    std::normal_distribution<float> normal;
    for (float& v : w_fp32) v = normal(rng);
    RandomW4A4Operand w(shape.n, k_padded, 128, rng);
    for (int64_t m : {1, 8, 64}) {
      std::vector<float> x(m * shape.k), x_padded(m * k_padded, 0.0f);
      for (float& v : x) v = normal(rng);
      for (int64_t i = 0; i < m; ++i) {
        std::memcpy(&x_padded[i * k_padded], &x[i * shape.k], shape.k * sizeof(float));
      }
      std::vector<float> y(m * shape.n);
      std::vector<uint8_t> xq(m * k_padded / 2);
      std::vector<float> xs(m * k_padded / 128);
      const W4A4Operand xo{xq.data(), xs.data(), m, k_padded, 128};

      const double fp32 = BestSeconds(
          [&] {
            pool.ParallelFor(shape.n, 4, [&](int64_t b, int64_t e) {
              Fp32GemmRowsAvx2(x.data(), m, w_fp32.data(), shape.k, b, e, shape.n, y.data());
            });
          },
          min_seconds);
      auto w4a4 = [&](CpuIsa isa) {
        if (!CpuSupports(isa)) return 0.0;
        return BestSeconds(
            [&] {
              (void)QuantizeInt4(x_padded.data(), m, k_padded, 128, 1.0f, xq.data(), xs.data(),
                                 isa);
              (void)W4A4Gemm(xo, w.view, y.data(), {isa, &pool});
            },
            min_seconds);
      };
      const double avx2 = w4a4(CpuIsa::kAvx2);
      const double vnni = w4a4(CpuIsa::kAvx512Vnni);
      double ref = 0;
      if (with_reference && shape.n * k_padded * m <= (int64_t{1} << 26)) {
        ref = BestSeconds(
            [&] {
              (void)QuantizeInt4Reference(x_padded.data(), m, k_padded, 128, 1.0f, xq.data(),
                                          xs.data());
              (void)W4A4GemmReference(xo, w.view, y.data());
            },
            0.0);
      }
      std::printf("%-36s %4lld %10.1f %10.1f %10.1f %10.1f %8.1f %8.2f %8.2f\n", shape.name,
                  static_cast<long long>(m), fp32 * 1e6, avx2 * 1e6, vnni * 1e6, ref * 1e6,
                  shape.n * shape.k * 4 / fp32 * 1e-9, avx2 > 0 ? fp32 / avx2 : 0.0,
                  vnni > 0 ? fp32 / vnni : 0.0);
      std::fflush(stdout);
    }
  }
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  int threads = 2;
  double min_seconds = 0.2;
  bool with_reference = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0) {
      threads = std::stoi(arg.substr(10));
    } else if (arg.rfind("--min_seconds=", 0) == 0) {
      min_seconds = std::stod(arg.substr(14));
    } else if (arg == "--noreference") {
      with_reference = false;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return 2;
    }
  }
  apex4::Run(threads, min_seconds, with_reference);
  return 0;
}
