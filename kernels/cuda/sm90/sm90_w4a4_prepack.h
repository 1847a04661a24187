// Offline re-layout of canonical W4A4 weights for the sm90 GEMM (layout: sm90_w4a4_layout.h).
#ifndef APEX4_KERNELS_CUDA_SM90_SM90_W4A4_PREPACK_H_
#define APEX4_KERNELS_CUDA_SM90_SM90_W4A4_PREPACK_H_

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/w4a4_format.h"

namespace apex4::cuda {

// Host memory in and out; packed: w.rows·w.k/2 bytes, scales: w.rows·w.groups() floats.
CudaStatus PrepackSm90W4A4Weights(const W4A4Operand& w, uint8_t* packed, float* scales);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_SM90_SM90_W4A4_PREPACK_H_
