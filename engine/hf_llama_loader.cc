#include "engine/hf_llama_loader.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/safetensors_reader.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

namespace fs = std::filesystem;

constexpr char kConfigFile[] = "config.json";
constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

absl::StatusOr<std::string> ReadText(const fs::path& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot read '", path.string(), "'"));
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The safetensors files of the directory: the shards the index names, or model.safetensors.
absl::StatusOr<std::vector<std::string>> WeightFiles(const fs::path& directory) {
  if (!fs::exists(directory / kIndexFile)) {
    if (!fs::exists(directory / kSingleFile)) {
      return absl::NotFoundError(absl::StrCat("'", directory.string(), "' has neither ",
                                              kSingleFile, " nor ", kIndexFile));
    }
    return std::vector<std::string>{(directory / kSingleFile).string()};
  }
  ASSIGN_OR_RETURN(const std::string text, ReadText(directory / kIndexFile));
  const nlohmann::json index = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto weight_map = index.is_object() ? index.find("weight_map") : index.end();
  if (index.is_discarded() || weight_map == index.end() || !weight_map->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", (directory / kIndexFile).string(), "' has no 'weight_map' object"));
  }
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : weight_map->items()) {
    if (!shard.is_string() || shard.get<std::string>().find('/') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          kIndexFile, ": tensor '", tensor, "' does not map to a file name in the directory"));
    }
    shards.insert((directory / shard.get<std::string>()).string());
  }
  return std::vector<std::string>(shards.begin(), shards.end());
}

// Within each head, row s · d/2 + i (Hugging Face) becomes row 2i + s (interleaved pairs):
// the inverse of what transformers does when it reads a GGUF, the permutation that
// llama.cpp's convert_hf_to_gguf applies.
std::vector<float> ToInterleavedRope(const std::vector<float>& weights, int64_t heads,
                                     int64_t head_dim, int64_t cols) {
  std::vector<float> out(weights.size());
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t s = 0; s < 2; ++s) {
      for (int64_t i = 0; i < half; ++i) {
        const float* from = &weights[((h * head_dim) + s * half + i) * cols];
        std::copy(from, from + cols, &out[((h * head_dim) + 2 * i + s) * cols]);
      }
    }
  }
  return out;
}

}  // namespace

bool IsHfModelDirectory(const std::string& path) {
  std::error_code error;
  return fs::is_directory(path, error) && fs::exists(fs::path(path) / kConfigFile, error);
}

absl::StatusOr<LlamaConfig> LlamaConfigFromHfDirectory(const std::string& directory) {
  ASSIGN_OR_RETURN(const std::string text, ReadText(fs::path(directory) / kConfigFile));
  return LlamaConfigFromHfJson(text);
}

std::string HfTensorName(LlamaWeightKind kind, int layer) {
  const std::string block = absl::StrCat("model.layers.", layer, ".");
  switch (kind) {
    case LlamaWeightKind::kTokenEmbedding: return "model.embed_tokens.weight";
    case LlamaWeightKind::kAttentionNorm: return block + "input_layernorm.weight";
    case LlamaWeightKind::kQuery: return block + "self_attn.q_proj.weight";
    case LlamaWeightKind::kKey: return block + "self_attn.k_proj.weight";
    case LlamaWeightKind::kValue: return block + "self_attn.v_proj.weight";
    case LlamaWeightKind::kAttentionOutput: return block + "self_attn.o_proj.weight";
    case LlamaWeightKind::kFfnNorm: return block + "post_attention_layernorm.weight";
    case LlamaWeightKind::kGate: return block + "mlp.gate_proj.weight";
    case LlamaWeightKind::kUp: return block + "mlp.up_proj.weight";
    case LlamaWeightKind::kDown: return block + "mlp.down_proj.weight";
    case LlamaWeightKind::kOutputNorm: return "model.norm.weight";
    case LlamaWeightKind::kLmHead: return "lm_head.weight";
  }
  return "";
}

absl::StatusOr<HfWeightFiles> HfWeightFiles::Open(const std::string& directory) {
  HfWeightFiles files;
  files.directory_ = directory;
  ASSIGN_OR_RETURN(const std::vector<std::string> paths, WeightFiles(directory));
  for (const std::string& path : paths) {
    ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsReader> reader, SafetensorsReader::Open(path));
    for (const SafetensorsTensor& tensor : reader->tensors()) files.tensors_[tensor.name] = &tensor;
    files.readers_.push_back(std::move(reader));
  }
  return files;
}

LlamaWeightSource HfWeightFiles::Source(const LlamaConfig& config) const {
  return [this, config](const LlamaWeightRequest& request) -> absl::StatusOr<std::vector<float>> {
    const std::string name = HfTensorName(request.kind, request.layer);
    auto it = tensors_.find(name);
    if (it == tensors_.end()) {
      return absl::NotFoundError(absl::StrCat("no tensor '", name, "' in '", directory_, "'"));
    }
    const std::vector<int64_t> expected =
        request.rows == 1 ? std::vector<int64_t>{request.cols}
                          : std::vector<int64_t>{request.rows, request.cols};
    if (it->second->shape != expected) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", name, "' has shape [", absl::StrJoin(it->second->shape, ", "),
          "], config.json needs [", absl::StrJoin(expected, ", "), "]"));
    }
    ASSIGN_OR_RETURN(std::vector<float> values, SafetensorsToFloat(*it->second));
    if (request.kind == LlamaWeightKind::kQuery || request.kind == LlamaWeightKind::kKey) {
      return ToInterleavedRope(values, request.rows / config.head_dim, config.head_dim,
                               request.cols);
    }
    return values;
  };
}

absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromHfDirectory(const std::string& directory,
                                                             const LlamaConfig& config,
                                                             ThreadPool* pool) {
  ASSIGN_OR_RETURN(const HfWeightFiles files, HfWeightFiles::Open(directory));
  return BuildLlamaWeights(config, files.Source(config), pool);
}

}  // namespace apex4
