// Times the W4A4 GEMM (activation quantization included) per ISA against the engine's FP32
// GEMM (kernels/cpu/fp32_gemm), a register-blocked FP32 GEMV and the scalar reference, on
// SmolLM2-135M's and LLaMA-7B-like layers, at M = 1, 8, 64. Prints µs, the weights' GB/s and
// speed-ups measured in the same run. With --cold each call reads another copy of the weights,
// ≥ 64 MiB in all (twice the L3), as a decode step over 30 layers does; without it the weights
// stay in cache between calls. The scalar reference runs where M·N·K ≤ 2^26 (it is slow).
//
//   bazel build //kernels/cpu:w4a4_gemm_benchmark
//   bazel-bin/kernels/cpu/w4a4_gemm_benchmark [--threads=2] [--min_seconds=0.2] [--cold]
//                                             [--noreference] [--m=1,8,64] [--nodecode_step]
//                                             [--per_channel]
// The last line times one whole SmolLM2 decode step's projections (see RunDecodeStep).
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
#include "kernels/cpu/fp32_gemm.h"
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

constexpr int64_t kColdBytes = int64_t{64} << 20;

struct Options {
  int threads = 2;
  double min_seconds = 0.2;
  bool cold = false;
  bool reference = true;
  bool decode_step = true;
  bool per_channel = false;  // weights per channel and activations per token, not group-128
  std::vector<int64_t> m_values = {1, 8, 64};
};

// Fastest of repeated calls lasting at least `min_seconds` in all: the machine is shared, and
// the minimum is the run least disturbed by neighbours (for the baselines and the kernels alike).
// `fn` gets the call's index, to pick a copy of the weights.
double BestSeconds(const std::function<void(int)>& fn, double min_seconds) {
  fn(0);  // warm caches and scratch buffers
  double best = 1e30, total = 0;
  for (int i = 1; total < min_seconds || i <= 5; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn(i);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

__attribute__((target("avx2"))) float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// A stricter FP32 baseline than a GEMM built for larger M: 4 weight rows per pass, so each
// activation load feeds four independent FMA chains (at M = 1 one chain is latency-bound).
__attribute__((target("avx2,fma"))) void Fp32GemvRowsAvx2(const float* x, int64_t m, const float* w,
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

int64_t CopiesFor(int64_t bytes, bool cold) {
  return cold ? std::max<int64_t>(1, (kColdBytes + bytes - 1) / bytes) : 1;
}

void Run(const Options& options) {
  ThreadPool pool(options.threads);
  std::mt19937 rng(1);
  std::printf(
      "W4A4 GEMM benchmark: %d thread(s), best ISA %s, %s weights, %s; best of repeats; W4A4 times "
      "include quantizing the activations; fp32 = the engine's Fp32Gemm, gemv = 4-row FMA "
      "GEMV; GB/s = the faster W4A4 kernel's weight bytes / time\n",
      options.threads, CpuIsaName(BestCpuIsa()), options.cold ? "cold (>= 64 MiB cycled)" : "hot",
      options.per_channel ? "per-channel x per-token" : "group-128");
  std::printf("%-36s %3s %9s %9s %9s %9s %10s %7s %7s %7s %7s\n", "shape", "M", "fp32 us",
              "gemv us", "avx2 us", "vnni us", "ref us", "W4 GB/s", "avx2 x", "vnni x", "/gemv");
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const LayerShape& shape : kShapes) {
    const int64_t k_padded = (shape.k + 127) / 128 * 128;
    const int group = options.per_channel ? static_cast<int>(k_padded) : 128;
    const int64_t fp32_bytes = shape.n * shape.k * 4, w4_bytes = shape.n * k_padded / 2;
    std::vector<std::vector<float>> w_fp32(CopiesFor(fp32_bytes, options.cold));
    for (auto& w : w_fp32) {
      w.resize(shape.n * shape.k);
      for (float& v : w) v = uniform(rng);
    }
    std::vector<RandomW4A4Operand> w_int4;
    for (int64_t c = 0; c < CopiesFor(w4_bytes, options.cold); ++c) {
      w_int4.emplace_back(shape.n, k_padded, group, rng);
    }
    for (int64_t m : options.m_values) {
      std::vector<float> x(m * shape.k), x_padded(m * k_padded, 0.0f), y(m * shape.n);
      for (float& v : x) v = uniform(rng);
      for (int64_t i = 0; i < m; ++i) {
        std::memcpy(&x_padded[i * k_padded], &x[i * shape.k], shape.k * sizeof(float));
      }
      std::vector<uint8_t> xq(m * k_padded / 2);
      std::vector<float> xs(m * k_padded / group);
      const W4A4Operand xo{xq.data(), xs.data(), m, k_padded, group};
      auto fp32_weights = [&](int call) { return w_fp32[call % w_fp32.size()].data(); };
      auto int4_weights = [&](int call) { return w_int4[call % w_int4.size()].view; };

      const double fp32 = BestSeconds(
          [&](int call) {
            Fp32Gemm(x.data(), m, fp32_weights(call), shape.n, shape.k, y.data(),
                     {CpuIsa::kBest, &pool});
          },
          options.min_seconds);
      const double gemv = BestSeconds(
          [&](int call) {
            pool.ParallelFor(shape.n, 16, [&](int64_t b, int64_t e) {
              Fp32GemvRowsAvx2(x.data(), m, fp32_weights(call), shape.k, b, e, shape.n, y.data());
            });
          },
          options.min_seconds);
      auto w4a4 = [&](CpuIsa isa) {
        if (!CpuSupports(isa)) return 0.0;
        return BestSeconds(
            [&](int call) {
              (void)QuantizeInt4(x_padded.data(), m, k_padded, group, 1.0f, xq.data(), xs.data(),
                                 isa);
              (void)W4A4Gemm(xo, int4_weights(call), y.data(), {isa, &pool});
            },
            options.min_seconds);
      };
      const double avx2 = w4a4(CpuIsa::kAvx2), vnni = w4a4(CpuIsa::kAvx512Vnni);
      double ref = 0;
      if (options.reference && shape.n * k_padded * m <= (int64_t{1} << 26)) {
        ref = BestSeconds(
            [&](int call) {
              (void)QuantizeInt4Reference(x_padded.data(), m, k_padded, group, 1.0f, xq.data(),
                                          xs.data());
              (void)W4A4GemmReference(xo, int4_weights(call), y.data());
            },
            0.0);
      }
      const double best = vnni > 0 ? std::min(avx2, vnni) : avx2;
      std::printf("%-36s %3lld %9.1f %9.1f %9.1f %9.1f %10.1f %7.1f %7.2f %7.2f %7.2f\n",
                  shape.name, static_cast<long long>(m), fp32 * 1e6, gemv * 1e6, avx2 * 1e6,
                  vnni * 1e6, ref * 1e6, w4_bytes / best * 1e-9, fp32 / avx2,
                  vnni > 0 ? fp32 / vnni : 0.0, gemv / best);
      std::fflush(stdout);
    }
  }
}

// One decode step's projections of SmolLM2-135M (30 blocks × q, k, v, o, gate, up, down; no
// LM head), each with its own weights: 425 MB in FP32, 57 MB in W4A4, so both stream from DRAM
// as in serving. The most direct answer to "how much faster is a 4-bit decode step".
void RunDecodeStep(const Options& options) {
  ThreadPool pool(options.threads);
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  struct Layer {
    int64_t n, k, k_padded;
    std::vector<float> w_fp32;
    RandomW4A4Operand w_int4;
  };
  std::vector<Layer> layers;
  for (int block = 0; block < 30; ++block) {
    for (auto [n, k] : {std::pair<int64_t, int64_t>{576, 576},
                        {192, 576},
                        {192, 576},
                        {576, 576},
                        {1536, 576},
                        {1536, 576},
                        {576, 1536}}) {
      const int64_t k_padded = (k + 127) / 128 * 128;
      std::vector<float> w(n * k);
      for (float& v : w) v = uniform(rng);
      layers.push_back({n, k, k_padded, std::move(w), RandomW4A4Operand(n, k_padded, 128, rng)});
    }
  }
  // One activation row serves every layer: its values (and padding) only matter for timing.
  std::vector<float> x(1536), y(1536), xs(1536 / 128);
  for (float& v : x) v = uniform(rng);
  std::vector<uint8_t> xq(1536 / 2);
  const double fp32 = BestSeconds(
      [&](int) {
        for (const Layer& l : layers) {
          Fp32Gemm(x.data(), 1, l.w_fp32.data(), l.n, l.k, y.data(), {CpuIsa::kBest, &pool});
        }
      },
      options.min_seconds);
  auto w4a4 = [&](CpuIsa isa) {
    if (!CpuSupports(isa)) return 0.0;
    return BestSeconds(
        [&](int) {
          for (const Layer& l : layers) {
            (void)QuantizeInt4(x.data(), 1, l.k_padded, 128, 1.0f, xq.data(), xs.data(), isa);
            (void)W4A4Gemm({xq.data(), xs.data(), 1, l.k_padded, 128}, l.w_int4.view, y.data(),
                           {isa, &pool});
          }
        },
        options.min_seconds);
  };
  const double avx2 = w4a4(CpuIsa::kAvx2), vnni = w4a4(CpuIsa::kAvx512Vnni);
  std::printf(
      "\nSmolLM2-135M decode step, 210 projections at M = 1, distinct weights (%d thread(s)):\n"
      "  fp32 %.0f us, avx2 %.0f us (%.2fx), vnni %.0f us (%.2fx)\n",
      options.threads, fp32 * 1e6, avx2 * 1e6, fp32 / avx2, vnni * 1e6,
      vnni > 0 ? fp32 / vnni : 0.0);
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  apex4::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--threads=", 0) == 0) {
      options.threads = std::stoi(arg.substr(10));
    } else if (arg.rfind("--min_seconds=", 0) == 0) {
      options.min_seconds = std::stod(arg.substr(14));
    } else if (arg == "--cold") {
      options.cold = true;
    } else if (arg == "--noreference") {
      options.reference = false;
    } else if (arg == "--per_channel") {
      options.per_channel = true;
    } else if (arg == "--nodecode_step") {
      options.decode_step = false;
    } else if (arg.rfind("--m=", 0) == 0) {
      options.m_values.clear();
      for (size_t pos = 4; pos < arg.size();) {
        const size_t comma = std::min(arg.find(',', pos), arg.size());
        options.m_values.push_back(std::stoll(arg.substr(pos, comma - pos)));
        pos = comma + 1;
      }
    } else {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return 2;
    }
  }
  apex4::Run(options);
  if (options.decode_step) apex4::RunDecodeStep(options);
  return 0;
}
