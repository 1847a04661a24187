// The CUDA engine: a LLaMA-family model on one GPU behind the InferenceEngine interface, with
// a paged fp16 KV cache in device memory, decode steps replayed as CUDA graphs and kernel time
// sampled with CUDA events. Models:
//   - an apex4 W4A4 checkpoint directory (tools/quantizer/FORMAT.md): W4A4 linear layers;
//   - a llama.cpp GGUF file, or a Hugging Face directory (config.json, safetensors weights in
//     F32 / F16 / BF16, tokenizer.json): the baselines, BF16 (cuBLAS) or FP8 W8A8 (cuBLASLt)
//     layers from the full-precision weights;
//   - "synthetic:<shape>" (llama-2-7b, llama-2-70b, llama-3-8b): random weights (never zeros)
//     of that shape in any of the three formats, for speed measurements of models we do not
//     ship; the vocabulary is that of the tokenizer given (a GGUF file).
// Embedding and LM head are bf16 in every format.
#ifndef APEX4_ENGINE_CUDA_CUDA_ENGINE_H_
#define APEX4_ENGINE_CUDA_CUDA_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/inference_engine.h"

namespace apex4 {

inline constexpr char kSyntheticModelPrefix[] = "synthetic:";

struct CudaEngineOptions {
  std::string model_path;       // checkpoint or HF directory, .gguf file or "synthetic:<shape>"
  std::string tokenizer_path;   // a GGUF whose tokenizer a synthetic model uses
  std::string weight_format;    // "w4a4", "bf16", "fp8"; empty: the model's own (GGUF: bf16)
  int device = 0;
  // KV-cache pool in MiB; 0 sizes it from the GPU memory left after weights and buffers.
  int64_t kv_cache_mb = 0;
  int kv_cache_bits = 0;        // 0: the model's own choice (synthetic: 16); 4 or 16 overrides it
  int max_batch_size = 8;       // sequences per step
  int64_t max_step_tokens = 2048;  // tokens per step, all sequences together
  bool cuda_graphs = true;      // replay decode steps (one token per sequence) as graphs
  int timing_interval = 64;     // time the kernels of every n-th step (0: never)
};

// NOT_FOUND / INVALID_ARGUMENT / UNIMPLEMENTED from the model files; FAILED_PRECONDITION when
// there is no usable GPU; RESOURCE_EXHAUSTED naming what did not fit in GPU memory.
absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadCudaEngine(const CudaEngineOptions& options);

}  // namespace apex4

#endif  // APEX4_ENGINE_CUDA_CUDA_ENGINE_H_
