#include "kernels/cuda/sm80/sm80_w4a4_gemm.h"

#include "kernels/cuda/sm80/sm80_w4a4_gemm.cuh"

namespace apex4::cuda {

CudaStatus LaunchSm80W4A4Gemm(const W4A4GemmArgs& args, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(args.x && args.x_scales && args.w && args.w_scales && args.y);
  APEX4_CUDA_CHECK_ARG(args.m > 0 && args.m < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.n > 0 && args.n % sm80::kBlockChannels == 0 && args.n < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.k > 0 && args.k % 128 == 0 && args.k < (int64_t{1} << 31));
  const sm80::GemmParams params{args.x, args.x_scales, args.w, args.w_scales, args.y,
                                static_cast<int>(args.m), static_cast<int>(args.n),
                                static_cast<int>(args.k)};
  const dim3 grid(static_cast<unsigned>(args.n / sm80::kBlockChannels),
                  static_cast<unsigned>((args.m + sm80::kBlockTokens - 1) / sm80::kBlockTokens));
  if (args.granularity == Granularity::kGroup128) {
    sm80::sm80_w4a4_bf16_gemm_kernel<true><<<grid, sm80::kThreads, 0, stream>>>(params);
  } else {
    sm80::sm80_w4a4_bf16_gemm_kernel<false><<<grid, sm80::kThreads, 0, stream>>>(params);
  }
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return OkCudaStatus();
}

}  // namespace apex4::cuda
