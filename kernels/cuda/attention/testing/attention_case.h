// One attention test case: a batch of sequences (prior context + appended tokens) on a paged KV
// cache (fp16, or INT4 codes + scales) with shuffled block ids, fresh random data, every output
// and every unused cache slot poisoned with NaN, run through RopeAndWriteKv + PagedAttention,
// then checked against a CPU reference in double (RoPE as engine/llama_ops.cc ApplyRope, the
// INT4 levels as QuantizeInt4Reference, attention as engine/paged_attention.cc). Shared by the GPU test (device memory, CUDA graphs) and the
// emulation test (host memory, kernels on the CTA emulator) through DeviceOps.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_TESTING_ATTENTION_CASE_H_
#define APEX4_KERNELS_CUDA_ATTENTION_TESTING_ATTENTION_CASE_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/attention/paged_attention.h"

namespace apex4::cuda::attention_test {

// Where the kernels' memory lives. Copies are synchronous with respect to launched work.
class DeviceOps {
 public:
  virtual ~DeviceOps() = default;
  virtual void* Alloc(size_t bytes) = 0;
  virtual void Free(void* p) = 0;
  virtual void Upload(void* device_dst, const void* host_src, size_t bytes) = 0;
  virtual void Download(void* host_dst, const void* device_src, size_t bytes) = 0;
};

struct TestShape {
  const char* name;
  int num_heads;
  int num_kv_heads;
  int head_dim;
  float rope_theta;
};

struct SeqSpec {
  int32_t prior;      // tokens already in the cache
  int32_t query_len;  // tokens appended this step; context = prior + query_len
};

// What sizes the buffers and the launches (the "graph"): fixed across Load() calls.
struct Bounds {
  int32_t num_seqs;
  int64_t num_tokens;
  int32_t max_query_len;
  int32_t max_context_len;
};

struct CaseOptions {
  KvCacheFormat format = KvCacheFormat::kFp16;
  KvInt4Options int4;           // kInt4: clip ratios, q/k rotation
  bool interleaved_kv = false;  // K and V of a block in one pool: block_stride = 2 · block bytes
  int block_stride_pad = 128;   // separate pools: block_stride = block bytes + pad (bytes)
  int ld_out_pad = 8;           // bf16 columns of out past H·D, which must stay untouched
  int table_pad = 3;            // poisoned block-table entries past what the bound needs
  int spare_blocks = 5;         // never-used (NaN) blocks in the pool
  float q_amplitude = 3.0f;     // uniform ±a; scores have std ≈ a_q·a_k / 3
  float k_amplitude = 2.0f;
  int64_t reference_budget = 300000000;  // multiply-adds the attention reference may spend
};

struct CheckResult {
  bool ok = true;
  double attention_err_over_scale = 0;  // max |gpu − ref| / max |ref|
  int64_t rows_checked = 0;
};

class AttentionCase {
 public:
  AttentionCase(DeviceOps& ops, const TestShape& shape, const Bounds& bounds, const CaseOptions& options);
  ~AttentionCase();
  AttentionCase(const AttentionCase&) = delete;
  AttentionCase& operator=(const AttentionCase&) = delete;

  // New lengths (within the bounds) and fresh random data; uploads the inputs and poisons q_out,
  // out, the workspace and every cache slot that holds no earlier token.
  void Load(const std::vector<SeqSpec>& seqs, std::mt19937& rng);
  // RopeAndWriteKv then PagedAttention on `stream`, with the batch of the constructor's bounds.
  CudaStatus Enqueue(cudaStream_t stream) const;
  // Downloads and compares everything; prints one PASS/FAIL line (plus details) for `label`.
  CheckResult Check(const std::string& label, std::mt19937& rng) const;
  // The attention output as uploaded/downloaded bits (for determinism checks).
  std::vector<uint16_t> DownloadOut() const;

  const AttentionBatch& batch() const { return batch_; }
  size_t workspace_bytes() const { return workspace_bytes_; }

 private:
  // Byte offsets in a pool buffer of a token's row (halfs or INT4 codes) and (INT4) its scale.
  int64_t RowOffset(bool is_v, int32_t block, int kv_head, int slot) const;
  int64_t ScaleOffset(bool is_v, int32_t block, int kv_head, int slot) const;
  // A cached row's head_dim values (INT4: code · scale).
  void CachedRow(const std::vector<uint8_t>& pool, bool is_v, int32_t block, int kv_head, int slot, double* out) const;
  // Checks the cache row the kernels wrote for one token and KV head against the reference
  // values (RoPE'd / rotated as the format says); marks its bytes as written.
  void CheckCachedRow(const std::vector<uint8_t>& pool, bool is_v, int32_t block, int kv_head, int slot,
                      const std::vector<double>& want, const std::vector<double>& magnitude,
                      std::vector<char>* written, const std::function<void(const std::string&)>& report) const;

  DeviceOps& ops_;
  TestShape shape_;
  Bounds bounds_;
  CaseOptions options_;
  int32_t table_stride_ = 0;
  int32_t num_blocks_ = 0;
  int64_t block_bytes_ = 0;  // one block of K (or V) of the layer
  int64_t block_stride_ = 0;
  int64_t pool_bytes_ = 0;   // per pool buffer (one buffer when interleaved)
  int64_t ld_qkv_ = 0;
  int64_t ld_out_ = 0;
  int32_t max_positions_ = 0;
  size_t workspace_bytes_ = 0;

  // Host copies of the current scenario.
  std::vector<SeqSpec> seqs_;
  std::vector<int32_t> query_start_, context_len_, block_tables_;
  std::vector<__nv_bfloat16> qkv_;
  std::vector<float> rope_;
  std::vector<uint8_t> k_pool_init_, v_pool_init_;  // before the step (NaN + prior tokens)

  // Device buffers.
  int32_t* d_query_start_ = nullptr;
  int32_t* d_context_len_ = nullptr;
  int32_t* d_block_tables_ = nullptr;
  __nv_bfloat16* d_qkv_ = nullptr;
  float* d_rope_ = nullptr;
  __half* d_q_ = nullptr;
  uint8_t* d_k_pool_ = nullptr;  // interleaved: the one pool
  uint8_t* d_v_pool_ = nullptr;  // interleaved: null
  __nv_bfloat16* d_out_ = nullptr;
  void* d_workspace_ = nullptr;
  AttentionBatch batch_;
  AttentionShape attn_shape_;
};

// Helpers shared by the test binaries.
float Bf16ToFloat(__nv_bfloat16 v);
float HalfToFloat(uint16_t bits);

}  // namespace apex4::cuda::attention_test

#endif  // APEX4_KERNELS_CUDA_ATTENTION_TESTING_ATTENTION_CASE_H_
