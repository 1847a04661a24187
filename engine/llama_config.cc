#include "engine/llama_config.h"

#include <limits>
#include <type_traits>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

absl::Status CheckPositive(const char* field, int64_t value) {
  if (value <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: ", field, " is ", value,
                                                   ", must be positive"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> GgufInt32(const GgufReader& gguf, const std::string& key) {
  ASSIGN_OR_RETURN(const int64_t value, gguf.GetInt(key));
  if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF metadata key '", key, "' = ", value, " is out of range"));
  }
  return static_cast<int32_t>(value);
}

// The value of an optional key, or `fallback` when the file lacks it.
absl::StatusOr<int32_t> GgufInt32Or(const GgufReader& gguf, const std::string& key,
                                    int32_t fallback) {
  return gguf.HasKey(key) ? GgufInt32(gguf, key) : fallback;
}

absl::StatusOr<float> GgufFloatOr(const GgufReader& gguf, const std::string& key,
                                  float fallback) {
  if (!gguf.HasKey(key)) return fallback;
  ASSIGN_OR_RETURN(const double value, gguf.GetFloat(key));
  return static_cast<float>(value);
}

// A field of config.json; a missing or mistyped required field is refused by name.
template <typename T>
absl::StatusOr<T> JsonField(const nlohmann::json& json, const char* field) {
  auto it = json.find(field);
  if (it == json.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json has no '", field, "'"));
  }
  if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("config.json '", field, "' is not a string"));
    }
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) {
      return absl::InvalidArgumentError(absl::StrCat("config.json '", field, "' is not a bool"));
    }
  } else if constexpr (std::is_integral_v<T>) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 ||
        it->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json '", field, "' is not a non-negative 32-bit integer"));
    }
  } else if (!it->is_number()) {
    return absl::InvalidArgumentError(absl::StrCat("config.json '", field, "' is not a number"));
  }
  return it->get<T>();
}

template <typename T>
absl::StatusOr<T> JsonFieldOr(const nlohmann::json& json, const char* field, T fallback) {
  auto it = json.find(field);
  if (it == json.end() || it->is_null()) return fallback;
  return JsonField<T>(json, field);
}

}  // namespace

absl::StatusOr<KvCacheQuantization> ResolveKvCacheQuantization(const KvCacheQuantization& model,
                                                               int requested_bits) {
  switch (requested_bits) {
    case 0:
      if (model.bits == 4) return model;
      return KvCacheQuantization{};
    case 16:
      return KvCacheQuantization{};
    case 4: {
      if (model.bits == 4) return model;
      KvCacheQuantization int4;
      int4.bits = 4;
      int4.key_hadamard = model.key_hadamard;
      return int4;
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "kv_cache_bits must be 0 (the model's own), 4 or 16, got ", requested_bits));
  }
}

absl::Status LlamaConfig::Validate() const {
  RETURN_IF_ERROR(CheckPositive("num_layers", num_layers));
  RETURN_IF_ERROR(CheckPositive("hidden_size", hidden_size));
  RETURN_IF_ERROR(CheckPositive("num_heads", num_heads));
  RETURN_IF_ERROR(CheckPositive("num_kv_heads", num_kv_heads));
  RETURN_IF_ERROR(CheckPositive("head_dim", head_dim));
  RETURN_IF_ERROR(CheckPositive("intermediate_size", intermediate_size));
  RETURN_IF_ERROR(CheckPositive("vocab_size", vocab_size));
  RETURN_IF_ERROR(CheckPositive("context_length", context_length));
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model config: ", num_heads,
                                                   " query heads are not a multiple of ",
                                                   num_kv_heads, " KV heads"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: head_dim ", head_dim, " is odd; RoPE rotates pairs"));
  }
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("model config: rms_norm_eps ", rms_norm_eps,
                                                   " and rope_theta ", rope_theta,
                                                   " must be positive"));
  }
  if (kv_cache.bits != 4 && kv_cache.bits != 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("model config: kv_cache.bits is ", kv_cache.bits, "; expected 4 or 16"));
  }
  if (kv_cache.bits == 4) {
    for (const auto& [name, ratio] : {std::pair{"key_clip_ratio", kv_cache.key_clip_ratio},
                                      std::pair{"value_clip_ratio", kv_cache.value_clip_ratio}}) {
      if (!(ratio > 0.0f && ratio <= 1.0f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("model config: kv_cache.", name, " ", ratio, " is outside (0, 1]"));
      }
    }
    // The key rotation is a Hadamard transform of one head (HadamardTransform's block).
    if (kv_cache.key_hadamard && (head_dim < 8 || (head_dim & (head_dim - 1)) != 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model config: kv_cache.key_hadamard needs head_dim a power of two of at least 8, "
          "got ", head_dim));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LlamaConfig> LlamaConfigFromGguf(const GgufReader& gguf) {
  ASSIGN_OR_RETURN(const std::string arch, gguf.GetString("general.architecture"));
  if (arch != "llama") {
    return absl::UnimplementedError(absl::StrCat("GGUF architecture '", arch,
                                                 "' is not supported; expected 'llama'"));
  }
  const std::string prefix = arch + ".";
  if (gguf.HasKey(prefix + "rope.scaling.type")) {
    ASSIGN_OR_RETURN(const std::string scaling, gguf.GetString(prefix + "rope.scaling.type"));
    if (scaling != "none") {
      return absl::UnimplementedError(absl::StrCat("RoPE scaling '", scaling, "' is not supported"));
    }
  }
  LlamaConfig config;
  ASSIGN_OR_RETURN(config.num_layers, GgufInt32(gguf, prefix + "block_count"));
  ASSIGN_OR_RETURN(config.hidden_size, GgufInt32(gguf, prefix + "embedding_length"));
  ASSIGN_OR_RETURN(config.num_heads, GgufInt32(gguf, prefix + "attention.head_count"));
  ASSIGN_OR_RETURN(config.num_kv_heads,
                   GgufInt32Or(gguf, prefix + "attention.head_count_kv", config.num_heads));
  ASSIGN_OR_RETURN(config.intermediate_size, GgufInt32(gguf, prefix + "feed_forward_length"));
  ASSIGN_OR_RETURN(config.context_length, GgufInt32(gguf, prefix + "context_length"));
  ASSIGN_OR_RETURN(config.rms_norm_eps,
                   GgufFloatOr(gguf, prefix + "attention.layer_norm_rms_epsilon", 1e-5f));
  ASSIGN_OR_RETURN(config.rope_theta, GgufFloatOr(gguf, prefix + "rope.freq_base", 10000.0f));
  if (config.num_heads > 0) {
    ASSIGN_OR_RETURN(config.head_dim, GgufInt32Or(gguf, prefix + "attention.key_length",
                                                  config.hidden_size / config.num_heads));
  }
  // llama.cpp rotates rope.dimension_count dimensions of each head; the engine rotates all.
  ASSIGN_OR_RETURN(const int32_t rope_dims,
                   GgufInt32Or(gguf, prefix + "rope.dimension_count", config.head_dim));
  if (rope_dims != config.head_dim) {
    return absl::UnimplementedError(absl::StrCat("partial RoPE (", rope_dims, " of ",
                                                 config.head_dim, " dimensions) is not supported"));
  }
  ASSIGN_OR_RETURN(const GgufTensorInfo* embedding, gguf.FindTensor("token_embd.weight"));
  if (embedding->dims.size() != 2) {
    return absl::InvalidArgumentError("GGUF tensor 'token_embd.weight' is not a matrix");
  }
  config.vocab_size = static_cast<int32_t>(embedding->dims[1]);
  config.tied_embeddings = !gguf.FindTensor("output.weight").ok();
  RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::StatusOr<LlamaConfig> LlamaConfigFromHfJson(const std::string& json_text) {
  const nlohmann::json json = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::InvalidArgumentError("config.json is not a JSON object");
  }
  ASSIGN_OR_RETURN(const std::string model_type, JsonFieldOr<std::string>(json, "model_type", ""));
  if (model_type != "llama") {
    return absl::UnimplementedError(absl::StrCat("config.json model_type '", model_type,
                                                 "' is not supported; expected 'llama'"));
  }
  if (auto it = json.find("rope_scaling"); it != json.end() && !it->is_null()) {
    return absl::UnimplementedError("config.json rope_scaling is not supported");
  }
  LlamaConfig config;
  ASSIGN_OR_RETURN(config.num_layers, JsonField<int32_t>(json, "num_hidden_layers"));
  ASSIGN_OR_RETURN(config.hidden_size, JsonField<int32_t>(json, "hidden_size"));
  ASSIGN_OR_RETURN(config.num_heads, JsonField<int32_t>(json, "num_attention_heads"));
  ASSIGN_OR_RETURN(config.num_kv_heads,
                   JsonFieldOr<int32_t>(json, "num_key_value_heads", config.num_heads));
  ASSIGN_OR_RETURN(config.intermediate_size, JsonField<int32_t>(json, "intermediate_size"));
  ASSIGN_OR_RETURN(config.vocab_size, JsonField<int32_t>(json, "vocab_size"));
  ASSIGN_OR_RETURN(config.context_length, JsonField<int32_t>(json, "max_position_embeddings"));
  ASSIGN_OR_RETURN(config.rope_theta, JsonFieldOr<float>(json, "rope_theta", 10000.0f));
  ASSIGN_OR_RETURN(config.rms_norm_eps, JsonFieldOr<float>(json, "rms_norm_eps", 1e-6f));
  ASSIGN_OR_RETURN(config.tied_embeddings, JsonFieldOr<bool>(json, "tie_word_embeddings", false));
  if (config.num_heads > 0) {
    ASSIGN_OR_RETURN(config.head_dim, JsonFieldOr<int32_t>(json, "head_dim",
                                                           config.hidden_size / config.num_heads));
  }
  RETURN_IF_ERROR(config.Validate());
  return config;
}

}  // namespace apex4
