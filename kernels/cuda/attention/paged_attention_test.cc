// GPU test of RopeAndWriteKv + PagedAttention against a double-precision CPU reference
// (testing/attention_case.h), on fresh random data each run (the seed is printed), for the
// served shapes: LLaMA-2-7B (32 heads, 32 KV heads, D 128), LLaMA-2-70B (64, 8, 128) and
// SmolLM2-135M (9, 3, 64), each with an fp16 cache and with an INT4 one (q and k rotated, values
// clipped: the quantization is checked level by level, attention against the cached values).
// Cases: decode batches (split-KV and not), long decode, prefill, chunked prefill after earlier
// context, mixed batches (prefill chunks + decode tokens + an empty sequence), and CUDA graphs captured once and replayed with other lengths below the bounds.
// Block ids are shuffled, every unused cache slot, output and the workspace start as NaN, unused
// block-table entries hold ids far outside the pool. Every launch of a case is also re-run and
// compared bitwise (determinism).
// Without a CUDA device the program runs the argument checks, prints "no CUDA device: skipped"
// and exits 0, so CI (no GPU) compiles and runs it.
#include "kernels/cuda/attention/paged_attention.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention/testing/attention_case.h"

namespace apex4::cuda::attention_test {
namespace {

int g_failures = 0;

#define EXPECT_TRUE_MSG(cond, ...)                     \
  do {                                                 \
    if (!(cond)) {                                     \
      ++g_failures;                                    \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
      std::printf(__VA_ARGS__);                        \
      std::printf("\n");                               \
    }                                                  \
  } while (0)

void DieOnCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::printf("FATAL %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
#define CHECK_CUDA(call) DieOnCuda((call), #call)

bool StatusOk(const CudaStatus& s, const std::string& what) {
  if (s.ok()) return true;
  std::printf("FAIL %s: %s (%s at %s:%d)\n", what.c_str(), cudaGetErrorString(s.code), s.statement, s.file,
              s.line);
  ++g_failures;
  return false;
}

class GpuOps : public DeviceOps {
 public:
  void* Alloc(size_t bytes) override {
    void* p = nullptr;
    CHECK_CUDA(cudaMalloc(&p, bytes == 0 ? 16 : bytes));
    return p;
  }
  void Free(void* p) override { cudaFree(p); }
  void Upload(void* dst, const void* src, size_t bytes) override {
    CHECK_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  }
  void Download(void* dst, const void* src, size_t bytes) override {
    CHECK_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
};

GpuOps& Ops() {
  static GpuOps ops;
  return ops;
}

cudaStream_t Stream() {
  static cudaStream_t stream = [] {
    cudaStream_t s;
    CHECK_CUDA(cudaStreamCreate(&s));
    return s;
  }();
  return stream;
}

// Runs every step of `steps` eagerly on the stream, checks it, re-runs it and compares bitwise.
void RunEager(const TestShape& shape, const std::string& what, const Bounds& bounds,
              const std::vector<std::vector<SeqSpec>>& steps, const CaseOptions& options, std::mt19937& rng) {
  AttentionCase c(Ops(), shape, bounds, options);
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string label = std::string(shape.name) + " " + what;
    if (steps.size() > 1) label += " step " + std::to_string(i);
    c.Load(steps[i], rng);
    if (!StatusOk(c.Enqueue(Stream()), label)) return;
    const cudaError_t e = cudaStreamSynchronize(Stream());
    EXPECT_TRUE_MSG(e == cudaSuccess, "%s: kernel error %s", label.c_str(), cudaGetErrorString(e));
    if (e != cudaSuccess) std::exit(1);  // the context is unusable after a fault
    g_failures += !c.Check(label, rng).ok;
    // Same inputs again (RoPE rewrites the same slots with the same values): identical bits.
    const std::vector<uint16_t> first = c.DownloadOut();
    if (!StatusOk(c.Enqueue(Stream()), label + " rerun")) return;
    CHECK_CUDA(cudaStreamSynchronize(Stream()));
    const std::vector<uint16_t> second = c.DownloadOut();
    EXPECT_TRUE_MSG(first == second, "%s: a second run gave different bits", label.c_str());
  }
}

// Captures RopeAndWriteKv + PagedAttention in a CUDA graph once, then replays it for every step
// (new lengths and data in the same device arrays), as the engine replays decode steps.
void RunGraph(const TestShape& shape, const std::string& what, const Bounds& bounds,
              const std::vector<std::vector<SeqSpec>>& steps, const CaseOptions& options, std::mt19937& rng) {
  AttentionCase c(Ops(), shape, bounds, options);
  c.Load(steps[0], rng);
  // One eager launch first, as an engine does before capturing.
  if (!StatusOk(c.Enqueue(Stream()), shape.name + (" " + what) + " warm-up")) return;
  CHECK_CUDA(cudaStreamSynchronize(Stream()));
  cudaGraph_t graph;
  CHECK_CUDA(cudaStreamBeginCapture(Stream(), cudaStreamCaptureModeGlobal));
  const CudaStatus captured = c.Enqueue(Stream());
  CHECK_CUDA(cudaStreamEndCapture(Stream(), &graph));
  if (!StatusOk(captured, shape.name + (" " + what) + " capture")) return;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (size_t i = 0; i < steps.size(); ++i) {
    const std::string label = std::string(shape.name) + " " + what + " replay " + std::to_string(i);
    c.Load(steps[i], rng);  // fresh data, new lengths, poisoned outputs
    CHECK_CUDA(cudaGraphLaunch(exec, Stream()));
    const cudaError_t e = cudaStreamSynchronize(Stream());
    EXPECT_TRUE_MSG(e == cudaSuccess, "%s: kernel error %s", label.c_str(), cudaGetErrorString(e));
    if (e != cudaSuccess) std::exit(1);
    g_failures += !c.Check(label, rng).ok;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

std::vector<SeqSpec> Decode(const std::vector<int32_t>& contexts) {
  std::vector<SeqSpec> seqs;
  for (int32_t c : contexts) seqs.push_back({c - 1, 1});
  return seqs;
}

std::vector<SeqSpec> RandomDecode(int n, int32_t max_context, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> len(1, max_context);
  std::vector<int32_t> contexts(n);
  for (int32_t& c : contexts) c = len(rng);
  contexts[0] = max_context;
  return Decode(contexts);
}

void TestShapeCases(const TestShape& shape, const CaseOptions& options, std::mt19937& rng) {
  CaseOptions interleaved = options;
  interleaved.interleaved_kv = true;
  // Decode: split-KV, lengths around block and partition edges, partitions past a sequence's end.
  RunEager(shape, "decode batch 9", Bounds{9, 9, 1, 2300},
           {Decode({1, 15, 16, 17, 100, 511, 513, 1000, 2100})}, options, rng);
  // Decode batch 64, bound 512 (no split: the decode kernel writes out) and 600 (two partitions).
  RunEager(shape, "decode batch 64 short", Bounds{64, 64, 1, 512}, {RandomDecode(64, 512, rng)}, options,
           rng);
  RunEager(shape, "decode batch 64", Bounds{64, 64, 1, 600}, {RandomDecode(64, 600, rng)}, interleaved, rng);
  // One long decode (many partitions).
  RunEager(shape, "decode long", Bounds{1, 1, 1, 4096}, {Decode({4093})}, options, rng);
  // Prefill from an empty cache; a chunk after earlier context (K and V interleaved in one pool).
  RunEager(shape, "prefill 1000", Bounds{1, 1000, 1000, 1000}, {{{0, 1000}}}, options, rng);
  RunEager(shape, "chunk 512 after 1500", Bounds{1, 512, 512, 2012}, {{{1500, 512}}}, interleaved, rng);
  // Mixed: prefill chunks, decode tokens, a query_len-1 sequence with context, an empty sequence.
  RunEager(shape, "mixed", Bounds{8, 262, 160, 1200},
           {{{77, 150}, {999, 1}, {16, 1}, {0, 45}, {0, 1}, {600, 1}, {50, 0}, {300, 63}}}, options, rng);
  // CUDA graphs replayed with other lengths below the bounds.
  RunGraph(shape, "graph decode", Bounds{5, 5, 1, 3000},
           {Decode({3000, 1, 700, 64, 65}), Decode({5, 2999, 128, 1500, 17}), Decode({1, 1, 1, 1, 1})},
           options, rng);
  RunGraph(shape, "graph mixed", Bounds{3, 40, 38, 600},
           {{{70, 30}, {0, 9}, {499, 1}}, {{599, 1}, {1, 1}, {0, 38}}, {{0, 38}, {560, 1}, {0, 1}}}, options,
           rng);
}

// Rejected arguments (no device needed: every call fails its checks before launching).
void TestArgumentChecks() {
  alignas(16) static int32_t dummy_ints[64];
  auto* fake_half = reinterpret_cast<__half*>(uintptr_t{1} << 20);
  auto* fake_bf16 = reinterpret_cast<__nv_bfloat16*>(uintptr_t{1} << 20);
  auto* fake_float = reinterpret_cast<float*>(uintptr_t{1} << 20);
  AttentionBatch batch;
  batch.query_start = dummy_ints;
  batch.context_len = dummy_ints;
  batch.block_tables = dummy_ints;
  batch.block_table_stride = 8;
  batch.num_seqs = 2;
  batch.num_tokens = 2;
  batch.max_query_len = 1;
  batch.max_context_len = 128;
  const AttentionShape shape{32, 8, 128};
  const int64_t block_stride = 8 * 16 * 128 * 2;
  auto cache_of = [&](int64_t stride, KvCacheFormat format = KvCacheFormat::kFp16) {
    KvCacheLayer cache;
    cache.format = format;
    cache.k = fake_half;
    cache.v = fake_half;
    cache.block_stride = stride;
    return cache;
  };
  auto attention = [&](const AttentionBatch& b, const AttentionShape& s, const __half* q, int64_t stride,
                       int64_t ld_out, void* ws) {
    return PagedAttention(q, cache_of(stride), b, s, 0.1f, ws, fake_bf16, ld_out, nullptr);
  };
  auto rope = [&](int64_t ld_qkv, int32_t max_positions, const KvCacheLayer& cache, const KvInt4Options& int4) {
    return RopeAndWriteKv(fake_bf16, ld_qkv, batch, shape, fake_float, max_positions, fake_half, cache, int4, nullptr);
  };
  KvInt4Options no_clip;
  no_clip.value_clip_ratio = 0.0f;
  struct Bad {
    const char* what;
    CudaStatus status;
  };
  AttentionBatch long_bound = batch;
  long_bound.max_context_len = 129;  // needs 9 table entries, the stride has 8
  AttentionBatch no_query = batch;
  no_query.max_query_len = 0;
  AttentionBatch split = batch;
  split.max_context_len = 128;
  split.num_seqs = 1;
  split.num_tokens = 1;
  split.block_table_stride = 256;
  split.max_context_len = 4096;  // one sequence, one KV head group: split-KV, needs a workspace
  const Bad bad[] = {
      {"head_dim 96", attention(batch, AttentionShape{32, 8, 96}, fake_half, block_stride, 4096, nullptr)},
      {"heads % kv_heads",
       attention(batch, AttentionShape{30, 8, 128}, fake_half, block_stride, 4096, nullptr)},
      {"short block table", attention(long_bound, shape, fake_half, block_stride, 4096, nullptr)},
      {"max_query_len 0", attention(no_query, shape, fake_half, block_stride, 4096, nullptr)},
      {"misaligned q", attention(batch, shape, fake_half + 1, block_stride, 4096, nullptr)},
      {"small block stride", attention(batch, shape, fake_half, block_stride - 16, 4096, nullptr)},
      {"block stride not a multiple of 16", attention(batch, shape, fake_half, block_stride + 8, 4096, nullptr)},
      {"small INT4 block stride",
       PagedAttention(fake_half, cache_of(8 * 16 * (64 + 4) - 16, KvCacheFormat::kInt4), batch, shape, 0.1f, nullptr,
                      fake_bf16, 4096, nullptr)},
      {"ld_out < H*D", attention(batch, shape, fake_half, block_stride, 4095, nullptr)},
      {"missing workspace", attention(split, shape, fake_half, block_stride, 4096, nullptr)},
      {"rope ld_qkv", rope(100, 128, cache_of(block_stride), KvInt4Options{})},
      {"rope max_positions", rope(6144, 127, cache_of(block_stride), KvInt4Options{})},
      {"rope INT4 clip ratio 0", rope(6144, 128, cache_of(block_stride, KvCacheFormat::kInt4), no_clip)},
  };
  int rejected = 0;
  for (const Bad& b : bad) {
    EXPECT_TRUE_MSG(b.status.code == cudaErrorInvalidValue, "%s accepted (code %d)", b.what, b.status.code);
    rejected += b.status.code == cudaErrorInvalidValue;
  }
  EXPECT_TRUE_MSG(PagedAttentionWorkspaceBytes(split, shape) > 0, "split-KV plan needs a workspace");
  EXPECT_TRUE_MSG(PagedAttentionWorkspaceBytes(batch, shape) == 0, "a short context needs no workspace");
  // A query bound above num_tokens (or the context bound) is tightened, not rejected.
  AttentionBatch loose = batch;
  loose.max_query_len = 4096;
  EXPECT_TRUE_MSG(PagedAttentionWorkspaceBytes(loose, shape) == PagedAttentionWorkspaceBytes(batch, shape),
                  "a loose query bound changed the workspace size");
  // Workspace sizing: from the bounds alone (no device arrays), never decreasing as the number of
  // sequences or the context bound grows, whatever partition size the plan picks.
  int64_t not_monotone = 0, zero_when_split = 0;
  for (const AttentionShape& s : {AttentionShape{32, 32, 128}, AttentionShape{64, 8, 128}, AttentionShape{9, 3, 64},
                                  AttentionShape{20, 1, 64}}) {
    for (int32_t seqs = 1; seqs <= 80; seqs += 3) {
      size_t previous = 0;
      for (int32_t context = 1; context <= 9000; context += 37) {
        AttentionBatch bounds;  // null device arrays
        bounds.num_seqs = seqs;
        bounds.num_tokens = seqs;
        bounds.max_query_len = 1;
        bounds.max_context_len = context;
        bounds.block_table_stride = (context + 15) / 16;
        const size_t bytes = PagedAttentionWorkspaceBytes(bounds, s);
        AttentionBatch more_seqs = bounds;
        more_seqs.num_seqs = seqs + 1;
        more_seqs.num_tokens = seqs + 1;
        not_monotone += bytes < previous || PagedAttentionWorkspaceBytes(more_seqs, s) < bytes;
        zero_when_split += context > 128 && bytes == 0;
        previous = bytes;
      }
    }
  }
  EXPECT_TRUE_MSG(not_monotone == 0, "workspace size decreased with larger bounds %lld times",
                  static_cast<long long>(not_monotone));
  EXPECT_TRUE_MSG(zero_when_split == 0, "no workspace for a context that may be split (%lld bounds)",
                  static_cast<long long>(zero_when_split));
  AttentionBatch empty = batch;
  empty.num_seqs = 0;
  EXPECT_TRUE_MSG(attention(empty, shape, fake_half, block_stride, 4096, nullptr).ok(),
                  "empty batch is a no-op");
  std::printf("%s argument checks: %d of %zu rejected\n",
              rejected == static_cast<int>(std::size(bad)) ? "PASS" : "FAIL", rejected, std::size(bad));
}

int Main() {
  TestArgumentChecks();
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return g_failures == 0 ? 0 : 1;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const uint32_t seed = std::random_device{}();
  std::printf("device: %s (sm_%d%d, %d SMs), seed %u\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, seed);
  std::mt19937 rng(seed);
  const TestShape shapes[] = {
      {"llama2-7b", 32, 32, 128, 10000.0f},
      {"llama2-70b", 64, 8, 128, 10000.0f},
      {"smollm2-135m", 9, 3, 64, 100000.0f},
  };
  for (const TestShape& shape : shapes) {
    TestShapeCases(shape, CaseOptions{}, rng);
    // INT4 cache: q and k rotated, values clipped.
    CaseOptions int4;
    int4.format = KvCacheFormat::kInt4;
    int4.int4.rotate_keys = true;
    int4.int4.value_clip_ratio = 0.9f;
    TestShape int4_shape = shape;
    const std::string name = std::string(shape.name) + "-kv4";
    int4_shape.name = name.c_str();
    TestShapeCases(int4_shape, int4, rng);
  }
  std::printf(g_failures == 0 ? "PASSED\n" : "FAILED (%d)\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace apex4::cuda::attention_test

int main() { return apex4::cuda::attention_test::Main(); }
