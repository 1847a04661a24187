// Normalized fast Walsh–Hadamard transform per block, for online rotations of activations
// (QuaRot: before ffn_down, and on keys for the 4-bit KV cache). Each consecutive `block`
// floats of a row become H x / sqrt(block), H the Sylvester Hadamard matrix
// (H_1 = [1], H_2n = [[H, H], [H, -H]]) — the convention of tools/quantizer/hadamard.py, which
// folds the inverse (H is symmetric and orthonormal after scaling: its own inverse) into the
// weights.
#ifndef APEX4_KERNELS_CPU_HADAMARD_TRANSFORM_H_
#define APEX4_KERNELS_CPU_HADAMARD_TRANSFORM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_isa.h"

namespace apex4 {

// In place on x[rows, k]. `block` is a power of two, at least 8, dividing k. The AVX2 path
// performs the reference's butterflies in the same order, so both agree bit for bit.
absl::Status HadamardTransform(float* x, int64_t rows, int64_t k, int block,
                               CpuIsa isa = CpuIsa::kBest);

// The scalar definition the fast path is tested against.
absl::Status HadamardTransformReference(float* x, int64_t rows, int64_t k, int block);

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_HADAMARD_TRANSFORM_H_
