// Host launcher of the sm_90a W4A4 GEMM (sm90_w4a4_gemm.cuh).
#ifndef APEX4_KERNELS_CUDA_SM90_SM90_W4A4_GEMM_H_
#define APEX4_KERNELS_CUDA_SM90_SM90_W4A4_GEMM_H_

#include <cstddef>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {

size_t Sm90W4A4GemmWorkspaceBytes(int64_t m, int64_t n, int64_t k, Granularity granularity,
                                  int num_sms);
// Whether an M × K product runs on the decode kernel (which then adds args.outliers itself).
bool Sm90W4A4DecodeRuns(int64_t m, int64_t k);
// Weights and their scales prepacked by PrepackSm90W4A4Weights. args.outliers are added on the
// decode path only (W4A4Gemm adds them after the wgmma kernel).
CudaStatus LaunchSm90W4A4Gemm(const W4A4GemmArgs& args, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_SM90_SM90_W4A4_GEMM_H_
