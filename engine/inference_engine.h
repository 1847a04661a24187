// The model engine as the server sees it: a loaded model that advances a batch of sequences by
// one forward step. Knows nothing of gRPC; the server's scheduler owns batching, sampling and
// streaming, the engine owns weights, the KV cache and the forward pass.
#ifndef APEX4_ENGINE_INFERENCE_ENGINE_H_
#define APEX4_ENGINE_INFERENCE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kernel_timer.h"
#include "engine/planner/planner.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"

namespace apex4 {

// What is loaded, for logs, the model-info RPC and metrics.
struct EngineInfo {
  std::string name;              // e.g. "SmolLM2-135M-Instruct"
  std::string architecture;      // "llama"
  std::string format;            // "gguf", "safetensors", "apex4"
  std::string quantization;      // "fp32", "w4a4-g128", "w4a4-mixed", ...
  std::string backend;           // "cpu" or "cuda:<device>"
  int32_t vocab_size = 0;
  int32_t context_length = 0;    // longest sequence (prompt + completion) the engine accepts
  int32_t num_layers = 0;
  int32_t hidden_size = 0;
  // The KV cache the engine runs: 16 (the CPU keeps FP32, the GPU 16-bit floats) or 4 (INT4
  // per token and KV head; the CPU keeps the dequantized values in FP32, llama_model.h).
  int kv_cache_bits = 16;
};

// One sequence's share of a forward step.
struct SequenceStep {
  int64_t sequence_id = 0;            // from StartSequence()
  absl::Span<const int32_t> tokens;   // appended to the sequence this step (prompt chunk or 1 token)
};

struct KvCacheUsage {
  int64_t blocks_in_use = 0;
  int64_t blocks_total = 0;
  int64_t bytes_in_use = 0;
};

// Thread-safety: info() and tokenizer() are immutable after creation and may be read from any
// thread. StartSequence, EndSequence, Step and kv_usage must be called from one thread at a time
// (the server's scheduler thread).
class InferenceEngine {
 public:
  virtual ~InferenceEngine() = default;

  virtual const EngineInfo& info() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;

  // Reserves KV-cache space for a new sequence of at most `max_tokens` tokens.
  // RESOURCE_EXHAUSTED when the cache cannot hold it now; INVALID_ARGUMENT past context_length.
  virtual absl::StatusOr<int64_t> StartSequence(int32_t max_tokens) = 0;
  // Frees the sequence's KV cache at once. Unknown ids are ignored.
  virtual void EndSequence(int64_t sequence_id) = 0;

  // Runs one forward pass over every entry of `batch` (each a distinct live sequence), appending
  // its tokens to its KV cache, and writes the logits of each entry's last token to
  // logits[i * vocab_size ...]. On error no sequence's cache is changed.
  virtual absl::Status Step(absl::Span<const SequenceStep> batch, std::vector<float>* logits) = 0;

  // Step, then the next token of every entry picked from its logits as picks[i] says
  // (picks.size() == batch.size()): tokens[i] is TokenPicker's choice (engine/sampler.h), or -1
  // when entry i's logits hold nothing above -inf. The default picks on the host; an engine
  // overrides it where picking next to the logits saves bringing them back (the CUDA engine: one
  // id per entry instead of vocab_size floats).
  virtual absl::Status StepAndPick(absl::Span<const SequenceStep> batch, absl::Span<const TokenPick> picks,
                                   std::vector<int32_t>* tokens) {
    if (absl::Status check = CheckPicks(batch, picks); !check.ok()) return check;
    std::vector<float> logits;
    if (absl::Status status = Step(batch, &logits); !status.ok()) return status;
    const size_t vocab = static_cast<size_t>(info().vocab_size);
    TokenPicker picker;
    tokens->assign(batch.size(), -1);
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::StatusOr<int32_t> token = picker.Pick(picks[i], absl::MakeConstSpan(logits.data() + i * vocab, vocab));
      if (token.ok()) (*tokens)[i] = *token;
    }
    return absl::OkStatus();
  }

  // Evaluation's path (perplexity, log-likelihood scoring): like Step for one sequence, but writes
  // the logits of every appended token, logits[i * vocab_size ...] for step.tokens[i].
  // Engines that only compute last-token logits keep this default.
  virtual absl::Status StepAllLogits(const SequenceStep& step, std::vector<float>* logits) {
    return absl::UnimplementedError(info().backend +
                                    " engine does not return all-position logits");
  }

  virtual KvCacheUsage kv_usage() const = 0;

  // The 4-bit linear layers whose granularity the node's planner may choose (empty for a
  // full-precision model), and applying its choice. ApplyPlan runs before serving starts; layers
  // the plan does not name keep the checkpoint's default.
  virtual std::vector<LayerToPlan> PlannableLayers() const { return {}; }
  virtual absl::Status ApplyPlan(const ExecutionPlan& plan) { return absl::OkStatus(); }

  // Where kernel timings go (may be null: not recorded). Not owned; must outlive the engine.
  virtual void set_kernel_timer(KernelTimer* timer) = 0;

 protected:
  // StepAndPick's argument check, for overrides too.
  static absl::Status CheckPicks(absl::Span<const SequenceStep> batch, absl::Span<const TokenPick> picks) {
    if (picks.size() != batch.size()) {
      return absl::InvalidArgumentError("StepAndPick: one pick per batch entry");
    }
    for (const TokenPick& pick : picks) {
      const absl::Status valid = ValidateSamplerConfig({pick.temperature, pick.top_k, pick.top_p, 0});
      if (!valid.ok()) return valid;
      if (!(pick.uniform >= 0.0 && pick.uniform < 1.0)) {
        return absl::InvalidArgumentError("StepAndPick: a pick's uniform draw must be in [0, 1)");
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace apex4

#endif  // APEX4_ENGINE_INFERENCE_ENGINE_H_
