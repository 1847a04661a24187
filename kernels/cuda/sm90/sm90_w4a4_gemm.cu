#include "kernels/cuda/sm90/sm90_w4a4_gemm.h"

#include <algorithm>

#include "kernels/cuda/sm90/sm90_w4a4_gemm.cuh"

namespace apex4::cuda {
namespace {

struct Plan {
  int block_n;
  int token_tiles, channel_tiles, splits;
  size_t counter_bytes, partial_bytes;
};

// NOTES: tokens per CTA: 16 for decode, 64 for small batches, otherwise 256 (per-channel, when
// the grid still fills the GPU) or 128 (group-128 needs float accumulators too). Split K only
// when the tiles alone leave SMs idle, never past one wave.
Plan MakePlan(int64_t m, int64_t n, int64_t k, Granularity g, int num_sms) {
  Plan plan{};
  plan.channel_tiles = static_cast<int>(n / sm90::kBlockM);
  auto tiles_for = [&](int bn) { return plan.channel_tiles * static_cast<int>((m + bn - 1) / bn); };
  if (m <= 16) {
    plan.block_n = 16;
  } else if (m <= 64) {
    plan.block_n = 64;
  } else if (g == Granularity::kPerChannel && tiles_for(256) >= num_sms) {
    plan.block_n = 256;
  } else {
    plan.block_n = 128;
  }
  plan.token_tiles = static_cast<int>((m + plan.block_n - 1) / plan.block_n);
  const int tiles = plan.token_tiles * plan.channel_tiles;
  const int k_chunks = static_cast<int>(k / sm90::kBlockK);
  plan.splits = std::max(1, std::min({num_sms / tiles, k_chunks / 2, 16}));
  if (plan.splits > 1) {
    plan.counter_bytes = (static_cast<size_t>(tiles) * 4 + 255) / 256 * 256;
    plan.partial_bytes = static_cast<size_t>(tiles) * plan.splits * sm90::kBlockM * plan.block_n * 4;
  }
  return plan;
}

template <int kBlockN, bool kGroup128>
CudaStatus Launch(const sm90::GemmParams& params, int blocks, cudaStream_t stream) {
  using Cfg = sm90::GemmConfig<kBlockN, kGroup128>;
  auto* kernel = &sm90::sm90_w4a4_bf16_gemm_swapab_kernel<kBlockN, kGroup128>;
  APEX4_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
  kernel<<<blocks, sm90::kThreads, Cfg::kSmemBytes, stream>>>(params);
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return OkCudaStatus();
}

}  // namespace

size_t Sm90W4A4GemmWorkspaceBytes(int64_t m, int64_t n, int64_t k, Granularity granularity,
                                  int num_sms) {
  const Plan plan = MakePlan(m, n, k, granularity, num_sms);
  return plan.counter_bytes + plan.partial_bytes;
}

CudaStatus LaunchSm90W4A4Gemm(const W4A4GemmArgs& args, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(args.x && args.x_scales && args.w && args.w_scales && args.y);
  APEX4_CUDA_CHECK_ARG(args.m > 0 && args.m < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.n > 0 && args.n % sm90::kBlockM == 0 && args.n < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.k > 0 && args.k % sm90::kBlockK == 0 && args.k < (int64_t{1} << 31));
  int device = 0, num_sms = 0;
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  APEX4_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
  const Plan plan = MakePlan(args.m, args.n, args.k, args.granularity, num_sms);
  APEX4_CUDA_CHECK_ARG(args.workspace_bytes >= plan.counter_bytes + plan.partial_bytes);
  APEX4_CUDA_CHECK_ARG(plan.splits == 1 || args.workspace != nullptr);

  sm90::GemmParams params{};
  params.x = args.x;
  params.x_scales = args.x_scales;
  params.w = args.w;
  params.w_scales = args.w_scales;
  params.y = args.y;
  params.m = static_cast<int>(args.m);
  params.n = static_cast<int>(args.n);
  params.k = static_cast<int>(args.k);
  params.token_tiles = plan.token_tiles;
  params.channel_tiles = plan.channel_tiles;
  params.splits = plan.splits;
  if (plan.splits > 1) {
    params.tile_counters = static_cast<int32_t*>(args.workspace);
    params.partials = reinterpret_cast<uint32_t*>(static_cast<char*>(args.workspace) + plan.counter_bytes);
  }
  const int blocks = plan.token_tiles * plan.channel_tiles * plan.splits;
  const bool group128 = args.granularity == Granularity::kGroup128;
  switch (plan.block_n) {
    case 16: return group128 ? Launch<16, true>(params, blocks, stream) : Launch<16, false>(params, blocks, stream);
    case 64: return group128 ? Launch<64, true>(params, blocks, stream) : Launch<64, false>(params, blocks, stream);
    case 128: return group128 ? Launch<128, true>(params, blocks, stream) : Launch<128, false>(params, blocks, stream);
    default: return Launch<256, false>(params, blocks, stream);
  }
}

}  // namespace apex4::cuda
