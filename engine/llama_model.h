// The LLaMA forward pass on the CPU over a batch of sequences, each appending any number of
// tokens (prefill chunks and single decode tokens in one step): embedding, per block RMSNorm →
// Q/K/V → RoPE → paged GQA attention → output projection → residual, RMSNorm → SwiGLU MLP →
// residual; final RMSNorm and LM head on the rows whose logits are wanted. All tokens of the
// step go through each projection together, so the weights are read once per step. With a
// 4-bit KV cache (config.kv_cache.bits 4) keys and values are rounded to INT4 before they enter
// the cache, which keeps them, dequantized, in FP32 (RoundForInt4KvCache).
#ifndef APEX4_ENGINE_LLAMA_MODEL_H_
#define APEX4_ENGINE_LLAMA_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kernel_timer.h"
#include "engine/kv_cache.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "engine/paged_attention.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// One sequence's share of a forward pass.
struct ForwardEntry {
  int64_t sequence_id = 0;           // a sequence of the KV cache
  absl::Span<const int32_t> tokens;  // appended at the sequence's current length
  bool all_logits = false;           // logits of every token, not just the last
};

// Not thread-safe: Forward keeps scratch buffers between calls.
class LlamaModel {
 public:
  // `pool` (may be null; not owned) runs attention; the layers carry their own. `config` must
  // be valid (LlamaConfig::Validate), its kv_cache the one to run (ResolveKvCacheQuantization).
  LlamaModel(const LlamaConfig& config, LlamaWeights weights, ThreadPool* pool);

  const LlamaConfig& config() const { return config_; }
  // For replacing projections (e.g. by 4-bit layers) before serving.
  LlamaWeights& mutable_weights() { return weights_; }

  // Appends each entry's tokens to its sequence in `cache` and writes logits (vocab_size floats
  // a row) for each entry in batch order: one row, or one per token with all_logits.
  // INVALID_ARGUMENT / NOT_FOUND for empty entries, repeated or unknown sequences, token ids
  // outside the vocabulary or tokens beyond a sequence's reservation; then nothing is changed.
  absl::Status Forward(absl::Span<const ForwardEntry> batch, PagedKvCache* cache,
                       KernelTimer* timer, std::vector<float>* logits);

 private:
  // Per-step buffers, grown to the largest step seen.
  struct Scratch {
    std::vector<float> hidden, normed, query, key, value, attention, projected, gate, up;
    std::vector<AttentionToken> tokens;
    std::vector<int64_t> logit_rows;
  };

  class StepTimer;

  void RunLayer(int layer_index, PagedKvCache* cache, StepTimer* timer);
  // With config_.kv_cache.bits 4, after RoPE: rotates the step's queries and keys per head by
  // the normalized Hadamard transform (with key_hadamard) and replaces its keys and values by
  // what a 4-bit cache holds of them (QuantizeDequantizeInt4Rows per token and KV head), as
  // tools/quantizer/model.py attention() does. The cache then stores these dequantized values
  // in FP32: the numbers of a 4-bit cache (the reference for the GPU engine, which stores 4
  // bits), not its memory saving.
  void RoundForInt4KvCache(int64_t n);
  // The next-token distribution's logits for the rows of scratch_.logit_rows.
  void ComputeLogits(StepTimer* timer, std::vector<float>* logits);

  LlamaConfig config_;
  LlamaWeights weights_;
  ThreadPool* pool_;
  Scratch scratch_;
  int64_t num_tokens_ = 0;  // rows in this step's scratch
};

}  // namespace apex4

#endif  // APEX4_ENGINE_LLAMA_MODEL_H_
