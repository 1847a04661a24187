// Loads a LLaMA-family model from a Hugging Face directory: config.json and the weights in
// model.safetensors or shards listed by model.safetensors.index.json (F32, F16 or BF16).
// The tokenizer (tokenizer.json) is read by tokenizer_loader.
#ifndef APEX4_ENGINE_HF_LLAMA_LOADER_H_
#define APEX4_ENGINE_HF_LLAMA_LOADER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "engine/safetensors_reader.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// Whether `path` is a directory holding a config.json.
bool IsHfModelDirectory(const std::string& path);

absl::StatusOr<LlamaConfig> LlamaConfigFromHfDirectory(const std::string& directory);

// Hugging Face's tensor name for a weight ("model.layers.3.self_attn.q_proj.weight").
std::string HfTensorName(LlamaWeightKind kind, int layer);

// The safetensors files of a Hugging Face directory, open for reading weights. Movable.
class HfWeightFiles {
 public:
  static absl::StatusOr<HfWeightFiles> Open(const std::string& directory);

  // Every weight as FP32, as BuildLlamaWeights requests them (shapes checked against `config`).
  // Q and K rows are reordered from Hugging Face's rotate-half RoPE layout to the interleaved
  // one the engines (like llama.cpp) apply RoPE in. The files must outlive the source.
  LlamaWeightSource Source(const LlamaConfig& config) const;

 private:
  std::string directory_;
  std::vector<std::unique_ptr<SafetensorsReader>> readers_;
  absl::flat_hash_map<std::string, const SafetensorsTensor*> tensors_;  // into readers_
};

// The CPU engine's weights: HfWeightFiles' source wrapped in FP32 layers.
absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromHfDirectory(const std::string& directory,
                                                             const LlamaConfig& config,
                                                             ThreadPool* pool);

}  // namespace apex4

#endif  // APEX4_ENGINE_HF_LLAMA_LOADER_H_
