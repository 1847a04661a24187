// CPU test of the attention kernels' real source on the CTA emulator (testing/cta_emulator.h):
// paged_attention.cc's checks and dispatch, then the kernels (compiled as host C++) thread by
// thread, with ldmatrix / mma.sync / cp.async by their PTX definitions, bounds-checked memory and
// NaN-poisoned in-flight copies. Small shapes with the GQA ratios of the served models (1, 3, 8)
// and one above 16 (two decode row tiles); the same cases as the GPU test otherwise. Runs
// without a GPU (CI), so it cannot say anything about speed or about the hardware itself: the GPU
// test (paged_attention_test) is the real check.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention/paged_attention.h"
#include "kernels/cuda/attention/testing/attention_case.h"
#include "kernels/cuda/attention/testing/cta_emulator.h"

namespace apex4::cuda::attention_test {
namespace {

class HostOps : public DeviceOps {
 public:
  void* Alloc(size_t bytes) override {
    const size_t rounded = (bytes + 255) / 256 * 256;
    void* p = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
    apex4_emu::RegisterGlobal(p, bytes);
    return p;
  }
  void Free(void* p) override {
    apex4_emu::UnregisterGlobal(p);
    std::free(p);
  }
  void Upload(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void Download(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
};

HostOps& ops() {
  static HostOps host_ops;
  return host_ops;
}

int g_failures = 0;

void Expect(bool ok) { g_failures += !ok; }

void RunScenario(HostOps& ops, const TestShape& shape, const char* what, const Bounds& bounds,
                 const std::vector<std::vector<SeqSpec>>& steps, const CaseOptions& options,
                 std::mt19937& rng) {
  AttentionCase c(ops, shape, bounds, options);
  for (size_t i = 0; i < steps.size(); ++i) {
    c.Load(steps[i], rng);
    const CudaStatus status = c.Enqueue(nullptr);
    if (!status.ok()) {
      std::printf("FAIL %s %s: launch error %d (%s at %s:%d)\n", shape.name, what, status.code,
                  status.statement, status.file, status.line);
      ++g_failures;
      return;
    }
    std::string label = std::string(shape.name) + " " + what;
    if (options.format == KvCacheFormat::kInt4) label += " kv4";
    if (steps.size() > 1) label += " step " + std::to_string(i);
    Expect(c.Check(label, rng).ok);
  }
}

std::vector<SeqSpec> Decode(const std::vector<int32_t>& contexts) {
  std::vector<SeqSpec> seqs;
  for (int32_t c : contexts) seqs.push_back({c - 1, 1});
  return seqs;
}

int Main() {
  const uint32_t seed = std::random_device{}();
  std::printf("paged attention on the CTA emulator, seed %u\n", seed);
  std::mt19937 rng(seed);
  const TestShape shapes[] = {
      {"mha-d128", 2, 2, 128, 10000.0f},   // LLaMA-2-7B's ratio
      {"gqa8-d128", 8, 1, 128, 10000.0f},  // LLaMA-2-70B's ratio
      {"gqa3-d64", 6, 2, 64, 100000.0f},   // SmolLM2-135M's ratio
      {"gqa20-d64", 20, 1, 64, 10000.0f},  // more heads per KV head than one decode row tile
  };
  CaseOptions fp16;
  fp16.reference_budget = 20000000;
  CaseOptions int4 = fp16;  // q and k rotated, values clipped
  int4.format = KvCacheFormat::kInt4;
  int4.int4.rotate_keys = true;
  int4.int4.value_clip_ratio = 0.9f;
  for (const TestShape& shape : shapes) {
    for (const CaseOptions& options : {fp16, int4}) {
    // Decode: split-KV (partitions of 128 at these sizes), lengths off every multiple, 1-token context.
    RunScenario(ops(), shape, "decode", Bounds{4, 4, 1, 400}, {Decode({1, 17, 130, 300})}, options, rng);
    // Longer contexts: several partitions of 128-512 keys in both formats.
    RunScenario(ops(), shape, "decode-split", Bounds{3, 3, 1, 1100}, {Decode({1100, 513, 700})}, options, rng);
    // Decode without split (short bound): the decode kernel merges its warps and writes out.
    RunScenario(ops(), shape, "decode-short", Bounds{4, 4, 1, 128}, {Decode({1, 33, 64, 128})}, options, rng);
    // Prefill from an empty cache, and a chunk after earlier context (interleaved K/V pool).
    RunScenario(ops(), shape, "prefill", Bounds{1, 70, 70, 70}, {{{0, 70}}}, options, rng);
    CaseOptions interleaved = options;
    interleaved.interleaved_kv = true;
    RunScenario(ops(), shape, "chunk", Bounds{1, 33, 33, 83}, {{{50, 33}}}, interleaved, rng);
    // Mixed: prefill chunks, decode tokens, an empty sequence; prefill + decode kernels.
    RunScenario(ops(), shape, "mixed", Bounds{5, 39, 30, 200},
                {{{20, 25}, {150, 1}, {0, 1}, {9, 0}, {0, 12}}}, options, rng);
    // The same launch (graph) with other lengths below the bounds.
    RunScenario(ops(), shape, "decode-replay", Bounds{3, 3, 1, 300},
                {Decode({300, 1, 129}), Decode({2, 257, 64})}, options, rng);
    // (A query bound above num_tokens: tightened to 20 by the host code.)
    RunScenario(ops(), shape, "mixed-replay", Bounds{3, 20, 64, 100},
                {{{0, 10}, {40, 9}, {60, 1}}, {{98, 1}, {0, 1}, {5, 18}}}, options, rng);
    // Long context behind a short chunk: CTAs stream 5 key tiles, so both pipeline stages are
    // reloaded while other warps may still read them.
    RunScenario(ops(), shape, "long-chunk", Bounds{1, 20, 20, 300}, {{{277, 20}}}, options, rng);
    }
  }
  // Decode CTAs of more than two tiles: enough sequences × KV heads for 512-key partitions.
  {
    const TestShape many_heads = {"mha64-d64", 64, 64, 64, 10000.0f};
    CaseOptions options;
    options.reference_budget = 20000000;
    // The last sequence's table row ends where the allocation does, inside its last key tile
    // (43 entries): looking up a block past the context would read outside it.
    options.table_pad = 0;
    RunScenario(ops(), many_heads, "decode-long", Bounds{8, 8, 1, 680},
                {Decode({640, 1, 513, 512, 300, 17, 129, 680})}, options, rng);
  }
  std::printf(g_failures == 0 ? "PASSED\n" : "FAILED (%d)\n", g_failures);
  return g_failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace apex4::cuda::attention_test

int main() { return apex4::cuda::attention_test::Main(); }
