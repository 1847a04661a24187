#include "kernels/cuda/sm90/sm90_w4a4_gemm.h"

#include <algorithm>
#include <vector>

#include "kernels/cuda/sm90/sm90_w4a4_decode_gemm.cuh"
#include "kernels/cuda/sm90/sm90_w4a4_gemm.cuh"

namespace apex4::cuda {
namespace {

// The wgmma path's plan and its workspace: [split-K tile counters][split-K partials]
// [expanded activations][their group-128 scales], each part 256-byte aligned. One workspace
// serves every call (the engine sizes it for its largest), so the counters, which must stay
// zero between calls, get a region of their own at the start whatever the plan: room for
// num_sms tiles (only plans with fewer tiles than that split K), written by nothing else.
struct Plan {
  int block_n;
  int token_tiles, channel_tiles, splits;
  size_t counter_bytes, partial_bytes, x8_bytes, x8_scale_bytes;

  size_t workspace_bytes() const { return counter_bytes + partial_bytes + x8_bytes + x8_scale_bytes; }
};

// NOTES: the split-K factor is the smallest that gives at least half the SMs a unit of work,
// and none where the tiles already do: a split unit costs far more than its share of chunks
// (H200, M = 32 / 64, results/2026-11-27_h200_v14_*: 7B gate_up 38.1 µs at the 3 splits an
// earlier waves × chunks cost model chose vs 23.5 µs unsplit; 70B gate_up 95 vs 75; the rule
// is the best or within 4% of it on all 12 LLaMA layers there). A small cost model then picks
// tokens per CTA (16 for decode, 64 for small batches, 128 or 256 otherwise; group-128 at most
// 192, its float accumulators need the registers): time ≈ waves × (chunks per unit + a fixed
// per-unit cost) × (tile width + a fixed per-chunk cost).
Plan MakePlan(int64_t m, int64_t n, int64_t k, Granularity g, int num_sms) {
  constexpr int kUnitOverheadChunks = 4, kChunkOverheadTokens = 64, kMinChunksPerSplit = 4;
  const int channel_tiles = static_cast<int>(n / sm90::kBlockM);
  const int k_chunks = static_cast<int>(k / sm90::kBlockK);
  std::vector<int> widths;
  if (m <= 16) {
    widths = {16};
  } else if (m <= 64) {
    widths = {64};
  } else if (g == Granularity::kPerChannel) {
    widths = {128, 256};
  } else {
    widths = {128, 192};
  }
  Plan best{};
  double best_cost = 0;
  for (int bn : widths) {
    const int token_tiles = static_cast<int>((m + bn - 1) / bn);
    const int tiles = token_tiles * channel_tiles;
    const int wanted = (num_sms / 2 + tiles - 1) / tiles;  // ≥ 2 only for tiles < num_sms / 2
    const int splits = std::max(1, std::min({wanted, 16, k_chunks / kMinChunksPerSplit}));
    const int waves = (tiles * splits + num_sms - 1) / num_sms;
    const double cost =
        double(waves) * (double(k_chunks) / splits + kUnitOverheadChunks) * (bn + kChunkOverheadTokens);
    if (best.block_n == 0 || cost < best_cost * 0.98) {
      best = Plan{bn, token_tiles, channel_tiles, splits, 0, 0, 0, 0};
      best_cost = cost;
    }
  }
  best.counter_bytes = (static_cast<size_t>(num_sms) * 4 + 255) / 256 * 256;
  if (best.splits > 1) {
    const size_t tiles = static_cast<size_t>(best.token_tiles) * best.channel_tiles;
    best.partial_bytes = tiles * best.splits * sm90::kBlockM * best.block_n * 4;
  }
  const size_t m_pad = static_cast<size_t>(best.token_tiles) * best.block_n;
  best.x8_bytes = m_pad * static_cast<size_t>(k);
  if (g == Granularity::kGroup128) best.x8_scale_bytes = m_pad * static_cast<size_t>(k_chunks) * 4;
  return best;
}

template <int kBlockN, bool kGroup128>
CudaStatus Launch(const sm90::GemmParams& params, int blocks, cudaStream_t stream) {
  using Cfg = sm90::GemmConfig<kBlockN, kGroup128>;
  auto* kernel = &sm90::sm90_w4a4_bf16_gemm_swapab_kernel<kBlockN, kGroup128>;
  APEX4_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes));
  return LaunchProgrammatic(kernel, dim3(blocks), dim3(sm90::kThreads), Cfg::kSmemBytes, stream, params);
}

// Decode: launched with programmatic dependent launch, so its weight prefetch overlaps the
// kernel before it.
template <int kTiles, bool kGroup128, int kWarps>
CudaStatus LaunchDecode(const sm90::GemmParams& params, cudaStream_t stream) {
  const dim3 grid(params.n / sm90::kStripChannels), block(32 * kWarps);
  return params.outlier_stride > 0
             ? LaunchProgrammatic(&sm90::sm90_w4a4_decode_gemm_kernel<kTiles, kGroup128, kWarps, true>, grid, block,
                                  0, stream, params)
             : LaunchProgrammatic(&sm90::sm90_w4a4_decode_gemm_kernel<kTiles, kGroup128, kWarps, false>, grid, block,
                                  0, stream, params);
}

// NOTES: with at most two 16-channel strips per SM (N ≤ 4224 on 132 SMs: 7B/8B o and down),
// 8 warps per strip leave most of the SM's warp slots empty; 16 warps, each on half the K
// chunks, took those layers from 5.3 to 4.0 µs (o) and 9.7 to 7.9 µs (7B down) at M = 1 on H200,
// and were slower on wider layers (7B gate_up 14.2 → 16.5 µs) and for group-128 with two token
// tiles (82 registers: fewer resident CTAs). 4 and 32 warps lost everywhere
// (kernels/cuda/results/2026-11-27_h200_decode_warps.txt).
template <int kTiles, bool kGroup128>
CudaStatus LaunchDecode(const sm90::GemmParams& params, int num_sms, cudaStream_t stream) {
  const bool wide_k_split = params.n / sm90::kStripChannels <= 2 * num_sms && !(kGroup128 && kTiles == 2);
  return wide_k_split ? LaunchDecode<kTiles, kGroup128, 16>(params, stream)
                      : LaunchDecode<kTiles, kGroup128, 8>(params, stream);
}

// NOTES: H200, 7B/70B/8B layers: the decode kernel beats the wgmma kernel at every shape up to
// 8 tokens (1.2-1.9×). With 9-16 tokens every CTA reads all M × K/2 activation bytes (L2, not
// L1, once they exceed ~128 KB), which lost on 70B down (K = 28672): those stay on wgmma.
bool UseDecode(int64_t m, int64_t k) {
  return m <= 8 || (m <= sm90::kDecodeMaxTokens && m * k / 2 <= 128 * 1024);
}

}  // namespace

bool Sm90W4A4DecodeRuns(int64_t m, int64_t k) { return UseDecode(m, k); }

size_t Sm90W4A4GemmWorkspaceBytes(int64_t m, int64_t n, int64_t k, Granularity granularity,
                                  int num_sms) {
  if (UseDecode(m, k)) return 0;
  return MakePlan(m, n, k, granularity, num_sms).workspace_bytes();
}

CudaStatus LaunchSm90W4A4Gemm(const W4A4GemmArgs& args, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(args.x && args.x_scales && args.w && args.w_scales && args.y);
  APEX4_CUDA_CHECK_ARG(args.m > 0 && args.m < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.n > 0 && args.n % sm90::kBlockM == 0 && args.n < (int64_t{1} << 31));
  APEX4_CUDA_CHECK_ARG(args.k > 0 && args.k % sm90::kBlockK == 0 && args.k < (int64_t{1} << 31));
  const bool group128 = args.granularity == Granularity::kGroup128;
  sm90::GemmParams params{};
  params.x = args.x;
  params.x_scales = args.x_scales;
  params.w = args.w;
  params.w_scales = args.w_scales;
  params.y = args.y;
  params.m = static_cast<int>(args.m);
  params.n = static_cast<int>(args.n);
  params.k = static_cast<int>(args.k);
  int device = 0, num_sms = 0;
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  APEX4_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, device));
  if (UseDecode(args.m, args.k)) {
    if (args.outliers != nullptr) {
      const W4A4GemmOutliers& o = *args.outliers;
      params.outlier_x = o.x_q8;
      params.outlier_x_scales = o.x_scales;
      params.outlier_w = o.weights;
      params.outlier_w_scales = o.weight_scales;
      params.outlier_stride = static_cast<int>(o.codes_stride);
    }
    if (args.m <= 8) {
      return group128 ? LaunchDecode<1, true>(params, num_sms, stream) : LaunchDecode<1, false>(params, num_sms, stream);
    }
    return group128 ? LaunchDecode<2, true>(params, num_sms, stream) : LaunchDecode<2, false>(params, num_sms, stream);
  }
  const Plan plan = MakePlan(args.m, args.n, args.k, args.granularity, num_sms);
  APEX4_CUDA_CHECK_ARG(args.workspace != nullptr && args.workspace_bytes >= plan.workspace_bytes());

  char* workspace = static_cast<char*>(args.workspace);
  params.token_tiles = plan.token_tiles;
  params.channel_tiles = plan.channel_tiles;
  params.splits = plan.splits;
  params.m_pad = plan.token_tiles * plan.block_n;
  if (plan.splits > 1) {
    params.tile_counters = reinterpret_cast<int32_t*>(workspace);
    params.partials = reinterpret_cast<uint32_t*>(workspace + plan.counter_bytes);
  }
  workspace += plan.counter_bytes + plan.partial_bytes;
  uint8_t* x8 = reinterpret_cast<uint8_t*>(workspace);
  float* x8_scales = group128 ? reinterpret_cast<float*>(workspace + plan.x8_bytes) : nullptr;
  params.x8 = x8;
  params.x8_scales = x8_scales;

  const sm90::ExpandParams expand{params.x, group128 ? params.x_scales : nullptr, x8, x8_scales,
                                  params.m, params.m_pad, params.k};
  const int64_t pieces = int64_t{params.m_pad} * (params.k / sm90::kBlockK) * 4;
  const int expand_blocks = static_cast<int>(
      std::min<int64_t>((pieces + sm90::kExpandThreads - 1) / sm90::kExpandThreads, int64_t{num_sms} * 8));
  APEX4_CUDA_RETURN_IF_NOT_OK(LaunchProgrammatic(&sm90::sm90_w4a4_expand_activations_kernel, dim3(expand_blocks),
                                                 dim3(sm90::kExpandThreads), 0, stream, expand));
  // Persistent: one CTA per SM (the ring takes the SM's shared memory), units handed round-robin.
  const int blocks = std::min(plan.token_tiles * plan.channel_tiles * plan.splits, num_sms);
  switch (plan.block_n) {
    case 16: return group128 ? Launch<16, true>(params, blocks, stream) : Launch<16, false>(params, blocks, stream);
    case 64: return group128 ? Launch<64, true>(params, blocks, stream) : Launch<64, false>(params, blocks, stream);
    case 128: return group128 ? Launch<128, true>(params, blocks, stream) : Launch<128, false>(params, blocks, stream);
    case 192: return Launch<192, true>(params, blocks, stream);
    default: return Launch<256, false>(params, blocks, stream);
  }
}

}  // namespace apex4::cuda
