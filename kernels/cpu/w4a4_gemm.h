// Fast W4A4 GEMM on the CPU: Y[M, N] = X[M, K] · W[N, K]^T on operands in the canonical packed
// layout of kernels/w4a4_format.h, with AVX2 and AVX-512 VNNI microkernels chosen at run time
// and the scalar reference as the fallback. Multi-threaded over N, so that at M = 1 (decode,
// bound by reading the weights) the packed weights are streamed from memory exactly once.
#ifndef APEX4_KERNELS_CPU_W4A4_GEMM_H_
#define APEX4_KERNELS_CPU_W4A4_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/w4a4_format.h"

namespace apex4 {

struct W4A4GemmOptions {
  CpuIsa isa = CpuIsa::kBest;  // an ISA this CPU lacks falls back (ResolveCpuIsa)
  ThreadPool* pool = nullptr;  // null: the calling thread only
};

// y[m * N + n] = Σ_g sx[m, g] · sw[n, g] · Σ_{k in g} qx[m, k] · qw[n, k].
// Needs K a multiple of 128 and each operand's group size 128 or K (the format's granularities).
// The int32 sums per 128-block are exact; their scaled sum is accumulated in float, so y agrees
// with W4A4GemmReference (double accumulation) to float rounding, not bit for bit.
absl::Status W4A4Gemm(const W4A4Operand& x, const W4A4Operand& w, float* y,
                      const W4A4GemmOptions& options = {});

// The integer core alone: block_sums[(m * N + n) * (K / 128) + b] = Σ_{k in block b} qx · qw,
// the layout of W4A4GemmInt32Reference(x, w, 128, ...). It runs the same microkernels as
// W4A4Gemm up to their epilogue, so tests compare it with the reference for exact equality.
absl::Status W4A4GemmBlockSums(const W4A4Operand& x, const W4A4Operand& w, int32_t* block_sums,
                               const W4A4GemmOptions& options = {});

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_W4A4_GEMM_H_
