// Hyper-parameters of a LLaMA-family decoder, from GGUF metadata (llama.*) or a Hugging Face
// config.json, checked for consistency in one place.
#ifndef APEX4_ENGINE_LLAMA_CONFIG_H_
#define APEX4_ENGINE_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/gguf_reader.h"

namespace apex4 {

// How the KV cache holds keys and values (tools/quantizer/FORMAT.md, "kv_cache"). With bits 4,
// each (token, KV head) row of head_dim keys or values is quantized to symmetric INT4 as
// QuantizeInt4Reference does with one group of head_dim (scale = clip · absmax / 7); with
// key_hadamard, queries and keys are first rotated by the normalized Hadamard matrix of size
// head_dim after RoPE (orthogonal, so q·k is unchanged; it spreads outliers before rounding).
struct KvCacheQuantization {
  int bits = 16;  // 16: 16-bit (GPU) / FP32 (CPU) cache; 4: INT4
  float key_clip_ratio = 1.0f;
  float value_clip_ratio = 1.0f;
  // With bits 16: whether a 4-bit cache asked for at run time rotates keys — yes for a
  // checkpoint whose weights carry a rotation, as `tools/quantizer eval --kv-bits 4` does.
  bool key_hadamard = false;
};

// The cache an engine runs: the model's own choice (a checkpoint's kv_cache) unless
// requested_bits overrides it: 0 keeps the model's, 16 turns quantization off, 4 turns it on
// (where the model had no 4-bit cache of its own: clip ratios 1, keys rotated as the model's
// key_hadamard says).
// INVALID_ARGUMENT for any other requested_bits.
absl::StatusOr<KvCacheQuantization> ResolveKvCacheQuantization(const KvCacheQuantization& model,
                                                               int requested_bits);

struct LlamaConfig {
  int32_t num_layers = 0;
  int32_t hidden_size = 0;         // d_model
  int32_t num_heads = 0;           // query heads
  int32_t num_kv_heads = 0;        // < num_heads for grouped-query attention
  int32_t head_dim = 0;
  int32_t intermediate_size = 0;   // d_ff of the SwiGLU MLP
  int32_t vocab_size = 0;
  int32_t context_length = 0;      // longest sequence the model was trained for
  float rope_theta = 10000.0f;
  float rms_norm_eps = 1e-5f;
  bool tied_embeddings = false;    // LM head reuses the token embedding matrix
  KvCacheQuantization kv_cache;    // the model's own choice (16-bit unless a checkpoint says 4)

  // INVALID_ARGUMENT naming the first field that is non-positive or inconsistent.
  absl::Status Validate() const;
};

// From `<arch>.*` keys of a GGUF file whose general.architecture is "llama". Tied embeddings
// are inferred from the absence of an output.weight tensor. UNIMPLEMENTED for RoPE scaling.
absl::StatusOr<LlamaConfig> LlamaConfigFromGguf(const GgufReader& gguf);

// From the text of a Hugging Face config.json with model_type "llama".
absl::StatusOr<LlamaConfig> LlamaConfigFromHfJson(const std::string& json_text);

}  // namespace apex4

#endif  // APEX4_ENGINE_LLAMA_CONFIG_H_
