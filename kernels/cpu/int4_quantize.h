// Fast symmetric INT4 activation quantizer: the QuantizeInt4Reference rule (w4a4_reference.h)
// bit for bit, vectorised with AVX2, for the per-token and group-128 granularities.
#ifndef APEX4_KERNELS_CPU_INT4_QUANTIZE_H_
#define APEX4_KERNELS_CPU_INT4_QUANTIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/cpu_isa.h"

namespace apex4 {

// Same arguments, outputs and errors as QuantizeInt4Reference. Group sizes that are not a
// multiple of 32 take the reference path (identical results, scalar speed).
absl::Status QuantizeInt4(const float* x, int64_t rows, int64_t k, int group_size, float clip_ratio,
                          uint8_t* packed, float* scales, CpuIsa isa = CpuIsa::kBest);

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_INT4_QUANTIZE_H_
