// Full-precision GEMM on the CPU: Y[M, N] = X[M, K] · W[N, K]^T, the engine's FP32 linear
// layers. AVX2/FMA register tiles (up to 4 X rows × 4 W rows) chosen at run time, a scalar
// fallback, multi-threaded over N. At M = 1 (decode) the work is bound by reading W, so each
// thread streams its own rows of W once; for larger M, each grain of 16 W rows stays in cache
// while every block of X rows passes over it.
#ifndef APEX4_KERNELS_CPU_FP32_GEMM_H_
#define APEX4_KERNELS_CPU_FP32_GEMM_H_

#include <cstdint>

#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

struct Fp32GemmOptions {
  CpuIsa isa = CpuIsa::kBest;  // an ISA this CPU lacks falls back (ResolveCpuIsa)
  ThreadPool* pool = nullptr;  // null: the calling thread only
};

// y[i * n + j] = Σ_k x[i * k + kk] · w[j * k + kk] for i < m, j < n. All row-major, dense.
void Fp32Gemm(const float* x, int64_t m, const float* w, int64_t n, int64_t k, float* y,
              const Fp32GemmOptions& options = {});

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_FP32_GEMM_H_
