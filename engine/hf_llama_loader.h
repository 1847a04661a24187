// Loads a LLaMA-family model from a Hugging Face directory: config.json and the weights in
// model.safetensors or shards listed by model.safetensors.index.json (F32, F16 or BF16).
// The tokenizer (tokenizer.json) is read by tokenizer_loader.
#ifndef APEX4_ENGINE_HF_LLAMA_LOADER_H_
#define APEX4_ENGINE_HF_LLAMA_LOADER_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// Whether `path` is a directory holding a config.json.
bool IsHfModelDirectory(const std::string& path);

absl::StatusOr<LlamaConfig> LlamaConfigFromHfDirectory(const std::string& directory);

// Hugging Face's tensor name for a weight ("model.layers.3.self_attn.q_proj.weight").
std::string HfTensorName(LlamaWeightKind kind, int layer);

// Every weight as FP32. Q and K rows are reordered from Hugging Face's rotate-half RoPE layout
// to the interleaved one the engine (like llama.cpp) applies RoPE in.
absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromHfDirectory(const std::string& directory,
                                                             const LlamaConfig& config,
                                                             ThreadPool* pool);

}  // namespace apex4

#endif  // APEX4_ENGINE_HF_LLAMA_LOADER_H_
