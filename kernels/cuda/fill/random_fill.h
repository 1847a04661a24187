// Device-side random fills for synthetic weights: a model of LLaMA-2-7B/70B shape is generated
// on the GPU in well under a second instead of gigabytes crossing PCIe. Counter-based (a hash of
// seed and index), so a fill is reproducible and needs no state.
#ifndef APEX4_KERNELS_CUDA_FILL_RANDOM_FILL_H_
#define APEX4_KERNELS_CUDA_FILL_RANDOM_FILL_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

// Uniform in [-amplitude, amplitude], never exactly zero.
CudaStatus FillRandomBf16(__nv_bfloat16* out, int64_t count, uint64_t seed, float amplitude,
                          cudaStream_t stream);
// Uniform in [low, high) (scales: low > 0).
CudaStatus FillRandomFloat(float* out, int64_t count, uint64_t seed, float low, float high,
                           cudaStream_t stream);
// e4m3 values uniform over the finite non-zero codes of magnitude ≤ 448.
CudaStatus FillRandomFp8(__nv_fp8_e4m3* out, int64_t count, uint64_t seed, cudaStream_t stream);
// Packed int4 pairs (kernels/w4a4_format.h) with nibbles uniform in -7..7 except 0.
CudaStatus FillRandomInt4(uint8_t* out, int64_t count_bytes, uint64_t seed, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_FILL_RANDOM_FILL_H_
