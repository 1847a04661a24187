// Times PagedAttention (and RopeAndWriteKv) on LLaMA-2-7B (32 heads, 32 KV heads, D 128) and
// LLaMA-2-70B (64 heads, 8 KV heads, D 128) shapes, one layer, fp16 and INT4 caches, with
// cudaEvents:
// - decode, batch 1/16/64 × context 512/2048/4096 (every sequence at that context): µs and
//   achieved GB/s (K and V of every context read once — codes and scales for INT4 — plus q and
//   out). "cold" flushes L2 before every launch (a real step reads each layer's cache once);
//   "hot" is back-to-back launches; fp16/int4 is the cold-time ratio.
// - prefill of 2048 tokens (one sequence, empty cache before it) and a 512-token chunk after
//   1536 tokens of context: µs and TFLOPS counting the causal work only (4·D flops per
//   (query, key) pair: Q·K^T and P·V).
// Usage: paged_attention_benchmark [iterations (default 20) [batch context]]: with batch and
// context, only that decode row (any batch and context; e.g. under a profiler). Prints "no CUDA
// device" and exits 0 without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cuda/attention/paged_attention.h"

namespace apex4::cuda {
namespace {

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::printf("FATAL %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define CHECK_CUDA(call) Check((call), #call)

void CheckStatus(const CudaStatus& s) {
  if (!s.ok()) {
    std::printf("FATAL %s (%s at %s:%d)\n", cudaGetErrorString(s.code), s.statement, s.file, s.line);
    std::exit(1);
  }
}

struct Shape {
  const char* name;
  int heads, kv_heads, head_dim;
};

// Device buffers for one configuration: num_seqs sequences, each appending query_len tokens to
// reach `context`. Block ids are shuffled across the pool.
class Setup {
 public:
  Setup(const Shape& shape, KvCacheFormat format, int num_seqs, int query_len, int context, std::mt19937& rng)
      : shape_(shape) {
    const int H = shape.heads, KV = shape.kv_heads, D = shape.head_dim;
    const int blocks_per_seq = (context + kKvBlockTokens - 1) / kKvBlockTokens;
    const int64_t num_blocks = int64_t{num_seqs} * blocks_per_seq;
    cache_.format = format;
    cache_.block_stride = KvCacheBlockBytes(format, KV, D);
    num_tokens_ = int64_t{num_seqs} * query_len;
    const int64_t pool_bytes = num_blocks * cache_.block_stride;
    CHECK_CUDA(cudaMalloc(&cache_.k, pool_bytes));
    CHECK_CUDA(cudaMalloc(&cache_.v, pool_bytes));
    // Small finite values (fp16 0x3333 ≈ 0.22; INT4 codes 3, scales ≈ 4e-8): the timing does not
    // depend on them.
    CHECK_CUDA(cudaMemset(cache_.k, 0x33, pool_bytes));
    CHECK_CUDA(cudaMemset(cache_.v, 0x33, pool_bytes));
    CHECK_CUDA(cudaMalloc(&q_, num_tokens_ * H * D * 2));
    CHECK_CUDA(cudaMemset(q_, 0x33, num_tokens_ * H * D * 2));
    ld_qkv_ = int64_t{H + 2 * KV} * D;
    CHECK_CUDA(cudaMalloc(&qkv_, num_tokens_ * ld_qkv_ * 2));
    CHECK_CUDA(cudaMemset(qkv_, 0x3e, num_tokens_ * ld_qkv_ * 2));
    CHECK_CUDA(cudaMalloc(&out_, num_tokens_ * H * D * 2));
    std::vector<float> rope(int64_t{context} * D);
    for (int pos = 0; pos < context; ++pos) {
      for (int i = 0; i < D / 2; ++i) {
        const double angle = pos * std::pow(10000.0, -2.0 * i / D);
        rope[(int64_t{pos} * (D / 2) + i) * 2] = static_cast<float>(std::cos(angle));
        rope[(int64_t{pos} * (D / 2) + i) * 2 + 1] = static_cast<float>(std::sin(angle));
      }
    }
    CHECK_CUDA(cudaMalloc(&rope_, rope.size() * 4));
    CHECK_CUDA(cudaMemcpy(rope_, rope.data(), rope.size() * 4, cudaMemcpyHostToDevice));
    max_positions_ = context;

    std::vector<int32_t> ids(num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::vector<int32_t> query_start(num_seqs + 1), context_len(num_seqs, context);
    for (int s = 0; s <= num_seqs; ++s) query_start[s] = s * query_len;
    CHECK_CUDA(cudaMalloc(&query_start_, query_start.size() * 4));
    CHECK_CUDA(cudaMalloc(&context_len_, context_len.size() * 4));
    CHECK_CUDA(cudaMalloc(&tables_, ids.size() * 4));
    CHECK_CUDA(cudaMemcpy(query_start_, query_start.data(), query_start.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(context_len_, context_len.data(), context_len.size() * 4, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(tables_, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));

    batch_.query_start = query_start_;
    batch_.context_len = context_len_;
    batch_.block_tables = tables_;
    batch_.block_table_stride = blocks_per_seq;
    batch_.num_seqs = num_seqs;
    batch_.num_tokens = num_tokens_;
    batch_.max_query_len = query_len;
    batch_.max_context_len = context;
    shape_api_ = AttentionShape{H, KV, D};
    workspace_bytes_ = PagedAttentionWorkspaceBytes(batch_, shape_api_);
    if (workspace_bytes_ > 0) CHECK_CUDA(cudaMalloc(&workspace_, workspace_bytes_));
  }
  ~Setup() {
    for (void* p :
         {cache_.k, cache_.v, static_cast<void*>(q_), static_cast<void*>(qkv_),
          static_cast<void*>(out_), static_cast<void*>(rope_), static_cast<void*>(query_start_),
          static_cast<void*>(context_len_), static_cast<void*>(tables_), workspace_}) {
      cudaFree(p);
    }
  }

  void Attention(cudaStream_t stream) const {
    CheckStatus(PagedAttention(q_, cache_, batch_, shape_api_,
                               1.0f / std::sqrt(static_cast<float>(shape_.head_dim)), workspace_, out_,
                               int64_t{shape_.heads} * shape_.head_dim, stream));
  }
  void Rope(cudaStream_t stream) const {
    // INT4: with the q/k rotation, the most work a cache write does.
    KvInt4Options int4;
    int4.rotate_keys = true;
    CheckStatus(RopeAndWriteKv(qkv_, ld_qkv_, batch_, shape_api_, rope_, max_positions_, q_, cache_, int4, stream));
  }
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  Shape shape_;
  AttentionBatch batch_;
  AttentionShape shape_api_{};
  KvCacheLayer cache_;
  int64_t num_tokens_ = 0, ld_qkv_ = 0;
  int32_t max_positions_ = 0;
  __half* q_ = nullptr;
  __nv_bfloat16 *qkv_ = nullptr, *out_ = nullptr;
  float* rope_ = nullptr;
  int32_t *query_start_ = nullptr, *context_len_ = nullptr, *tables_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
};

class Timer {
 public:
  Timer() {
    CHECK_CUDA(cudaEventCreate(&start_));
    CHECK_CUDA(cudaEventCreate(&stop_));
    CHECK_CUDA(cudaMalloc(&flush_, kFlushBytes));
  }
  ~Timer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
    cudaFree(flush_);
  }
  // Median µs of `iterations` launches, each after an L2 flush.
  template <typename F>
  double Cold(F&& launch, int iterations) {
    std::vector<float> ms(iterations);
    for (int i = 0; i < iterations; ++i) {
      CHECK_CUDA(cudaMemsetAsync(flush_, i & 0xff, kFlushBytes, nullptr));
      CHECK_CUDA(cudaEventRecord(start_, nullptr));
      launch();
      CHECK_CUDA(cudaEventRecord(stop_, nullptr));
      CHECK_CUDA(cudaEventSynchronize(stop_));
      CHECK_CUDA(cudaEventElapsedTime(&ms[i], start_, stop_));
    }
    std::sort(ms.begin(), ms.end());
    return 1000.0 * ms[iterations / 2];
  }
  // Mean µs of `iterations` back-to-back launches.
  template <typename F>
  double Hot(F&& launch, int iterations) {
    launch();
    CHECK_CUDA(cudaEventRecord(start_, nullptr));
    for (int i = 0; i < iterations; ++i) launch();
    CHECK_CUDA(cudaEventRecord(stop_, nullptr));
    CHECK_CUDA(cudaEventSynchronize(stop_));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start_, stop_));
    return 1000.0 * ms / iterations;
  }

 private:
  static constexpr size_t kFlushBytes = size_t{256} << 20;  // > L2 (50 MB on H100/H200)
  cudaEvent_t start_, stop_;
  void* flush_ = nullptr;
};

int Main(int argc, char** argv) {
  const int iterations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const int only_batch = argc > 3 ? std::atoi(argv[2]) : 0;
  const int only_context = argc > 3 ? std::atoi(argv[3]) : 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs), %d iterations, median of cold (L2 flushed) launches\n",
              prop.name, prop.major, prop.minor, prop.multiProcessorCount, iterations);
  std::mt19937 rng(1);
  Timer timer;
  const Shape shapes[] = {{"llama2-7b", 32, 32, 128}, {"llama2-70b", 64, 8, 128}};

  std::printf("\ndecode (query_len 1, all sequences at the context)\n");
  std::printf("%-11s %5s %5s %7s %10s %9s %10s %10s %9s %9s\n", "shape", "cache", "batch", "context", "cold us",
              "GB/s", "hot us", "rope us", "split-KV", "fp16/int4");
  const std::vector<int> batches = only_batch > 0 ? std::vector<int>{only_batch} : std::vector<int>{1, 16, 64};
  const std::vector<int> contexts =
      only_batch > 0 ? std::vector<int>{only_context} : std::vector<int>{512, 2048, 4096};
  for (const Shape& shape : shapes) {
    for (int batch : batches) {
      for (int context : contexts) {
        double fp16_cold = 0;
        for (const KvCacheFormat format : {KvCacheFormat::kFp16, KvCacheFormat::kInt4}) {
          Setup setup(shape, format, batch, 1, context, rng);
          const double cold = timer.Cold([&] { setup.Attention(nullptr); }, iterations);
          const double hot = timer.Hot([&] { setup.Attention(nullptr); }, iterations);
          const double rope = timer.Hot([&] { setup.Rope(nullptr); }, iterations);
          const double kv_bytes =
              2.0 * batch * context * KvCacheBlockBytes(format, shape.kv_heads, shape.head_dim) / kKvBlockTokens;
          const double io_bytes = 2.0 * batch * shape.heads * shape.head_dim * 2;  // q in, out
          const bool int4 = format == KvCacheFormat::kInt4;
          if (!int4) fp16_cold = cold;
          std::printf("%-11s %5s %5d %7d %10.1f %9.0f %10.1f %10.1f %9s", shape.name, int4 ? "int4" : "fp16", batch,
                      context, cold, (kv_bytes + io_bytes) / (cold * 1e3), hot, rope,
                      setup.workspace_bytes() > 0 ? "yes" : "no");
          if (int4) std::printf(" %9.2f", fp16_cold / cold);
          std::printf("\n");
          std::fflush(stdout);
        }
      }
    }
  }

  if (only_batch > 0) return 0;
  std::printf("\nprefill (one sequence; TFLOPS of the causal work)\n");
  std::printf("%-11s %5s %7s %7s %10s %9s %10s\n", "shape", "cache", "tokens", "context", "cold us", "TFLOPS",
              "rope us");
  for (const Shape& shape : shapes) {
    for (const auto& [tokens, context] : {std::pair{2048, 2048}, std::pair{512, 2048}}) {
      for (const KvCacheFormat format : {KvCacheFormat::kFp16, KvCacheFormat::kInt4}) {
        Setup setup(shape, format, 1, tokens, context, rng);
        const double cold = timer.Cold([&] { setup.Attention(nullptr); }, iterations);
        const double rope = timer.Hot([&] { setup.Rope(nullptr); }, iterations);
        double pairs = 0;  // (query, key) pairs under the causal mask
        for (int i = 0; i < tokens; ++i) pairs += context - tokens + i + 1;
        const double flops = 4.0 * shape.head_dim * shape.heads * pairs;
        std::printf("%-11s %5s %7d %7d %10.1f %9.1f %10.1f\n", shape.name,
                    format == KvCacheFormat::kInt4 ? "int4" : "fp16", tokens, context, cold, flops / (cold * 1e6),
                    rope);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}

}  // namespace
}  // namespace apex4::cuda

int main(int argc, char** argv) { return apex4::cuda::Main(argc, argv); }
