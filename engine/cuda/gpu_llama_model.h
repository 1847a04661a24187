// The LLaMA forward pass on one GPU over a batch of sequences, each appending any number of
// tokens (prefill chunks and decode tokens in one step), the same computation as the CPU
// engine's LlamaModel: embedding, per block RMSNorm → QKV → RoPE → paged GQA attention →
// output projection → residual, RMSNorm → gate/up → SwiGLU → down → residual; final RMSNorm and
// LM head on the rows whose logits are wanted. Each residual add and the SwiGLU run inside the
// next layer's input preparation (GpuLinearInput), not as kernels of their own. The residual stream stays FP32; linear layers
// (gpu_linear.h) take it with their RMSNorm fused into the input preparation and write bf16;
// the KV cache is fp16 or INT4 (config.kv_cache) in blocks of kKvBlockTokens. Q, K and V run as one GEMM, gate and up as
// another. Every launch is stream-ordered with no host synchronisation, so a decode step can be
// captured in a CUDA graph.
#ifndef APEX4_ENGINE_CUDA_GPU_LLAMA_MODEL_H_
#define APEX4_ENGINE_CUDA_GPU_LLAMA_MODEL_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/gpu_linear.h"
#include "engine/cuda/gpu_phase_timer.h"
#include "engine/llama_config.h"
#include "kernels/cuda/attention/paged_attention.h"

namespace apex4 {

struct GpuLlamaLayer {
  DeviceMemory attention_norm;  // float [hidden]
  DeviceMemory ffn_norm;        // float [hidden]
  std::unique_ptr<GpuLinear> qkv;               // [(heads + 2 kv_heads) · head_dim, hidden]
  std::unique_ptr<GpuLinear> attention_output;  // [hidden, heads · head_dim]
  std::unique_ptr<GpuLinear> gate_up;           // [2 · intermediate, hidden]: gate rows first
  std::unique_ptr<GpuLinear> down;              // [hidden, intermediate]
};

struct GpuLlamaWeights {
  DeviceMemory token_embedding;  // bf16 [vocab, hidden]
  std::vector<GpuLlamaLayer> layers;
  DeviceMemory output_norm;      // float [hidden]
  DeviceMemory lm_head;          // bf16 [vocab, hidden]; empty when tied to the embedding
};

// Where layer l's keys and values live (kernels/cuda/attention/paged_attention.h gives the block
// layout of each format), and how new ones are quantized into an INT4 cache.
struct GpuKvCacheView {
  std::vector<cuda::KvCacheLayer> layers;
  cuda::KvInt4Options int4;
};

// One step's description, in device memory except for the bounds inside `batch`.
struct GpuStepInputs {
  const int32_t* tokens = nullptr;      // [batch.num_tokens]
  cuda::AttentionBatch batch;
  const int32_t* logit_rows = nullptr;  // [num_logit_rows] token rows whose logits are wanted
  int64_t num_logit_rows = 0;
};

class GpuLlamaModel {
 public:
  // Activation buffers for steps of up to `max_tokens` tokens from up to `max_sequences`
  // sequences, and logits for up to `max_logit_rows` rows.
  static absl::StatusOr<std::unique_ptr<GpuLlamaModel>> Create(const LlamaConfig& config,
                                                               GpuLlamaWeights weights,
                                                               int64_t max_tokens,
                                                               int max_sequences,
                                                               int64_t max_logit_rows,
                                                               const GpuLinearContext& context);

  const LlamaConfig& config() const { return config_; }
  GpuLlamaWeights& mutable_weights() { return weights_; }
  const GpuLlamaWeights& weights() const { return weights_; }
  int64_t max_tokens() const { return max_tokens_; }
  int64_t max_logit_rows() const { return max_logit_rows_; }
  // Scratch the attention kernels need for steps within the buffers' bounds.
  size_t attention_workspace_bytes() const { return attention_workspace_.bytes(); }

  // Enqueues one step on the context's stream: appends every token's K and V to `cache` and
  // writes logits (float, vocab_size a row) of inputs.logit_rows to `logits` (device). With
  // `phases`, marks each phase for timing. Re-sizes nothing, so it may be graph-captured.
  // Layers replaced since Create must keep their shapes (GpuLinear::output_stride()).
  absl::Status Forward(const GpuStepInputs& inputs, const GpuKvCacheView& cache, float* logits,
                       GpuPhaseTimer* phases);

 private:
  GpuLlamaModel(const LlamaConfig& config, GpuLlamaWeights weights,
                const GpuLinearContext& context)
      : config_(config), weights_(std::move(weights)), context_(context) {}

  absl::Status RunLayer(int index, const GpuStepInputs& inputs, const GpuKvCacheView& cache,
                        GpuPhaseTimer* phases);
  absl::Status RunLinear(const GpuLinear& layer, const GpuLinearInput& input, __nv_bfloat16* y,
                         GpuPhaseTimer* phases);
  void Mark(GpuPhaseTimer* phases, KernelKind kind) const {
    if (phases != nullptr) phases->Mark(kind, context_.stream);
  }

  LlamaConfig config_;
  GpuLlamaWeights weights_;
  GpuLinearContext context_;
  int64_t max_tokens_ = 0;
  int64_t max_logit_rows_ = 0;
  DeviceMemory rope_table_;           // float [context_length][head_dim / 2][2]
  DeviceMemory hidden_;               // float [max_tokens, hidden]: the residual stream
  DeviceMemory input_scratch_;        // the largest GpuLinear::InputScratchBytes(max_tokens)
  DeviceMemory qkv_;                  // bf16 [max_tokens, qkv stride]
  DeviceMemory query_;                // half [max_tokens, heads · head_dim]: rotated Q
  DeviceMemory attention_out_;        // bf16 [max_tokens, heads · head_dim]
  DeviceMemory projected_;            // bf16 [max_tokens, output / down stride]
  DeviceMemory gate_up_;              // bf16 [max_tokens, gate_up stride]
  DeviceMemory final_rows_;           // float [max_logit_rows, hidden]
  DeviceMemory final_normed_;         // bf16 [max_logit_rows, hidden]
  DeviceMemory attention_workspace_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_CUDA_GPU_LLAMA_MODEL_H_
