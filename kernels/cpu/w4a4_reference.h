// Scalar reference for apex4's W4A4 arithmetic: the definition every other kernel (CPU fast
// path, CUDA) is tested against. Written for clarity, not speed.
#ifndef APEX4_KERNELS_CPU_W4A4_REFERENCE_H_
#define APEX4_KERNELS_CPU_W4A4_REFERENCE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/w4a4_format.h"

namespace apex4 {

// Symmetric INT4 quantization of `rows` rows of `k` floats, per group of `group_size` along K:
//   absmax = max |x| over the group,  scale = clip_ratio * absmax / 7,
//   q = clamp(rint(x * (7 / (clip_ratio * absmax))), -7, 7)   (float32 math, round half to even),
//   all-zero group: scale = 0 and q = 0.
// Writes packed (rows × k/2 bytes) and scales (rows × k/group_size). This is the activation
// quantizer's definition; GPU kernels reproduce it bit for bit.
absl::Status QuantizeInt4Reference(const float* x, int64_t rows, int64_t k, int group_size,
                                   float clip_ratio, uint8_t* packed, float* scales);

// Exact int32 partial sums per K-group: partials[(m * N + n) * G + g] = Σ_{k in g} qx[m,k]·qw[n,k]
// with G = K / group_size. `group_size` must divide both operands' group sizes.
absl::Status W4A4GemmInt32Reference(const W4A4Operand& x, const W4A4Operand& w, int group_size,
                                    int32_t* partials);

// Y[m, n] = Σ_g sx[m, g] · sw[n, g] · Σ_{k in g} qx[m,k]·qw[n,k], accumulated in double and
// rounded once to float. Groups are the finer of the two operands' (one must divide the other).
absl::Status W4A4GemmReference(const W4A4Operand& x, const W4A4Operand& w, float* y);

// Checks that x (M × K) and w (N × K) can be multiplied; the message names the bad field.
absl::Status ValidateW4A4Operands(const W4A4Operand& x, const W4A4Operand& w);

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_W4A4_REFERENCE_H_
