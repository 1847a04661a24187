#include "engine/llama_weights.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/fp32_linear_layer.h"
#include "engine/gguf_dequant.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

struct Builder {
  const LlamaConfig& config;
  const LlamaWeightSource& source;
  ThreadPool* pool;

  absl::StatusOr<std::vector<float>> Vector(LlamaWeightKind kind, int layer) const {
    return source({kind, layer, 1, config.hidden_size});
  }

  absl::StatusOr<std::unique_ptr<LinearLayer>> Linear(LlamaWeightKind kind, int layer,
                                                      int64_t rows, int64_t cols) const {
    ASSIGN_OR_RETURN(std::vector<float> weights, source({kind, layer, rows, cols}));
    return std::unique_ptr<LinearLayer>(new Fp32LinearLayer(
        std::make_shared<const std::vector<float>>(std::move(weights)), rows, cols, pool));
  }
};

}  // namespace

absl::StatusOr<LlamaWeights> BuildLlamaWeights(const LlamaConfig& config,
                                               const LlamaWeightSource& source,
                                               ThreadPool* pool) {
  RETURN_IF_ERROR(config.Validate());
  const Builder b{config, source, pool};
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_kv_heads} * config.head_dim;
  const int64_t ffn = config.intermediate_size;
  using K = LlamaWeightKind;

  LlamaWeights weights;
  ASSIGN_OR_RETURN(std::vector<float> embedding,
                   source({K::kTokenEmbedding, -1, config.vocab_size, hidden}));
  weights.token_embedding = std::make_shared<const std::vector<float>>(std::move(embedding));
  weights.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    LlamaLayerWeights& layer = weights.layers[l];
    ASSIGN_OR_RETURN(layer.attention_norm, b.Vector(K::kAttentionNorm, l));
    ASSIGN_OR_RETURN(layer.query, b.Linear(K::kQuery, l, q_dim, hidden));
    ASSIGN_OR_RETURN(layer.key, b.Linear(K::kKey, l, kv_dim, hidden));
    ASSIGN_OR_RETURN(layer.value, b.Linear(K::kValue, l, kv_dim, hidden));
    ASSIGN_OR_RETURN(layer.attention_output, b.Linear(K::kAttentionOutput, l, hidden, q_dim));
    ASSIGN_OR_RETURN(layer.ffn_norm, b.Vector(K::kFfnNorm, l));
    ASSIGN_OR_RETURN(layer.gate, b.Linear(K::kGate, l, ffn, hidden));
    ASSIGN_OR_RETURN(layer.up, b.Linear(K::kUp, l, ffn, hidden));
    ASSIGN_OR_RETURN(layer.down, b.Linear(K::kDown, l, hidden, ffn));
  }
  ASSIGN_OR_RETURN(weights.output_norm, b.Vector(K::kOutputNorm, -1));
  if (config.tied_embeddings) {
    weights.lm_head = std::make_unique<Fp32LinearLayer>(weights.token_embedding,
                                                        config.vocab_size, hidden, pool);
  } else {
    ASSIGN_OR_RETURN(weights.lm_head, b.Linear(K::kLmHead, -1, config.vocab_size, hidden));
  }
  return weights;
}

std::string GgufTensorName(LlamaWeightKind kind, int layer) {
  const std::string block = absl::StrCat("blk.", layer, ".");
  switch (kind) {
    case LlamaWeightKind::kTokenEmbedding: return "token_embd.weight";
    case LlamaWeightKind::kAttentionNorm: return block + "attn_norm.weight";
    case LlamaWeightKind::kQuery: return block + "attn_q.weight";
    case LlamaWeightKind::kKey: return block + "attn_k.weight";
    case LlamaWeightKind::kValue: return block + "attn_v.weight";
    case LlamaWeightKind::kAttentionOutput: return block + "attn_output.weight";
    case LlamaWeightKind::kFfnNorm: return block + "ffn_norm.weight";
    case LlamaWeightKind::kGate: return block + "ffn_gate.weight";
    case LlamaWeightKind::kUp: return block + "ffn_up.weight";
    case LlamaWeightKind::kDown: return block + "ffn_down.weight";
    case LlamaWeightKind::kOutputNorm: return "output_norm.weight";
    case LlamaWeightKind::kLmHead: return "output.weight";
  }
  return "";
}

LlamaWeightSource GgufWeightSource(const GgufReader& gguf) {
  return [&gguf](const LlamaWeightRequest& request) -> absl::StatusOr<std::vector<float>> {
    const std::string name = GgufTensorName(request.kind, request.layer);
    ASSIGN_OR_RETURN(const GgufTensorInfo* tensor, gguf.FindTensor(name));
    // ggml order lists the contiguous dimension first.
    const std::vector<int64_t> expected =
        request.rows == 1 ? std::vector<int64_t>{request.cols}
                          : std::vector<int64_t>{request.cols, request.rows};
    if (tensor->dims != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF tensor '", name, "' has dims [", absl::StrJoin(tensor->dims, ", "),
          "], the model config needs [", absl::StrJoin(expected, ", "), "]"));
    }
    return DequantizeTensor(*tensor);
  };
}

absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromGguf(const GgufReader& gguf,
                                                      const LlamaConfig& config,
                                                      ThreadPool* pool) {
  return BuildLlamaWeights(config, GgufWeightSource(gguf), pool);
}

}  // namespace apex4
