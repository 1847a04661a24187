// The weights of a LLaMA-family decoder as the forward pass uses them: FP32 norms and
// embeddings, and LinearLayer objects for the projections (FP32 from a checkpoint; the W4A4
// path swaps in 4-bit layers). Built from any checkpoint format through a LlamaWeightSource.
#ifndef APEX4_ENGINE_LLAMA_WEIGHTS_H_
#define APEX4_ENGINE_LLAMA_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/gguf_reader.h"
#include "engine/linear_layer.h"
#include "engine/llama_config.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

enum class LlamaWeightKind {
  kTokenEmbedding,   // [vocab, hidden]
  kAttentionNorm,    // [hidden], per layer
  kQuery,            // [heads · head_dim, hidden], rows in GGUF's RoPE order
  kKey,              // [kv_heads · head_dim, hidden], rows in GGUF's RoPE order
  kValue,            // [kv_heads · head_dim, hidden]
  kAttentionOutput,  // [hidden, heads · head_dim]
  kFfnNorm,          // [hidden]
  kGate,             // [intermediate, hidden]
  kUp,               // [intermediate, hidden]
  kDown,             // [hidden, intermediate]
  kOutputNorm,       // [hidden]
  kLmHead,           // [vocab, hidden]; not requested for tied embeddings
};

// One weight a loader must supply as `rows` × `cols` row-major floats (cols == 1 never occurs:
// vectors are requested as rows = 1). `layer` is -1 for the model-wide weights.
struct LlamaWeightRequest {
  LlamaWeightKind kind;
  int layer;
  int64_t rows;
  int64_t cols;
};

// Supplies one weight; must refuse (naming the tensor) one whose stored shape differs.
using LlamaWeightSource =
    std::function<absl::StatusOr<std::vector<float>>(const LlamaWeightRequest&)>;

struct LlamaLayerWeights {
  std::vector<float> attention_norm;
  std::vector<float> ffn_norm;
  std::unique_ptr<LinearLayer> query, key, value, attention_output;
  std::unique_ptr<LinearLayer> gate, up, down;
};

struct LlamaWeights {
  std::shared_ptr<const std::vector<float>> token_embedding;  // [vocab, hidden]
  std::vector<LlamaLayerWeights> layers;
  std::vector<float> output_norm;
  std::unique_ptr<LinearLayer> lm_head;  // shares token_embedding when tied
};

// Requests every weight of `config` from `source` and wraps the projections in
// Fp32LinearLayers running on `pool` (may be null; not owned).
absl::StatusOr<LlamaWeights> BuildLlamaWeights(const LlamaConfig& config,
                                               const LlamaWeightSource& source,
                                               ThreadPool* pool);

// GGUF's tensor name for a weight ("blk.3.attn_q.weight").
std::string GgufTensorName(LlamaWeightKind kind, int layer);

// Weights of a llama.cpp GGUF file, dequantized to FP32 (the file must outlive the source).
LlamaWeightSource GgufWeightSource(const GgufReader& gguf);

// Dequantized to FP32 from a llama.cpp GGUF file.
absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromGguf(const GgufReader& gguf,
                                                      const LlamaConfig& config,
                                                      ThreadPool* pool);

}  // namespace apex4

#endif  // APEX4_ENGINE_LLAMA_WEIGHTS_H_
