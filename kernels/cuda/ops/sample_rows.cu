#include "kernels/cuda/ops/sample_rows.h"

#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/programmatic_launch.cuh"

namespace apex4::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr uint32_t kBestWeight = 1u << 31;
// Rows of up to this many tokens keep their weights in shared memory (4 bytes a token).
constexpr int64_t kMaxStagedTokens = 50 * 1024;
// A bisection pass over the whole row reads every token; once the tokens between the bounds fit
// in this many, they are copied out (4 bytes each, shared memory) and later passes read only them.
constexpr int kShortlistTokens = 4096;
// The weights' octaves (bin b < 32: weights in [2^b, 2^(b+1)); bin 32: weight 0), counted and
// summed as the weights are written, so that each bisection starts inside the octave that holds
// its boundary instead of halving down to it from 2^31 over the whole row. Warps add into one of
// kHistogramCopies copies (shared-memory atomics; fewer warps per address).
constexpr int kOctaveBins = 33;
constexpr int kHistogramCopies = 8;

struct OctaveHistogram {
  uint32_t count[kOctaveBins];
  uint64_t weight[kOctaveBins];
};

__device__ __forceinline__ int OctaveOf(uint32_t w) { return w == 0 ? 32 : 31 - __clz(w); }
// The weights of bin b: [BinLow(b), BinHigh(b)).
__device__ __forceinline__ uint32_t BinLow(int b) { return b == 32 ? 0u : 1u << b; }
__device__ __forceinline__ uint32_t BinHigh(int b) { return b == 32 ? 1u : b == 31 ? kBestWeight + 1 : 2u << b; }

// The tokens ranked at or before a boundary token: weight above `weight`, or equal to it with an
// id up to `last_id`. Every selection is such a prefix; {0, INT_MAX} is every token.
struct RankPrefix {
  uint32_t weight;
  int32_t last_id;
};

__device__ __forceinline__ bool InPrefix(uint32_t weight, int64_t id, RankPrefix prefix) {
  return weight > prefix.weight || (weight == prefix.weight && id <= prefix.last_id);
}

__device__ __forceinline__ int Lane() { return threadIdx.x % 32; }
__device__ __forceinline__ int Warp() { return threadIdx.x / 32; }

__device__ __forceinline__ uint64_t WarpSum(uint64_t v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Block-wide sums over kSumSlots shared values. The slots alternate between two halves, so one
// barrier per call suffices: a warp still reading one half has not reached the next call's
// barrier, after which the half is written again.
constexpr int kSumSlots = 2 * 2 * kWarps;
class BlockSums {
 public:
  __device__ explicit BlockSums(uint64_t* slots) : slots_(slots) {}

  // The sum of `value` over the block, in every thread.
  __device__ uint64_t Sum(uint64_t value) {
    uint64_t unused = 0;
    Sum(value, unused);
    return value;
  }
  // Both sums for one barrier: `a` and `b` become their sums over the block, in every thread.
  __device__ void Sum(uint64_t& a, uint64_t& b) {
    uint64_t* half = NextHalf();
    a = WarpSum(a);
    b = WarpSum(b);
    if (Lane() == 0) {
      half[Warp()] = a;
      half[kWarps + Warp()] = b;
    }
    __syncthreads();
    a = WarpSum(half[Lane()]);
    b = WarpSum(half[kWarps + Lane()]);
  }
  // For a value each warp holds in all its lanes: the sum over the warps before this one.
  __device__ uint64_t OverEarlierWarps(uint64_t warp_value) {
    uint64_t* half = NextHalf();
    if (Lane() == 0) half[Warp()] = warp_value;
    __syncthreads();
    return WarpSum(Lane() < Warp() ? half[Lane()] : 0);
  }

 private:
  __device__ uint64_t* NextHalf() {
    uint64_t* half = slots_ + parity_ * 2 * kWarps;
    parity_ ^= 1;
    return half;
  }
  uint64_t* slots_;
  int parity_ = 0;
};

// The searches in id order give each warp a contiguous run of tokens, walked 32 at a time.
struct WarpRun {
  int64_t begin, end;
};
__device__ __forceinline__ WarpRun RunOfThisWarp(int64_t cols) {
  const int64_t per_warp = ((cols + kWarps - 1) / kWarps + 31) / 32 * 32;
  const int64_t begin = Warp() * per_warp < cols ? Warp() * per_warp : cols;
  return {begin, begin + per_warp < cols ? begin + per_warp : cols};
}

// The id of the n-th token (1-based, in id order) that `matches`; there must be one.
template <typename Matches>
__device__ int32_t NthMatch(int64_t cols, Matches matches, uint64_t n, BlockSums& sums, int32_t* found) {
  const WarpRun run = RunOfThisWarp(cols);
  uint64_t count = 0;
  for (int64_t base = run.begin; base < run.end; base += 32) {
    const int64_t i = base + Lane();
    count += __popc(__ballot_sync(0xffffffffu, i < run.end && matches(i)));
  }
  uint64_t before = sums.OverEarlierWarps(count);
  if (before < n && n <= before + count) {
    for (int64_t base = run.begin; base < run.end; base += 32) {
      const int64_t i = base + Lane();
      const uint32_t hits = __ballot_sync(0xffffffffu, i < run.end && matches(i));
      if (before + __popc(hits) >= n) {
        const int rank = static_cast<int>(n - before);  // among this group's hits
        if ((hits >> Lane() & 1u) && __popc(hits & ((2u << Lane()) - 1u)) == rank) *found = static_cast<int32_t>(i);
        break;
      }
      before += __popc(hits);
    }
  }
  __syncthreads();
  return *found;
}

// The first token, in id order, at which the running weight reaches `target` (1 ≤ target ≤ total).
__device__ int32_t FirstReachingInIdOrder(const uint32_t* weights, int64_t cols, uint64_t target, BlockSums& sums,
                                          int32_t* found) {
  const WarpRun run = RunOfThisWarp(cols);
  uint64_t mine = 0;
  for (int64_t i = run.begin + Lane(); i < run.end; i += 32) mine += weights[i];
  const uint64_t warp_total = WarpSum(mine);
  uint64_t before = sums.OverEarlierWarps(warp_total);
  if (before < target && target <= before + warp_total) {
    for (int64_t base = run.begin; base < run.end; base += 32) {
      const int64_t i = base + Lane();
      uint64_t running = i < run.end ? weights[i] : 0;  // inclusive scan over the lanes
#pragma unroll
      for (int offset = 1; offset < 32; offset <<= 1) {
        const uint64_t lower = __shfl_up_sync(0xffffffffu, running, offset);
        if (Lane() >= offset) running += lower;
      }
      const uint32_t reached = __ballot_sync(0xffffffffu, before + running >= target);
      if (reached != 0) {
        if (Lane() == __ffs(reached) - 1) *found = static_cast<int32_t>(i);
        break;
      }
      before += __shfl_sync(0xffffffffu, running, 31);
    }
  }
  __syncthreads();
  return *found;
}

struct Selection {
  RankPrefix prefix;
  uint64_t measure;  // its token count or weight
};

// Copies the weights in [low, high) (at most kShortlistTokens of them) to `shortlist`; returns
// how many there are.
__device__ int MakeShortlist(const uint32_t* weights, int64_t cols, uint32_t low, uint32_t high, BlockSums& sums,
                             uint32_t* shortlist) {
  uint32_t mine = 0;
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) mine += weights[i] >= low && weights[i] < high;
  uint32_t through_me = mine;  // inclusive scan over the warp's lanes
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const uint32_t lower = __shfl_up_sync(0xffffffffu, through_me, offset);
    if (Lane() >= offset) through_me += lower;
  }
  const uint32_t warp_count = __shfl_sync(0xffffffffu, through_me, 31);
  uint64_t next = sums.OverEarlierWarps(warp_count) + through_me - mine;
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
    const uint32_t w = weights[i];
    if (w >= low && w < high) shortlist[next++] = w;
  }
  return static_cast<int>(sums.Sum(Lane() == 0 ? warp_count : 0));
}

// The shortest prefix of the ranking, within `within`, whose measure (token count, or weight)
// reaches `target` (1 ≤ target ≤ the measure of `within`).
__device__ Selection ShortestPrefixReaching(const uint32_t* weights, int64_t cols, const OctaveHistogram& octaves,
                                            RankPrefix within, bool by_count, uint64_t target, BlockSums& sums,
                                            uint32_t* shortlist, int32_t* found) {
  // Bisect for the boundary weight: the largest t whose tokens weighing ≥ t reach the target.
  // Every token above `within`'s boundary weight is inside it, so the passes need no id test.
  uint32_t low = within.weight;     // reaches the target
  uint32_t high = kBestWeight + 1;  // does not: nothing weighs more than the best token
  uint64_t above = 0;               // the measure of the tokens weighing ≥ high
  // Start in the octave where the running measure of whole octaves (from the top) reaches the
  // target, or the one holding `within`'s boundary, which is only partly inside it.
  for (int j = 0; j < kOctaveBins; ++j) {  // bins from the heaviest: 31, 30, ..., 0, then 32 (zero)
    const int b = j < 32 ? 31 - j : 32;
    const uint64_t measure = by_count ? octaves.count[b] : octaves.weight[b];
    if (BinLow(b) <= within.weight || above + measure >= target) {  // always by bin 32
      low = BinLow(b) > within.weight ? BinLow(b) : within.weight;
      high = BinHigh(b);
      break;
    }
    above += measure;
  }
  // Tokens on the shortlist (all those in [low, high)); -1: none yet.
  const int octave = OctaveOf(low);
  int listed = high - low > 1 && octaves.count[octave] <= kShortlistTokens
                   ? MakeShortlist(weights, cols, low, high, sums, shortlist)
                   : -1;
  while (high - low > 1) {
    const uint32_t mid = low + (high - low) / 2;
    uint64_t upper = 0;   // the measure of the tokens in [mid, high)
    uint64_t halves = 0;  // how many tokens are in [low, mid) (low 32 bits) and in [mid, high)
    if (listed < 0) {
      for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
        const uint32_t w = weights[i];
        if (w >= mid && w < high) {
          upper += by_count ? 1u : w;
          halves += uint64_t{1} << 32;
        } else if (w >= low && w < mid) {
          ++halves;
        }
      }
    } else {
      for (int j = threadIdx.x; j < listed; j += kThreads) {
        const uint32_t w = shortlist[j];  // ≥ the low bound it was made with; tokens ≥ high are in `above`
        if (w >= mid && w < high) upper += by_count ? 1u : w;
      }
    }
    sums.Sum(upper, halves);
    const uint64_t measure = above + upper;  // of every token weighing ≥ mid
    uint32_t left;                           // tokens between the new bounds
    if (measure >= target) {
      low = mid;
      left = static_cast<uint32_t>(halves >> 32);
    } else {
      high = mid;
      above = measure;
      left = static_cast<uint32_t>(halves);
    }
    if (listed < 0 && left <= kShortlistTokens && high - low > 1) {
      listed = MakeShortlist(weights, cols, low, high, sums, shortlist);  // = left
    }
  }
  // Tokens weighing `low` complete the target, lowest ids first.
  const uint64_t each = by_count || low == 0 ? 1 : low;
  const uint64_t ties = (target - above + each - 1) / each;
  const int32_t last = NthMatch(
      cols, [&](int64_t i) { return weights[i] == low && InPrefix(low, i, within); }, ties, sums, found);
  return {{low, last}, above + ties * each};
}

// The draw's target in [1, total]: the running weight must pass uniform · total.
__device__ __forceinline__ uint64_t DrawTarget(double uniform, uint64_t total) {
  const auto passed = static_cast<uint64_t>(floor(uniform * static_cast<double>(total)));
  return passed < total ? passed + 1 : total;
}

// `better` replaces `best` if it is larger, or as large with a lower id; id -1 (nothing above
// -inf) never wins. A total order, so the reduction's order does not matter.
__device__ __forceinline__ void TakeBetter(float& best, int32_t& best_id, float other, int32_t other_id) {
  if (other_id >= 0 && (best_id < 0 || other > best || (other == best && other_id < best_id))) {
    best = other;
    best_id = other_id;
  }
}

__global__ void __launch_bounds__(kThreads)
    sample_rows_kernel(float* x, int64_t ldx, int64_t cols, bool staged, const SamplingRow* params, int32_t* out) {
  StartAfterPrerequisiteGrids();
  extern __shared__ uint32_t staged_weights[];
  __shared__ uint64_t sum_slots[kSumSlots];
  __shared__ uint32_t shortlist[kShortlistTokens];
  __shared__ OctaveHistogram histograms[kHistogramCopies];
  __shared__ float warp_best[kWarps];
  __shared__ int32_t warp_best_id[kWarps];
  __shared__ int32_t found;
  float* row = x + int64_t{blockIdx.x} * ldx;

  // The greedy token, known to every thread. Each thread's ids ascend, so a strict > keeps its
  // first maximum; NaN fails the compare.
  float best = -INFINITY;
  int32_t best_id = -1;
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
    const float v = row[i];
    if (v > best) {
      best = v;
      best_id = static_cast<int32_t>(i);
    }
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    TakeBetter(best, best_id, __shfl_xor_sync(0xffffffffu, best, offset), __shfl_xor_sync(0xffffffffu, best_id, offset));
  }
  if (Lane() == 0) {
    warp_best[Warp()] = best;
    warp_best_id[Warp()] = best_id;
  }
  __syncthreads();
  best = warp_best[Lane()];
  best_id = warp_best_id[Lane()];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    TakeBetter(best, best_id, __shfl_xor_sync(0xffffffffu, best, offset), __shfl_xor_sync(0xffffffffu, best_id, offset));
  }

  const SamplingRow p = params[blockIdx.x];
  const float inverse_temperature = p.temperature > 0.0f ? 1.0f / p.temperature : 0.0f;
  if (best_id < 0 || p.temperature == 0.0f || isinf(best) || isinf(inverse_temperature)) {
    if (threadIdx.x == 0) out[blockIdx.x] = best_id;
    return;
  }

  // Weights (each thread rewrites only the tokens it read) and their octaves.
  for (int i = threadIdx.x; i < kHistogramCopies * kOctaveBins; i += kThreads) {
    histograms[i / kOctaveBins].count[i % kOctaveBins] = 0;
    histograms[i / kOctaveBins].weight[i % kOctaveBins] = 0;
  }
  __syncthreads();
  uint32_t* weights = staged ? staged_weights : reinterpret_cast<uint32_t*>(row);
  const bool in_id_order = p.top_k == 0 && p.top_p >= 1.0f;  // plain temperature: no ranking
  OctaveHistogram& mine = histograms[Warp() % kHistogramCopies];
  for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
    const float v = row[i];
    const uint32_t w = v > -INFINITY ? __float2uint_rn(expf((v - best) * inverse_temperature) * 2147483648.0f) : 0u;
    weights[i] = w;
    if (in_id_order) continue;
    atomicAdd(&mine.count[OctaveOf(w)], 1u);
    if (w != 0) atomicAdd(reinterpret_cast<unsigned long long*>(&mine.weight[OctaveOf(w)]), w);
  }
  __syncthreads();
  if (threadIdx.x < kOctaveBins) {  // the copies' sums into copy 0
    for (int c = 1; c < kHistogramCopies; ++c) {
      histograms[0].count[threadIdx.x] += histograms[c].count[threadIdx.x];
      histograms[0].weight[threadIdx.x] += histograms[c].weight[threadIdx.x];
    }
  }
  __syncthreads();
  const OctaveHistogram* octaves = &histograms[0];

  BlockSums sums(sum_slots);
  int32_t pick;
  if (in_id_order) {
    uint64_t part = 0;
    for (int64_t i = threadIdx.x; i < cols; i += kThreads) part += weights[i];
    const uint64_t total = sums.Sum(part);
    pick = FirstReachingInIdOrder(weights, cols, DrawTarget(p.uniform, total), sums, &found);
  } else {
    RankPrefix kept{0, INT_MAX};
    if (p.top_k > 0 && p.top_k < cols) {
      kept = ShortestPrefixReaching(weights, cols, *octaves, kept, /*by_count=*/true, p.top_k, sums, shortlist, &found).prefix;
    }
    uint64_t part = 0;
    for (int64_t i = threadIdx.x; i < cols; i += kThreads) {
      if (InPrefix(weights[i], i, kept)) part += weights[i];
    }
    uint64_t kept_weight = sums.Sum(part);
    if (p.top_p < 1.0f) {
      const auto nucleus = static_cast<uint64_t>(ceil(static_cast<double>(p.top_p) * static_cast<double>(kept_weight)));
      const uint64_t target = nucleus < 1 ? 1 : nucleus > kept_weight ? kept_weight : nucleus;
      const Selection selection =
          ShortestPrefixReaching(weights, cols, *octaves, kept, /*by_count=*/false, target, sums, shortlist, &found);
      kept = selection.prefix;
      kept_weight = selection.measure;
    }
    pick = ShortestPrefixReaching(weights, cols, *octaves, kept, /*by_count=*/false, DrawTarget(p.uniform, kept_weight), sums,
                                  shortlist, &found)
               .prefix.last_id;
  }
  if (threadIdx.x == 0) out[blockIdx.x] = pick;
}

}  // namespace

CudaStatus SampleRows(float* x, int64_t ldx, int64_t rows, int64_t cols, const SamplingRow* params, int32_t* out,
                      cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= INT_MAX && cols > 0 && cols < INT_MAX && ldx >= cols);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && params != nullptr && out != nullptr);
  const bool staged = cols <= kMaxStagedTokens;
  const size_t smem_bytes = staged ? static_cast<size_t>(cols) * sizeof(uint32_t) : 0;
  if (staged) {
    APEX4_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(sample_rows_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_bytes)));
  }
  return LaunchProgrammatic(sample_rows_kernel, dim3(static_cast<unsigned>(rows)), dim3(kThreads), smem_bytes, stream,
                            x, ldx, cols, staged, params, out);
}

}  // namespace apex4::cuda
