// The CPU engine: a LLaMA-family model from a GGUF file (weights dequantized to FP32), a Hugging
// Face directory (config.json, safetensors, tokenizer.json; FP32) or an apex4 W4A4 checkpoint
// directory (4-bit projections, tools/quantizer/FORMAT.md), served through the InferenceEngine
// interface with a paged KV cache.
#ifndef APEX4_ENGINE_CPU_ENGINE_H_
#define APEX4_ENGINE_CPU_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/inference_engine.h"

namespace apex4 {

struct EngineOptions {
  std::string model_path;     // a .gguf file, a Hugging Face or an apex4 checkpoint directory
  int threads = 2;            // compute threads, the caller's included
  int64_t kv_cache_mb = 512;  // KV-cache pool; bounds the tokens held by all live sequences
  // 0: the model's own choice (a checkpoint's kv_cache, else 16); 4 or 16 overrides it. With 4
  // the cache holds the dequantized INT4 values in FP32: the 4-bit numbers, not its memory.
  int kv_cache_bits = 0;
};

// NOT_FOUND / INVALID_ARGUMENT / UNIMPLEMENTED from the model files, naming what is wrong.
absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadCpuEngine(const EngineOptions& options);

}  // namespace apex4

#endif  // APEX4_ENGINE_CPU_ENGINE_H_
