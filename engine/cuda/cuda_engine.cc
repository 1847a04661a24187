#include "engine/cuda/cuda_engine.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "engine/apex4_checkpoint.h"
#include "engine/apex4_llama_weights.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/gpu_linear.h"
#include "engine/cuda/gpu_llama_model.h"
#include "engine/cuda/gpu_phase_timer.h"
#include "engine/gguf_reader.h"
#include "engine/hf_llama_loader.h"
#include "engine/kv_block_allocator.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "engine/status_macros.h"
#include "engine/tokenizer_loader.h"
#include "kernels/cuda/dense/dense_linear.h"
#include "kernels/cuda/fill/random_fill.h"
#include "kernels/cuda/ops/llama_elementwise.h"
#include "kernels/cuda/ops/sample_rows.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4 {
namespace {

// ---------------------------------------------------------------------------------------------
// Weights

absl::StatusOr<DeviceMemory> UploadBf16(absl::Span<const float> values, const std::string& what) {
  std::vector<__nv_bfloat16> converted(values.size());
  cuda::ConvertWeightsToBf16(values.data(), static_cast<int64_t>(values.size()),
                             converted.data());
  return UploadToDevice(converted.data(), converted.size() * sizeof(__nv_bfloat16), what);
}

absl::StatusOr<DeviceMemory> UploadFloats(absl::Span<const float> values, const std::string& what) {
  return UploadToDevice(values.data(), values.size() * sizeof(float), what);
}

std::vector<float> Concatenate(std::vector<std::vector<float>> parts) {
  std::vector<float> result = std::move(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    result.insert(result.end(), parts[i].begin(), parts[i].end());
  }
  return result;
}

// The fused projections of one block and the checkpoint layers each stacks, in row order.
struct FusedProjection {
  const char* name;                       // "attn_qkv"
  std::vector<const char*> parts;         // {"attn_q", "attn_k", "attn_v"}
  std::unique_ptr<GpuLinear> GpuLlamaLayer::*slot;
};

const std::vector<FusedProjection>& FusedProjections() {
  static const auto* const kProjections = new std::vector<FusedProjection>{
      {"attn_qkv", {"attn_q", "attn_k", "attn_v"}, &GpuLlamaLayer::qkv},
      {"attn_output", {"attn_output"}, &GpuLlamaLayer::attention_output},
      {"ffn_gate_up", {"ffn_gate", "ffn_up"}, &GpuLlamaLayer::gate_up},
      {"ffn_down", {"ffn_down"}, &GpuLlamaLayer::down},
  };
  return *kProjections;
}

std::string FusedName(int block, const FusedProjection& projection) {
  return absl::StrCat("blk.", block, ".", projection.name);
}

// BF16 or FP8 layers from a full-precision source (a GGUF file's dequantized weights).
absl::StatusOr<GpuLlamaWeights> BuildFromSource(const LlamaConfig& config,
                                                const LlamaWeightSource& source,
                                                GpuWeightFormat format) {
  using K = LlamaWeightKind;
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_kv_heads} * config.head_dim;
  const int64_t ffn = config.intermediate_size;
  auto get = [&](K kind, int layer, int64_t rows, int64_t cols) {
    return source({kind, layer, rows, cols});
  };
  GpuLlamaWeights weights;
  ASSIGN_OR_RETURN(std::vector<float> embedding,
                   get(K::kTokenEmbedding, -1, config.vocab_size, hidden));
  ASSIGN_OR_RETURN(weights.token_embedding, UploadBf16(embedding, "the token embedding"));
  weights.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    GpuLlamaLayer& layer = weights.layers[l];
    const std::string block = absl::StrCat("blk.", l, ".");
    ASSIGN_OR_RETURN(std::vector<float> attention_norm, get(K::kAttentionNorm, l, 1, hidden));
    ASSIGN_OR_RETURN(layer.attention_norm, UploadFloats(attention_norm, block + "attn_norm"));
    ASSIGN_OR_RETURN(std::vector<float> ffn_norm, get(K::kFfnNorm, l, 1, hidden));
    ASSIGN_OR_RETURN(layer.ffn_norm, UploadFloats(ffn_norm, block + "ffn_norm"));
    ASSIGN_OR_RETURN(std::vector<float> q, get(K::kQuery, l, q_dim, hidden));
    ASSIGN_OR_RETURN(std::vector<float> k, get(K::kKey, l, kv_dim, hidden));
    ASSIGN_OR_RETURN(std::vector<float> v, get(K::kValue, l, kv_dim, hidden));
    ASSIGN_OR_RETURN(layer.qkv, GpuLinear::FromFloat(format, Concatenate({q, k, v}),
                                                     q_dim + 2 * kv_dim, hidden,
                                                     block + "attn_qkv"));
    ASSIGN_OR_RETURN(std::vector<float> o, get(K::kAttentionOutput, l, hidden, q_dim));
    ASSIGN_OR_RETURN(layer.attention_output,
                     GpuLinear::FromFloat(format, o, hidden, q_dim, block + "attn_output"));
    ASSIGN_OR_RETURN(std::vector<float> gate, get(K::kGate, l, ffn, hidden));
    ASSIGN_OR_RETURN(std::vector<float> up, get(K::kUp, l, ffn, hidden));
    ASSIGN_OR_RETURN(layer.gate_up, GpuLinear::FromFloat(format, Concatenate({gate, up}), 2 * ffn,
                                                         hidden, block + "ffn_gate_up"));
    ASSIGN_OR_RETURN(std::vector<float> down, get(K::kDown, l, hidden, ffn));
    ASSIGN_OR_RETURN(layer.down,
                     GpuLinear::FromFloat(format, down, hidden, ffn, block + "ffn_down"));
  }
  ASSIGN_OR_RETURN(std::vector<float> output_norm, get(K::kOutputNorm, -1, 1, hidden));
  ASSIGN_OR_RETURN(weights.output_norm, UploadFloats(output_norm, "output_norm"));
  if (!config.tied_embeddings) {
    ASSIGN_OR_RETURN(std::vector<float> head, get(K::kLmHead, -1, config.vocab_size, hidden));
    ASSIGN_OR_RETURN(weights.lm_head, UploadBf16(head, "the LM head"));
  }
  return weights;
}

// One stored variant of a checkpoint layer, as the GPU loads it.
absl::StatusOr<W4A4HostWeights> ReadW4A4(const Apex4Checkpoint& checkpoint,
                                         const Apex4Linear& layer, Granularity granularity) {
  auto variant = layer.variants.find(granularity);
  if (variant == layer.variants.end()) {
    return absl::InvalidArgumentError(absl::StrCat("plan runs ", layer.name, " at ",
                                                   GranularityName(granularity),
                                                   ", which the checkpoint does not store"));
  }
  W4A4HostWeights weights;
  weights.n = layer.n;
  weights.k = layer.k;
  weights.k_padded = layer.k_padded;
  weights.granularity = granularity;
  weights.activation_clip_ratio = variant->second.act_clip_ratio;
  weights.online_hadamard_block = layer.online_hadamard_block;
  const int64_t groups = layer.k_padded / GroupSizeFor(granularity, layer.k_padded);
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> packed,
                   checkpoint.U8(variant->second.qweight, {layer.n, PackedRowBytes(layer.k_padded)}));
  ASSIGN_OR_RETURN(absl::Span<const float> scales,
                   checkpoint.F32(variant->second.scales, {layer.n, groups}));
  weights.packed.assign(packed.begin(), packed.end());
  weights.scales.assign(scales.begin(), scales.end());
  ASSIGN_OR_RETURN(weights.outliers, ReadOutlierChannels(checkpoint, layer));
  return weights;
}

class Apex4Layers {
 public:
  explicit Apex4Layers(const Apex4Checkpoint& checkpoint) : checkpoint_(checkpoint) {
    for (const Apex4Linear& layer : checkpoint.metadata().layers) by_name_[layer.name] = &layer;
  }

  absl::StatusOr<std::vector<const Apex4Linear*>> Parts(int block,
                                                        const FusedProjection& projection) const {
    std::vector<const Apex4Linear*> parts;
    for (const char* part : projection.parts) {
      const std::string name = absl::StrCat("blk.", block, ".", part);
      auto it = by_name_.find(name);
      if (it == by_name_.end()) {
        return absl::InvalidArgumentError(absl::StrCat("checkpoint has no layer ", name));
      }
      parts.push_back(it->second);
    }
    return parts;
  }

  // The granularity a fused projection runs at unless planned: its first part's configured one.
  absl::StatusOr<Granularity> Default(int block, const FusedProjection& projection) const {
    ASSIGN_OR_RETURN(std::vector<const Apex4Linear*> parts, Parts(block, projection));
    return parts[0]->configured;
  }

  absl::StatusOr<std::unique_ptr<GpuLinear>> Build(int block, const FusedProjection& projection,
                                                   Granularity granularity,
                                                   cuda::W4A4Backend backend) const {
    ASSIGN_OR_RETURN(std::vector<const Apex4Linear*> parts, Parts(block, projection));
    std::vector<W4A4HostWeights> host;
    for (const Apex4Linear* part : parts) {
      ASSIGN_OR_RETURN(W4A4HostWeights weights, ReadW4A4(checkpoint_, *part, granularity));
      host.push_back(std::move(weights));
    }
    const std::string name = FusedName(block, projection);
    absl::StatusOr<W4A4HostWeights> fused = W4A4HostWeights::Concatenate(std::move(host));
    if (!fused.ok()) {
      return absl::Status(fused.status().code(), absl::StrCat(name, ": ", fused.status().message()));
    }
    return GpuLinear::FromW4A4(*fused, backend, name);
  }

  std::vector<LayerToPlan> Plannable(int num_layers) const {
    std::vector<LayerToPlan> layers;
    for (int block = 0; block < num_layers; ++block) {
      for (const FusedProjection& projection : FusedProjections()) {
        absl::StatusOr<std::vector<const Apex4Linear*>> parts = Parts(block, projection);
        if (!parts.ok()) continue;
        LayerToPlan layer;
        layer.name = FusedName(block, projection);
        layer.k = (*parts)[0]->k_padded;
        layer.has_per_channel = layer.has_g128 = true;
        for (const Apex4Linear* part : *parts) {
          layer.n += part->n;
          layer.has_per_channel &= part->variants.count(Granularity::kPerChannel) > 0;
          layer.has_g128 &= part->variants.count(Granularity::kGroup128) > 0;
          if (part->sensitivity.has_value()) {
            layer.per_channel_over_g128 =
                std::max(layer.per_channel_over_g128, part->sensitivity->per_channel_over_g128);
          }
        }
        layer.n = (layer.n + 127) / 128 * 128;
        layers.push_back(std::move(layer));
      }
    }
    return layers;
  }

 private:
  const Apex4Checkpoint& checkpoint_;
  std::map<std::string, const Apex4Linear*> by_name_;
};

absl::StatusOr<GpuLlamaWeights> BuildFromApex4(const Apex4Checkpoint& checkpoint,
                                               const LlamaConfig& config,
                                               cuda::W4A4Backend backend) {
  const int64_t hidden = config.hidden_size;
  GpuLlamaWeights weights;
  ASSIGN_OR_RETURN(absl::Span<const float> embedding,
                   checkpoint.F32("token_embd.weight", {config.vocab_size, hidden}));
  ASSIGN_OR_RETURN(weights.token_embedding, UploadBf16(embedding, "the token embedding"));
  const Apex4Layers layers(checkpoint);
  weights.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    GpuLlamaLayer& layer = weights.layers[l];
    const std::string block = absl::StrCat("blk.", l, ".");
    ASSIGN_OR_RETURN(absl::Span<const float> attention_norm,
                     checkpoint.F32(block + "attn_norm.weight", {hidden}));
    ASSIGN_OR_RETURN(layer.attention_norm, UploadFloats(attention_norm, block + "attn_norm"));
    ASSIGN_OR_RETURN(absl::Span<const float> ffn_norm,
                     checkpoint.F32(block + "ffn_norm.weight", {hidden}));
    ASSIGN_OR_RETURN(layer.ffn_norm, UploadFloats(ffn_norm, block + "ffn_norm"));
    for (const FusedProjection& projection : FusedProjections()) {
      ASSIGN_OR_RETURN(const Granularity granularity, layers.Default(l, projection));
      ASSIGN_OR_RETURN(layer.*projection.slot, layers.Build(l, projection, granularity, backend));
    }
  }
  ASSIGN_OR_RETURN(absl::Span<const float> output_norm,
                   checkpoint.F32("output_norm.weight", {hidden}));
  ASSIGN_OR_RETURN(weights.output_norm, UploadFloats(output_norm, "output_norm"));
  ASSIGN_OR_RETURN(absl::Span<const float> head,
                   checkpoint.F32("output.weight", {config.vocab_size, hidden}));
  ASSIGN_OR_RETURN(weights.lm_head, UploadBf16(head, "the LM head"));
  return weights;
}

// Shapes of published models whose weights we do not ship; the vocabulary is the tokenizer's.
absl::StatusOr<LlamaConfig> SyntheticConfig(absl::string_view shape, int32_t vocab_size) {
  LlamaConfig config;
  config.vocab_size = vocab_size;
  config.head_dim = 128;
  config.rms_norm_eps = 1e-5f;
  if (shape == "llama-2-7b") {
    config.num_layers = 32, config.hidden_size = 4096, config.num_heads = 32;
    config.num_kv_heads = 32, config.intermediate_size = 11008, config.context_length = 4096;
  } else if (shape == "llama-2-70b") {
    config.num_layers = 80, config.hidden_size = 8192, config.num_heads = 64;
    config.num_kv_heads = 8, config.intermediate_size = 28672, config.context_length = 4096;
  } else if (shape == "llama-3-8b") {
    config.num_layers = 32, config.hidden_size = 4096, config.num_heads = 32;
    config.num_kv_heads = 8, config.intermediate_size = 14336, config.context_length = 8192;
    config.rope_theta = 500000.0f;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown synthetic model shape '", shape, "' (llama-2-7b, llama-2-70b, llama-3-8b)"));
  }
  RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::StatusOr<std::unique_ptr<GpuLinear>> SyntheticLinear(const LlamaConfig& config, int block,
                                                           const FusedProjection& projection,
                                                           GpuWeightFormat format,
                                                           Granularity granularity,
                                                           cuda::W4A4Backend backend) {
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_heads} * config.head_dim;
  const int64_t kv_dim = int64_t{config.num_kv_heads} * config.head_dim;
  const int64_t ffn = config.intermediate_size;
  int64_t n = 0, k = 0;
  if (projection.slot == &GpuLlamaLayer::qkv) n = q_dim + 2 * kv_dim, k = hidden;
  if (projection.slot == &GpuLlamaLayer::attention_output) n = hidden, k = q_dim;
  if (projection.slot == &GpuLlamaLayer::gate_up) n = 2 * ffn, k = hidden;
  if (projection.slot == &GpuLlamaLayer::down) n = hidden, k = ffn;
  const uint64_t seed = 16ull * block + (&projection - FusedProjections().data());
  return GpuLinear::Synthetic(format, n, k, granularity, backend, seed,
                              FusedName(block, projection));
}

absl::StatusOr<GpuLlamaWeights> BuildSynthetic(const LlamaConfig& config, GpuWeightFormat format,
                                               cuda::W4A4Backend backend) {
  const int64_t hidden = config.hidden_size;
  GpuLlamaWeights weights;
  const std::vector<float> ones(hidden, 1.0f);
  ASSIGN_OR_RETURN(weights.token_embedding,
                   DeviceMemory::Allocate(int64_t{config.vocab_size} * hidden * 2,
                                          "the synthetic token embedding"));
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::FillRandomBf16(weights.token_embedding.as<__nv_bfloat16>(),
                           int64_t{config.vocab_size} * hidden, 7, 0.05f, nullptr),
      "the synthetic token embedding"));
  weights.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    GpuLlamaLayer& layer = weights.layers[l];
    ASSIGN_OR_RETURN(layer.attention_norm, UploadFloats(ones, "attn_norm"));
    ASSIGN_OR_RETURN(layer.ffn_norm, UploadFloats(ones, "ffn_norm"));
    for (const FusedProjection& projection : FusedProjections()) {
      ASSIGN_OR_RETURN(layer.*projection.slot,
                       SyntheticLinear(config, l, projection, format,
                                       Granularity::kPerChannel, backend));
    }
  }
  ASSIGN_OR_RETURN(weights.output_norm, UploadFloats(ones, "output_norm"));
  ASSIGN_OR_RETURN(weights.lm_head, DeviceMemory::Allocate(
                                        int64_t{config.vocab_size} * hidden * 2, "the LM head"));
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::FillRandomBf16(weights.lm_head.as<__nv_bfloat16>(),
                           int64_t{config.vocab_size} * hidden, 11, 0.05f, nullptr),
      "the synthetic LM head"));
  RETURN_IF_ERROR(CudaCall(cudaDeviceSynchronize(), "generating synthetic weights"));
  return weights;
}

// ---------------------------------------------------------------------------------------------
// The engine

// Host-pinned and device copies of one step's description, at fixed device addresses so that a
// captured graph reads each step's values.
struct StepArrays {
  int64_t max_tokens = 0;
  int max_sequences = 0;
  int64_t max_logit_rows = 0;
  int32_t block_table_stride = 0;

  // Offsets (in int32 elements) of the arrays inside both buffers.
  int64_t tokens = 0, query_start = 0, context_len = 0, logit_rows = 0, block_tables = 0, total = 0;

  void Layout() {
    tokens = 0;
    query_start = tokens + max_tokens;
    context_len = query_start + max_sequences + 1;
    logit_rows = context_len + max_sequences;
    block_tables = logit_rows + max_logit_rows;
    total = block_tables + int64_t{max_sequences} * block_table_stride;
  }
};

class CudaEngine : public InferenceEngine {
 public:
  CudaEngine(EngineInfo info, Tokenizer tokenizer, const CudaEngineOptions& options)
      : info_(std::move(info)), tokenizer_(std::move(tokenizer)), options_(options) {}

  ~CudaEngine() override {
    for (auto& [shape, graph] : graphs_) cudaGraphExecDestroy(graph);
    if (host_steps_ != nullptr) cudaFreeHost(host_steps_);
    if (host_logits_ != nullptr) cudaFreeHost(host_logits_);
    if (host_picks_ != nullptr) cudaFreeHost(host_picks_);
    if (host_sampling_ != nullptr) cudaFreeHost(host_sampling_);
    model_.reset();
    dense_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // Stream, cuBLAS and the W4A4 backend: what the weights need before they load.
  absl::Status InitDevice(GpuWeightFormat format) {
    RETURN_IF_ERROR(CudaCall(cudaSetDevice(options_.device), "selecting the GPU"));
    RETURN_IF_ERROR(CudaCall(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                             "creating a CUDA stream"));
    RETURN_IF_ERROR(FromCudaStatus(cuda::DenseGemm::Create(stream_, &dense_), "starting cuBLAS"));
    context_.stream = stream_;
    context_.dense = dense_.get();
    RETURN_IF_ERROR(CudaCall(cudaDeviceGetAttribute(&context_.num_sms,
                                                    cudaDevAttrMultiProcessorCount,
                                                    options_.device),
                             "reading the GPU's multiprocessor count"));
    if (format == GpuWeightFormat::kW4A4) {
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::SelectW4A4Backend(options_.device, &context_.w4a4_backend),
          "no W4A4 kernel is built for this GPU"));
    }
    return absl::OkStatus();
  }

  cuda::W4A4Backend w4a4_backend() const { return context_.w4a4_backend; }

  // Buffers, the split-K scratch, the KV cache (what memory is left) and the step arrays.
  absl::Status Assemble(const LlamaConfig& model_config, GpuLlamaWeights weights,
                        std::optional<Apex4Checkpoint> checkpoint, GpuWeightFormat format) {
    LlamaConfig config = model_config;
    ASSIGN_OR_RETURN(config.kv_cache,
                     ResolveKvCacheQuantization(config.kv_cache, options_.kv_cache_bits));
    RETURN_IF_ERROR(config.Validate());
    config_ = config;
    format_ = format;
    checkpoint_ = std::move(checkpoint);
    steps_.max_tokens = options_.max_step_tokens;
    steps_.max_sequences = options_.max_batch_size;
    steps_.max_logit_rows = std::max<int64_t>(options_.max_batch_size, kMaxLogitRows);
    steps_.block_table_stride =
        static_cast<int32_t>(KvBlockAllocator::BlocksFor(config.context_length));
    steps_.Layout();
    RETURN_IF_ERROR(AllocateW4A4Workspace(weights));
    ASSIGN_OR_RETURN(model_, GpuLlamaModel::Create(config, std::move(weights),
                                                   steps_.max_tokens, steps_.max_sequences,
                                                   steps_.max_logit_rows, context_));
    ASSIGN_OR_RETURN(device_steps_, DeviceMemory::Allocate(steps_.total * sizeof(int32_t),
                                                           "step descriptions"));
    RETURN_IF_ERROR(CudaCall(cudaMallocHost(&host_steps_, steps_.total * sizeof(int32_t)),
                             "pinning host memory for step descriptions"));
    const int64_t logit_floats = steps_.max_logit_rows * config.vocab_size;
    ASSIGN_OR_RETURN(device_logits_,
                     DeviceMemory::Allocate(logit_floats * sizeof(float), "logits"));
    RETURN_IF_ERROR(CudaCall(cudaMallocHost(&host_logits_, logit_floats * sizeof(float)),
                             "pinning host memory for logits"));
    ASSIGN_OR_RETURN(device_picks_, DeviceMemory::Allocate(steps_.max_logit_rows * sizeof(int32_t),
                                                           "picked tokens"));
    RETURN_IF_ERROR(CudaCall(cudaMallocHost(&host_picks_, steps_.max_logit_rows * sizeof(int32_t)),
                             "pinning host memory for picked tokens"));
    ASSIGN_OR_RETURN(device_sampling_,
                     DeviceMemory::Allocate(steps_.max_sequences * sizeof(cuda::SamplingRow), "sampling settings"));
    RETURN_IF_ERROR(CudaCall(cudaMallocHost(&host_sampling_, steps_.max_sequences * sizeof(cuda::SamplingRow)),
                             "pinning host memory for sampling settings"));
    if (options_.timing_interval > 0) {
      ASSIGN_OR_RETURN(phases_, GpuPhaseTimer::Create(16 * config.num_layers + 8));
    }
    RETURN_IF_ERROR(AllocateKvCache());
    info_.architecture = "llama";
    info_.backend = absl::StrCat("cuda:", options_.device);
    info_.vocab_size = config.vocab_size;
    info_.context_length = config.context_length;
    info_.num_layers = config.num_layers;
    info_.hidden_size = config.hidden_size;
    info_.kv_cache_bits = config.kv_cache.bits;
    return absl::OkStatus();
  }

  const EngineInfo& info() const override { return info_; }
  const Tokenizer& tokenizer() const override { return tokenizer_; }

  absl::StatusOr<int64_t> StartSequence(int32_t max_tokens) override {
    RETURN_IF_ERROR(CheckSequenceLength(max_tokens, info_.context_length));
    return allocator_->AddSequence(max_tokens);
  }

  void EndSequence(int64_t sequence_id) override { allocator_->RemoveSequence(sequence_id); }

  absl::Status Step(absl::Span<const SequenceStep> batch, std::vector<float>* logits) override {
    RETURN_IF_ERROR(CheckStep(batch));
    return Run(batch, /*all_logits=*/false, /*picks=*/{}, nullptr, logits);
  }

  // Tokens are picked on the GPU (SampleRows, TokenPicker's rule in fixed point): one id comes
  // back per entry instead of vocab_size floats.
  absl::Status StepAndPick(absl::Span<const SequenceStep> batch, absl::Span<const TokenPick> picks,
                           std::vector<int32_t>* tokens) override {
    RETURN_IF_ERROR(CheckPicks(batch, picks));
    RETURN_IF_ERROR(CheckStep(batch));
    return Run(batch, /*all_logits=*/false, picks, tokens, nullptr);
  }

  absl::Status StepAllLogits(const SequenceStep& step, std::vector<float>* logits) override {
    RETURN_IF_ERROR(ValidateStep(absl::MakeConstSpan(&step, 1), config_.vocab_size, *allocator_));
    logits->clear();
    std::vector<float> chunk_logits;
    const int64_t chunk = std::min(steps_.max_logit_rows, steps_.max_tokens);
    for (size_t start = 0; start < step.tokens.size(); start += chunk) {
      const SequenceStep part{step.sequence_id, step.tokens.subspan(start, chunk)};
      RETURN_IF_ERROR(Run({&part, 1}, /*all_logits=*/true, /*picks=*/{}, nullptr, &chunk_logits));
      logits->insert(logits->end(), chunk_logits.begin(), chunk_logits.end());
    }
    return absl::OkStatus();
  }

  KvCacheUsage kv_usage() const override {
    KvCacheUsage usage;
    usage.blocks_total = allocator_->num_blocks();
    usage.blocks_in_use = allocator_->num_blocks() - allocator_->free_blocks();
    usage.bytes_in_use = usage.blocks_in_use * kv_block_bytes_;
    return usage;
  }

  std::vector<LayerToPlan> PlannableLayers() const override {
    if (format_ != GpuWeightFormat::kW4A4) return {};
    if (checkpoint_.has_value()) return Apex4Layers(*checkpoint_).Plannable(config_.num_layers);
    std::vector<LayerToPlan> layers;  // synthetic: either granularity can be generated
    for (int block = 0; block < config_.num_layers; ++block) {
      const GpuLlamaLayer& layer = model_->weights().layers[block];
      for (const FusedProjection& projection : FusedProjections()) {
        const GpuLinear& linear = *(layer.*projection.slot);
        layers.push_back({FusedName(block, projection), linear.output_stride(),
                          (linear.k() + 127) / 128 * 128, true, true, 0});
      }
    }
    return layers;
  }

  absl::Status ApplyPlan(const ExecutionPlan& plan) override {
    if (format_ != GpuWeightFormat::kW4A4) return absl::OkStatus();
    ASSIGN_OR_RETURN(const GranularityPlan granularity, GranularityPlan::FromExecutionPlan(plan));
    // Build every change first, so that a failure leaves the model as it was.
    std::vector<std::pair<std::unique_ptr<GpuLinear>*, std::unique_ptr<GpuLinear>>> changes;
    for (int block = 0; block < config_.num_layers; ++block) {
      GpuLlamaLayer& layer = model_->mutable_weights().layers[block];
      for (const FusedProjection& projection : FusedProjections()) {
        auto it = granularity.per_layer.find(FusedName(block, projection));
        std::unique_ptr<GpuLinear>& slot = layer.*projection.slot;
        if (it == granularity.per_layer.end() || it->second == slot->granularity()) continue;
        std::unique_ptr<GpuLinear> rebuilt;
        if (checkpoint_.has_value()) {
          ASSIGN_OR_RETURN(rebuilt, Apex4Layers(*checkpoint_).Build(block, projection, it->second,
                                                                    context_.w4a4_backend));
        } else {
          ASSIGN_OR_RETURN(rebuilt, SyntheticLinear(config_, block, projection, format_,
                                                    it->second, context_.w4a4_backend));
        }
        changes.emplace_back(&slot, std::move(rebuilt));
      }
    }
    for (auto& [slot, rebuilt] : changes) *slot = std::move(rebuilt);
    // Graphs captured before hold the old layers' pointers.
    for (auto& [shape, graph] : graphs_) cudaGraphExecDestroy(graph);
    graphs_.clear();
    return absl::OkStatus();
  }

  void set_kernel_timer(KernelTimer* timer) override { timer_ = timer; }

 private:
  static constexpr int64_t kMaxLogitRows = 256;  // StepAllLogits' chunk

  absl::Status AllocateW4A4Workspace(const GpuLlamaWeights& weights) {
    if (format_ != GpuWeightFormat::kW4A4) return absl::OkStatus();
    size_t bytes = 0;
    for (const FusedProjection& projection : FusedProjections()) {
      const GpuLinear& linear = *(weights.layers[0].*projection.slot);
      const int64_t k = (linear.k() + 127) / 128 * 128;
      for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
        for (int64_t m = 1; m <= steps_.max_tokens; ++m) {
          bytes = std::max(bytes, cuda::W4A4GemmWorkspaceBytes(context_.w4a4_backend, m,
                                                               linear.output_stride(), k, g,
                                                               context_.num_sms));
        }
      }
    }
    ASSIGN_OR_RETURN(w4a4_workspace_, DeviceMemory::Allocate(bytes, "W4A4 GEMM workspace"));
    if (bytes > 0) {
      RETURN_IF_ERROR(CudaCall(cudaMemset(w4a4_workspace_.get(), 0, bytes),
                               "zeroing the W4A4 GEMM workspace"));
    }
    context_.w4a4_workspace = w4a4_workspace_.get();
    context_.w4a4_workspace_bytes = bytes;
    return absl::OkStatus();
  }

  absl::Status AllocateKvCache() {
    const KvCacheQuantization& quantization = config_.kv_cache;
    const cuda::KvCacheFormat format =
        quantization.bits == 4 ? cuda::KvCacheFormat::kInt4 : cuda::KvCacheFormat::kFp16;
    // Blocks of every layer's K and V back to back (a multiple of 16 bytes in both formats).
    const int64_t block_stride =
        cuda::KvCacheBlockBytes(format, config_.num_kv_heads, config_.head_dim);
    kv_block_bytes_ = 2 * int64_t{config_.num_layers} * block_stride;
    int64_t budget = options_.kv_cache_mb << 20;
    if (budget == 0) {
      size_t free_bytes = 0, total_bytes = 0;
      RETURN_IF_ERROR(CudaCall(cudaMemGetInfo(&free_bytes, &total_bytes), "reading GPU memory"));
      // Headroom for cuBLAS, CUDA graphs and the allocator's own needs.
      const int64_t headroom = std::max<int64_t>(int64_t{1} << 30, total_bytes / 20);
      budget = static_cast<int64_t>(free_bytes) - headroom;
    }
    const int64_t num_blocks = budget / kv_block_bytes_;
    const int64_t one_sequence = KvBlockAllocator::BlocksFor(config_.context_length);
    if (num_blocks < one_sequence) {
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      return absl::ResourceExhaustedError(absl::StrCat(
          "the KV cache cannot hold one sequence of the context length (", config_.context_length,
          " tokens, ", FormatBytes(one_sequence * kv_block_bytes_), "): the budget is ",
          FormatBytes(std::max<int64_t>(budget, 0)), " with ", FormatBytes(free_bytes), " of ",
          FormatBytes(total_bytes), " GPU memory free after the weights; use a GPU with more "
          "memory, a smaller weight format or a larger --kv_cache_mb"));
    }
    ASSIGN_OR_RETURN(kv_memory_,
                     DeviceMemory::Allocate(num_blocks * kv_block_bytes_, "the KV cache"));
    allocator_ = std::make_unique<KvBlockAllocator>(num_blocks);
    auto* base = kv_memory_.as<char>();
    for (int l = 0; l < config_.num_layers; ++l) {
      cuda::KvCacheLayer layer;
      layer.format = format;
      layer.k = base + (2 * int64_t{l}) * num_blocks * block_stride;
      layer.v = base + (2 * int64_t{l} + 1) * num_blocks * block_stride;
      layer.block_stride = block_stride;
      kv_view_.layers.push_back(layer);
    }
    kv_view_.int4.key_clip_ratio = quantization.key_clip_ratio;
    kv_view_.int4.value_clip_ratio = quantization.value_clip_ratio;
    kv_view_.int4.rotate_keys = quantization.key_hadamard;
    return absl::OkStatus();
  }

  GpuStepInputs DeviceInputs(int num_seqs, int64_t num_tokens, int64_t num_logit_rows,
                             int32_t max_query_len, int32_t max_context_len) const {
    const auto* base = device_steps_.as<int32_t>();
    GpuStepInputs inputs;
    inputs.tokens = base + steps_.tokens;
    inputs.logit_rows = base + steps_.logit_rows;
    inputs.num_logit_rows = num_logit_rows;
    inputs.batch.query_start = base + steps_.query_start;
    inputs.batch.context_len = base + steps_.context_len;
    inputs.batch.block_tables = base + steps_.block_tables;
    inputs.batch.block_table_stride = steps_.block_table_stride;
    inputs.batch.num_seqs = num_seqs;
    inputs.batch.num_tokens = num_tokens;
    inputs.batch.max_query_len = max_query_len;
    inputs.batch.max_context_len = max_context_len;
    return inputs;
  }

  // Copies the used part of each array to the device, in stream order.
  absl::Status UploadStep(int num_seqs, int64_t num_tokens, int64_t num_logit_rows) {
    auto copy = [&](int64_t offset, int64_t count) {
      return cudaMemcpyAsync(device_steps_.as<int32_t>() + offset, host_steps_ + offset,
                             count * sizeof(int32_t), cudaMemcpyHostToDevice, stream_);
    };
    cudaError_t error = copy(steps_.tokens, num_tokens);
    if (error == cudaSuccess) error = copy(steps_.query_start, num_seqs + 1);
    if (error == cudaSuccess) error = copy(steps_.context_len, num_seqs);
    if (error == cudaSuccess) error = copy(steps_.logit_rows, num_logit_rows);
    if (error == cudaSuccess) {
      error = copy(steps_.block_tables, int64_t{num_seqs} * steps_.block_table_stride);
    }
    return CudaCall(error, "copying the step description to the GPU");
  }

  // The attention bound of a decode step whose longest context is max_context_len: the next
  // power of two from 512 on, capped at the model's context. A graph captured with it stays valid
  // while the sequences grow up to it, and the attention kernels launch no CTAs for the rest of
  // the model's context (with the whole context as the bound, most split-KV CTAs of a short
  // context start only to find no keys).
  int32_t DecodeContextBound(int32_t max_context_len) const {
    int32_t bound = 512;
    while (bound < max_context_len && bound < config_.context_length) bound *= 2;
    return std::min(bound, config_.context_length);
  }

  // The decode graph for `num_seqs` single-token sequences with contexts up to `context_bound`,
  // captured on first use.
  absl::StatusOr<cudaGraphExec_t> DecodeGraph(int num_seqs, int32_t context_bound) {
    const auto shape = std::make_pair(num_seqs, context_bound);
    if (auto it = graphs_.find(shape); it != graphs_.end()) return it->second;
    const GpuStepInputs inputs = DeviceInputs(num_seqs, num_seqs, num_seqs, 1, context_bound);
    RETURN_IF_ERROR(CudaCall(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
                             "starting a CUDA graph capture"));
    const absl::Status forward = model_->Forward(inputs, kv_view_, device_logits_.as<float>(),
                                                 nullptr);
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    if (!forward.ok() || end != cudaSuccess) {
      if (graph != nullptr) cudaGraphDestroy(graph);
      cudaGetLastError();
      return forward.ok() ? CudaCall(end, "capturing the decode step") : forward;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t instantiate = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    RETURN_IF_ERROR(CudaCall(instantiate, "instantiating the decode graph"));
    graphs_[shape] = exec;
    return exec;
  }

  absl::Status CheckStep(absl::Span<const SequenceStep> batch) const {
    RETURN_IF_ERROR(ValidateStep(batch, config_.vocab_size, *allocator_));
    if (batch.empty()) return absl::InvalidArgumentError("a step needs at least one sequence");
    int64_t tokens = 0;
    for (const SequenceStep& step : batch) tokens += step.tokens.size();
    if (static_cast<int>(batch.size()) > steps_.max_sequences || tokens > steps_.max_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a step of ", batch.size(), " sequences and ", tokens, " tokens exceeds the engine's ",
          steps_.max_sequences, " sequences and ", steps_.max_tokens, " tokens per step"));
    }
    return absl::OkStatus();
  }

  // `picks`: empty (the logits come back), or one per entry (not with all_logits): `picked` then
  // gets the picked ids and no logits come back.
  absl::Status Run(absl::Span<const SequenceStep> batch, bool all_logits, absl::Span<const TokenPick> picks,
                   std::vector<int32_t>* picked, std::vector<float>* logits) {
    const int num_seqs = static_cast<int>(batch.size());
    int64_t num_tokens = 0;
    int32_t max_query_len = 0, max_context_len = 0;
    int32_t* tokens = host_steps_ + steps_.tokens;
    int32_t* query_start = host_steps_ + steps_.query_start;
    int32_t* context_len = host_steps_ + steps_.context_len;
    int32_t* logit_rows = host_steps_ + steps_.logit_rows;
    int32_t* block_tables = host_steps_ + steps_.block_tables;
    int64_t num_logit_rows = 0;
    starts_.clear();
    for (int s = 0; s < num_seqs; ++s) {
      const SequenceStep& step = batch[s];
      const int32_t count = static_cast<int32_t>(step.tokens.size());
      // Validated: the reservation holds these blocks.
      ASSIGN_OR_RETURN(const int32_t start, allocator_->Append(step.sequence_id, count));
      starts_.push_back(start);
      query_start[s] = static_cast<int32_t>(num_tokens);
      context_len[s] = start + count;
      std::copy(step.tokens.begin(), step.tokens.end(), tokens + num_tokens);
      const std::vector<int32_t>& table = allocator_->BlockTable(step.sequence_id);
      std::copy(table.begin(), table.end(), block_tables + int64_t{s} * steps_.block_table_stride);
      if (all_logits) {
        for (int32_t i = 0; i < count; ++i) logit_rows[num_logit_rows++] = num_tokens + i;
      } else {
        logit_rows[num_logit_rows++] = static_cast<int32_t>(num_tokens + count - 1);
      }
      num_tokens += count;
      max_query_len = std::max(max_query_len, count);
      max_context_len = std::max(max_context_len, start + count);
    }
    query_start[num_seqs] = static_cast<int32_t>(num_tokens);
    const absl::Status status =
        Execute(num_seqs, num_tokens, num_logit_rows, max_query_len, max_context_len, all_logits,
                picks, picked, logits);
    if (!status.ok()) {
      // The step's keys and values may be half written: forget its tokens, so that a retry
      // appends them at the same positions again.
      for (int s = 0; s < num_seqs; ++s) allocator_->Truncate(batch[s].sequence_id, starts_[s]);
    }
    return status;
  }

  // Uploads the step written into host_steps_, runs it and copies back the logits, or the
  // tokens picked from them when there are `picks`.
  absl::Status Execute(int num_seqs, int64_t num_tokens, int64_t num_logit_rows,
                       int32_t max_query_len, int32_t max_context_len, bool all_logits,
                       absl::Span<const TokenPick> picks, std::vector<int32_t>* tokens,
                       std::vector<float>* logits) {
    RETURN_IF_ERROR(UploadStep(num_seqs, num_tokens, num_logit_rows));

    const bool timed = timer_ != nullptr && phases_ != nullptr &&
                       ++step_count_ % options_.timing_interval == 0;
    const bool decode = max_query_len == 1 && !all_logits;
    const int32_t context_bound = decode ? DecodeContextBound(max_context_len) : max_context_len;
    absl::Status forward;
    // A decode shape's first step runs eagerly: kernels set their launch attributes on first
    // use, which a graph capture must not be the first to do.
    const bool replay = decode && graphs_enabled_ && options_.cuda_graphs && !timed &&
                        !eager_decode_shapes_.insert({num_seqs, context_bound}).second;
    if (replay) {
      absl::StatusOr<cudaGraphExec_t> graph = DecodeGraph(num_seqs, context_bound);
      if (graph.ok()) {
        forward = CudaCall(cudaGraphLaunch(*graph, stream_), "replaying the decode graph");
      } else {
        std::fprintf(stderr, "[apex4] CUDA graphs off, decode steps run eagerly: %s\n",
                     std::string(graph.status().message()).c_str());
        graphs_enabled_ = false;
      }
    }
    if (!replay || !graphs_enabled_) {
      // Decode steps run with the graphs' bounds either way, so that the same kernels with the
      // same launch shapes compute them, replayed or not.
      const GpuStepInputs inputs =
          DeviceInputs(num_seqs, num_tokens, num_logit_rows, max_query_len, context_bound);
      forward = model_->Forward(inputs, kv_view_, device_logits_.as<float>(),
                                timed ? phases_.get() : nullptr);
    }
    RETURN_IF_ERROR(forward);
    const int64_t logit_floats = num_logit_rows * config_.vocab_size;
    if (!picks.empty()) {  // one logit row per entry (not all_logits)
      for (int s = 0; s < num_seqs; ++s) {
        host_sampling_[s] = {picks[s].temperature, picks[s].top_k, picks[s].top_p, picks[s].uniform};
      }
      RETURN_IF_ERROR(CudaCall(cudaMemcpyAsync(device_sampling_.get(), host_sampling_,
                                               num_seqs * sizeof(cuda::SamplingRow), cudaMemcpyHostToDevice,
                                               stream_),
                               "copying sampling settings to the GPU"));
      RETURN_IF_ERROR(FromCudaStatus(cuda::SampleRows(device_logits_.as<float>(), config_.vocab_size,
                                                      num_logit_rows, config_.vocab_size,
                                                      device_sampling_.as<cuda::SamplingRow>(),
                                                      device_picks_.as<int32_t>(), stream_),
                                     "picking tokens"));
      RETURN_IF_ERROR(CudaCall(cudaMemcpyAsync(host_picks_, device_picks_.get(), num_seqs * sizeof(int32_t),
                                               cudaMemcpyDeviceToHost, stream_),
                               "copying picked tokens from the GPU"));
    } else {
      RETURN_IF_ERROR(CudaCall(cudaMemcpyAsync(host_logits_, device_logits_.get(),
                                               logit_floats * sizeof(float),
                                               cudaMemcpyDeviceToHost, stream_),
                               "copying logits from the GPU"));
    }
    RETURN_IF_ERROR(CudaCall(cudaStreamSynchronize(stream_), "running the forward step"));
    if (timed) RETURN_IF_ERROR(phases_->Report(timer_));
    if (picks.empty()) {
      logits->assign(host_logits_, host_logits_ + logit_floats);
    } else {
      tokens->assign(host_picks_, host_picks_ + num_seqs);
    }
    return absl::OkStatus();
  }

  EngineInfo info_;
  Tokenizer tokenizer_;
  CudaEngineOptions options_;
  LlamaConfig config_;
  GpuWeightFormat format_ = GpuWeightFormat::kBf16;
  std::optional<Apex4Checkpoint> checkpoint_;  // to rebuild layers for a plan
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<cuda::DenseGemm> dense_;
  GpuLinearContext context_;
  DeviceMemory w4a4_workspace_;
  std::unique_ptr<GpuLlamaModel> model_;
  DeviceMemory kv_memory_;
  GpuKvCacheView kv_view_;
  int64_t kv_block_bytes_ = 0;
  std::unique_ptr<KvBlockAllocator> allocator_;
  StepArrays steps_;
  DeviceMemory device_steps_;
  int32_t* host_steps_ = nullptr;  // pinned
  DeviceMemory device_logits_;
  float* host_logits_ = nullptr;   // pinned
  DeviceMemory device_picks_;      // int32 [max_logit_rows]: SampleRows of the logit rows
  int32_t* host_picks_ = nullptr;  // pinned
  DeviceMemory device_sampling_;   // cuda::SamplingRow [max_sequences]
  cuda::SamplingRow* host_sampling_ = nullptr;  // pinned
  // Decode graphs, and the shapes decoded once eagerly, by (sequence count, context bound).
  std::map<std::pair<int, int32_t>, cudaGraphExec_t> graphs_;
  std::set<std::pair<int, int32_t>> eager_decode_shapes_;
  std::vector<int32_t> starts_;            // this step's first position per sequence
  bool graphs_enabled_ = true;
  std::unique_ptr<GpuPhaseTimer> phases_;
  KernelTimer* timer_ = nullptr;
  int64_t step_count_ = 0;
};

absl::Status CheckDevice(int device) {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess || count == 0) {
    cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device is usable (cudaGetDeviceCount: ", cudaGetErrorString(error),
        ", ", count, " devices); run with --backend=cpu"));
  }
  if (device < 0 || device >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("CUDA device ", device, " does not exist (", count, " present)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<GpuWeightFormat> ChooseFormat(const CudaEngineOptions& options,
                                             GpuWeightFormat natural) {
  if (options.weight_format.empty()) return natural;
  return ParseGpuWeightFormat(options.weight_format);
}

// The baselines' path (a GGUF file or a Hugging Face directory): full-precision weights from
// `source`, converted to `format`.
absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadFromSource(const CudaEngineOptions& options,
                                                                EngineInfo info, Tokenizer tokenizer,
                                                                const LlamaConfig& config,
                                                                const LlamaWeightSource& source,
                                                                GpuWeightFormat format) {
  info.quantization = GpuWeightFormatName(format);
  auto engine = std::make_unique<CudaEngine>(std::move(info), std::move(tokenizer), options);
  RETURN_IF_ERROR(engine->InitDevice(format));
  ASSIGN_OR_RETURN(GpuLlamaWeights weights, BuildFromSource(config, source, format));
  RETURN_IF_ERROR(engine->Assemble(config, std::move(weights), std::nullopt, format));
  return std::unique_ptr<InferenceEngine>(std::move(engine));
}

}  // namespace

absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadCudaEngine(const CudaEngineOptions& options) {
  if (options.max_batch_size < 1 || options.max_step_tokens < options.max_batch_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_batch_size (", options.max_batch_size, ") must be at least 1 and max_step_tokens (",
        options.max_step_tokens, ") at least max_batch_size"));
  }
  if (options.kv_cache_mb < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_cache_mb must be 0 (auto) or positive, got ", options.kv_cache_mb));
  }
  RETURN_IF_ERROR(CheckDevice(options.device));
  const std::string& path = options.model_path;
  EngineInfo info;
  if (absl::StartsWith(path, kSyntheticModelPrefix)) {
    const std::string shape = path.substr(std::string(kSyntheticModelPrefix).size());
    if (options.tokenizer_path.empty()) {
      return absl::InvalidArgumentError(
          "a synthetic model needs a tokenizer: give a GGUF file as the tokenizer path");
    }
    ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(options.tokenizer_path));
    ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(*gguf));
    ASSIGN_OR_RETURN(const LlamaConfig config, SyntheticConfig(shape, tokenizer.vocab_size()));
    ASSIGN_OR_RETURN(const GpuWeightFormat format, ChooseFormat(options, GpuWeightFormat::kW4A4));
    info.name = absl::StrCat(shape, " (synthetic weights)");
    info.format = "synthetic";
    info.quantization = format == GpuWeightFormat::kW4A4 ? "w4a4-per_channel"
                                                         : GpuWeightFormatName(format);
    auto engine = std::make_unique<CudaEngine>(std::move(info), std::move(tokenizer), options);
    RETURN_IF_ERROR(engine->InitDevice(format));
    ASSIGN_OR_RETURN(GpuLlamaWeights weights,
                     BuildSynthetic(config, format, engine->w4a4_backend()));
    RETURN_IF_ERROR(engine->Assemble(config, std::move(weights), std::nullopt, format));
    return std::unique_ptr<InferenceEngine>(std::move(engine));
  }
  if (Apex4Checkpoint::IsCheckpointDirectory(path)) {
    ASSIGN_OR_RETURN(Apex4Checkpoint checkpoint, Apex4Checkpoint::Open(path));
    ASSIGN_OR_RETURN(const GpuWeightFormat format, ChooseFormat(options, GpuWeightFormat::kW4A4));
    if (format != GpuWeightFormat::kW4A4) {
      return absl::InvalidArgumentError(absl::StrCat(
          "an apex4 checkpoint holds W4A4 weights; serve its source GGUF for ",
          GpuWeightFormatName(format)));
    }
    const Apex4Metadata& metadata = checkpoint.metadata();
    std::filesystem::path directory(path);
    if (!directory.has_filename()) directory = directory.parent_path();
    const std::string source = (directory.parent_path() / metadata.source.file).string();
    RETURN_IF_ERROR(VerifyApex4Source(metadata, source));
    ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(source));
    ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(*gguf));
    ASSIGN_OR_RETURN(const LlamaConfig config, LlamaConfigFromApex4(metadata));
    info.name = directory.filename().string();
    info.format = "apex4";
    info.quantization = absl::StrCat("w4a4-", metadata.default_granularity);
    auto engine = std::make_unique<CudaEngine>(std::move(info), std::move(tokenizer), options);
    RETURN_IF_ERROR(engine->InitDevice(format));
    ASSIGN_OR_RETURN(GpuLlamaWeights weights,
                     BuildFromApex4(checkpoint, config, engine->w4a4_backend()));
    RETURN_IF_ERROR(engine->Assemble(config, std::move(weights), std::move(checkpoint), format));
    return std::unique_ptr<InferenceEngine>(std::move(engine));
  }
  if (IsHfModelDirectory(path)) {  // config.json, safetensors weights, tokenizer.json
    const std::filesystem::path directory(path);
    ASSIGN_OR_RETURN(const LlamaConfig config, LlamaConfigFromHfDirectory(path));
    ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromJson((directory / "tokenizer.json").string()));
    ASSIGN_OR_RETURN(const HfWeightFiles files, HfWeightFiles::Open(path));
    ASSIGN_OR_RETURN(const GpuWeightFormat format, ChooseFormat(options, GpuWeightFormat::kBf16));
    info.name = (directory.has_filename() ? directory : directory.parent_path()).filename().string();
    info.format = "safetensors";
    return LoadFromSource(options, std::move(info), std::move(tokenizer), config, files.Source(config),
                          format);
  }
  ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(path));
  ASSIGN_OR_RETURN(const LlamaConfig config, LlamaConfigFromGguf(*gguf));
  ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(*gguf));
  ASSIGN_OR_RETURN(const GpuWeightFormat format, ChooseFormat(options, GpuWeightFormat::kBf16));
  const std::string file_name = std::filesystem::path(path).filename().string();
  info.name = file_name.substr(0, file_name.find('.'));
  info.format = "gguf";
  return LoadFromSource(options, std::move(info), std::move(tokenizer), config, GgufWeightSource(*gguf),
                        format);
}

}  // namespace apex4
