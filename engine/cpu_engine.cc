#include "engine/cpu_engine.h"

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/apex4_checkpoint.h"
#include "engine/apex4_llama_weights.h"
#include "engine/gguf_reader.h"
#include "engine/hf_llama_loader.h"
#include "engine/kv_block_allocator.h"
#include "engine/kv_cache.h"
#include "engine/llama_config.h"
#include "engine/llama_model.h"
#include "engine/llama_weights.h"
#include "engine/status_macros.h"
#include "engine/tokenizer_loader.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {
namespace {

class CpuEngine : public InferenceEngine {
 public:
  CpuEngine(EngineInfo info, Tokenizer tokenizer, std::unique_ptr<ThreadPool> pool,
            std::unique_ptr<LlamaModel> model, std::unique_ptr<PagedKvCache> cache,
            std::optional<Apex4Metadata> apex4_metadata = std::nullopt,
            std::string model_path = "")
      : info_(std::move(info)),
        tokenizer_(std::move(tokenizer)),
        pool_(std::move(pool)),
        model_(std::move(model)),
        cache_(std::move(cache)),
        apex4_metadata_(std::move(apex4_metadata)),
        model_path_(std::move(model_path)) {}

  const EngineInfo& info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }

  absl::StatusOr<int64_t> StartSequence(int32_t max_tokens) override {
    RETURN_IF_ERROR(CheckSequenceLength(max_tokens, info_.context_length));
    return cache_->AddSequence(max_tokens);
  }

  void EndSequence(int64_t sequence_id) override { cache_->RemoveSequence(sequence_id); }

  absl::Status Step(absl::Span<const SequenceStep> batch, std::vector<float>* logits) override {
    entries_.clear();
    for (const SequenceStep& step : batch) entries_.push_back({step.sequence_id, step.tokens});
    return model_->Forward(entries_, cache_.get(), timer_, logits);
  }

  absl::Status StepAllLogits(const SequenceStep& step, std::vector<float>* logits) override {
    const ForwardEntry entry{step.sequence_id, step.tokens, /*all_logits=*/true};
    return model_->Forward({&entry, 1}, cache_.get(), timer_, logits);
  }

  KvCacheUsage kv_usage() const override { return cache_->Usage(); }

  std::vector<LayerToPlan> PlannableLayers() const override {
    return apex4_metadata_ ? Apex4PlannableLayers(*apex4_metadata_) : std::vector<LayerToPlan>{};
  }

  // Rebuilds the planned layers from the checkpoint, read again: start-up only, and the engine
  // need not hold the file's other variants in memory meanwhile.
  absl::Status ApplyPlan(const ExecutionPlan& plan) override {
    if (!apex4_metadata_) return absl::OkStatus();
    ASSIGN_OR_RETURN(const GranularityPlan granularity, GranularityPlan::FromExecutionPlan(plan));
    ASSIGN_OR_RETURN(const Apex4Checkpoint checkpoint, Apex4Checkpoint::Open(model_path_));
    return ApplyGranularityPlan(checkpoint, granularity, pool_.get(),
                                &model_->mutable_weights());
  }
  void set_kernel_timer(KernelTimer* timer) override { timer_ = timer; }

 private:
  EngineInfo info_;
  Tokenizer tokenizer_;
  std::unique_ptr<ThreadPool> pool_;  // used by the model's layers: destroyed after them
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<PagedKvCache> cache_;
  KernelTimer* timer_ = nullptr;
  std::vector<ForwardEntry> entries_;  // reused across steps
  std::optional<Apex4Metadata> apex4_metadata_;  // set when serving an apex4 checkpoint
  std::string model_path_;
};

// The KV cache the model runs: options.kv_cache_bits over the model's own choice (a
// checkpoint's kv_cache, else 16-bit). With 4 bits the cache still holds floats: the
// dequantized INT4 values (LlamaModel::RoundForInt4KvCache), so it takes as much memory.
absl::Status ResolveKvCache(const EngineOptions& options, LlamaConfig* config) {
  ASSIGN_OR_RETURN(config->kv_cache,
                   ResolveKvCacheQuantization(config->kv_cache, options.kv_cache_bits));
  return config->Validate();
}

// Shared by all formats: the KV cache, the model and the engine around loaded weights.
absl::StatusOr<std::unique_ptr<InferenceEngine>> AssembleEngine(
    const EngineOptions& options, const LlamaConfig& config, Tokenizer tokenizer,
    std::unique_ptr<ThreadPool> pool, LlamaWeights weights, EngineInfo info,
    std::optional<Apex4Metadata> apex4_metadata = std::nullopt) {
  if (tokenizer.vocab_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", tokenizer.vocab_size(),
                                                   " tokens, the model's embedding only ",
                                                   config.vocab_size));
  }
  const KvCacheShape shape{config.num_layers, config.num_kv_heads, config.head_dim};
  ASSIGN_OR_RETURN(std::unique_ptr<PagedKvCache> cache,
                   PagedKvCache::Create(shape, options.kv_cache_mb << 20));
  info.architecture = "llama";
  info.backend = "cpu";
  info.vocab_size = config.vocab_size;
  info.context_length = config.context_length;
  info.num_layers = config.num_layers;
  info.hidden_size = config.hidden_size;
  info.kv_cache_bits = config.kv_cache.bits;
  auto model = std::make_unique<LlamaModel>(config, std::move(weights), pool.get());
  return std::unique_ptr<InferenceEngine>(new CpuEngine(
      std::move(info), std::move(tokenizer), std::move(pool), std::move(model), std::move(cache),
      std::move(apex4_metadata), options.model_path));
}

// An apex4 W4A4 checkpoint directory (tools/quantizer/FORMAT.md). Its tokenizer is the one of
// the full-precision GGUF it was made from, expected beside the directory (models/) and checked
// against the recorded sha256.
absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadApex4CpuEngine(const EngineOptions& options) {
  ASSIGN_OR_RETURN(const Apex4Checkpoint checkpoint, Apex4Checkpoint::Open(options.model_path));
  const Apex4Metadata& metadata = checkpoint.metadata();
  std::filesystem::path directory(options.model_path);
  if (!directory.has_filename()) directory = directory.parent_path();  // a trailing '/'
  const std::string source = (directory.parent_path() / metadata.source.file).string();
  RETURN_IF_ERROR(VerifyApex4Source(metadata, source));
  ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(source));
  ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(*gguf));
  ASSIGN_OR_RETURN(LlamaConfig config, LlamaConfigFromApex4(metadata));
  RETURN_IF_ERROR(ResolveKvCache(options, &config));
  auto pool = std::make_unique<ThreadPool>(options.threads);
  ASSIGN_OR_RETURN(LlamaWeights weights,
                   LoadLlamaWeightsFromApex4(checkpoint, config, GranularityPlan{}, pool.get()));
  EngineInfo info;
  info.name = directory.filename().string();
  info.format = "apex4";
  info.quantization = absl::StrCat("w4a4-", metadata.default_granularity);
  return AssembleEngine(options, config, std::move(tokenizer), std::move(pool),
                        std::move(weights), std::move(info), metadata);
}

// A Hugging Face model directory: config.json, safetensors weights and tokenizer.json.
absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadHfCpuEngine(const EngineOptions& options) {
  const std::filesystem::path directory(options.model_path);
  ASSIGN_OR_RETURN(LlamaConfig config, LlamaConfigFromHfDirectory(options.model_path));
  RETURN_IF_ERROR(ResolveKvCache(options, &config));
  ASSIGN_OR_RETURN(Tokenizer tokenizer,
                   TokenizerFromJson((directory / "tokenizer.json").string()));
  auto pool = std::make_unique<ThreadPool>(options.threads);
  ASSIGN_OR_RETURN(LlamaWeights weights,
                   LoadLlamaWeightsFromHfDirectory(options.model_path, config, pool.get()));
  EngineInfo info;
  info.name = (directory.has_filename() ? directory : directory.parent_path()).filename();
  info.format = "safetensors";
  info.quantization = "fp32";
  return AssembleEngine(options, config, std::move(tokenizer), std::move(pool),
                        std::move(weights), std::move(info));
}

}  // namespace

absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadCpuEngine(const EngineOptions& options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("thread count must be at least 1, got ", options.threads));
  }
  if (Apex4Checkpoint::IsCheckpointDirectory(options.model_path)) {
    return LoadApex4CpuEngine(options);
  }
  if (IsHfModelDirectory(options.model_path)) return LoadHfCpuEngine(options);
  ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(options.model_path));
  ASSIGN_OR_RETURN(LlamaConfig config, LlamaConfigFromGguf(*gguf));
  RETURN_IF_ERROR(ResolveKvCache(options, &config));
  ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(*gguf));
  auto pool = std::make_unique<ThreadPool>(options.threads);
  ASSIGN_OR_RETURN(LlamaWeights weights, LoadLlamaWeightsFromGguf(*gguf, config, pool.get()));
  EngineInfo info;
  // The file name says what users chose ("SmolLM2-135M-Instruct.Q4_1.gguf"); general.name is
  // often a training-run label.
  const std::string file_name = std::filesystem::path(options.model_path).filename().string();
  info.name = file_name.substr(0, file_name.find('.'));
  info.format = "gguf";
  info.quantization = "fp32";
  return AssembleEngine(options, config, std::move(tokenizer), std::move(pool),
                        std::move(weights), std::move(info));
}

}  // namespace apex4
