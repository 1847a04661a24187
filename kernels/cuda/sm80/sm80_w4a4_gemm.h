// Host launcher of the portable mma.sync s4 W4A4 GEMM (sm80_w4a4_gemm.cuh).
#ifndef APEX4_KERNELS_CUDA_SM80_SM80_W4A4_GEMM_H_
#define APEX4_KERNELS_CUDA_SM80_SM80_W4A4_GEMM_H_

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {

// Weights and scales in the canonical layout (the portable backend's prepack is the identity).
CudaStatus LaunchSm80W4A4Gemm(const W4A4GemmArgs& args, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_SM80_SM80_W4A4_GEMM_H_
