#include "engine/apex4_llama_weights.h"

#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/fp32_linear_layer.h"
#include "engine/status_macros.h"
#include "engine/w4a4_linear.h"

namespace apex4 {
namespace {

// The slot of `weights` that a checkpoint layer ("blk.3.ffn_down") fills.
absl::StatusOr<std::unique_ptr<LinearLayer>*> ProjectionSlot(const std::string& name,
                                                             LlamaWeights* weights) {
  const std::vector<std::string> parts = absl::StrSplit(name, '.');
  int block = -1;
  if (parts.size() != 3 || parts[0] != "blk" || !absl::SimpleAtoi(parts[1], &block) ||
      block < 0 || block >= static_cast<int>(weights->layers.size())) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", name, "' is not blk.<i>.<proj>"));
  }
  LlamaLayerWeights& layer = weights->layers[block];
  const std::string& kind = parts[2];
  if (kind == "attn_q") return &layer.query;
  if (kind == "attn_k") return &layer.key;
  if (kind == "attn_v") return &layer.value;
  if (kind == "attn_output") return &layer.attention_output;
  if (kind == "ffn_gate") return &layer.gate;
  if (kind == "ffn_up") return &layer.up;
  if (kind == "ffn_down") return &layer.down;
  return absl::InvalidArgumentError(absl::StrCat("layer '", name, "': unknown projection"));
}

absl::StatusOr<std::unique_ptr<LinearLayer>> BuildW4A4Layer(const Apex4Checkpoint& checkpoint,
                                                            const Apex4Linear& layer,
                                                            Granularity granularity,
                                                            ThreadPool* pool) {
  auto variant = layer.variants.find(granularity);
  if (variant == layer.variants.end()) {
    return absl::InvalidArgumentError(absl::StrCat("plan runs ", layer.name, " at ",
                                                   GranularityName(granularity),
                                                   ", which the checkpoint does not store"));
  }
  const int64_t groups = layer.k_padded / GroupSizeFor(granularity, layer.k_padded);
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> packed,
                   checkpoint.U8(variant->second.qweight,
                                 {layer.n, PackedRowBytes(layer.k_padded)}));
  ASSIGN_OR_RETURN(absl::Span<const float> scales,
                   checkpoint.F32(variant->second.scales, {layer.n, groups}));
  W4A4LinearConfig config;
  config.in_features = layer.k;
  config.out_features = layer.n;
  config.packed_k = layer.k_padded;
  config.weight_granularity = granularity;
  config.activation_granularity = granularity;
  config.activation_clip_ratio = variant->second.act_clip_ratio;
  config.online_hadamard_block = layer.online_hadamard_block;
  ASSIGN_OR_RETURN(W4A4OutlierChannels outliers, ReadOutlierChannels(checkpoint, layer));
  auto linear = W4A4Linear::Create(config, std::vector<uint8_t>(packed.begin(), packed.end()),
                                   std::vector<float>(scales.begin(), scales.end()), pool,
                                   std::move(outliers));
  if (!linear.ok()) {
    return absl::Status(linear.status().code(),
                        absl::StrCat(layer.name, ": ", linear.status().message()));
  }
  return std::unique_ptr<LinearLayer>(*std::move(linear));
}

absl::StatusOr<std::vector<float>> CopyF32(const Apex4Checkpoint& checkpoint,
                                           const std::string& name,
                                           const std::vector<int64_t>& shape) {
  ASSIGN_OR_RETURN(absl::Span<const float> values, checkpoint.F32(name, shape));
  return std::vector<float>(values.begin(), values.end());
}

}  // namespace

absl::StatusOr<W4A4OutlierChannels> ReadOutlierChannels(const Apex4Checkpoint& checkpoint,
                                                        const Apex4Linear& layer) {
  W4A4OutlierChannels outliers;
  if (!layer.outliers.has_value()) return outliers;
  const int64_t count = checkpoint.tensors().at(layer.outliers->channels).shape[0];
  ASSIGN_OR_RETURN(absl::Span<const int32_t> channels,
                   checkpoint.I32(layer.outliers->channels, {count}));
  ASSIGN_OR_RETURN(absl::Span<const int8_t> weights,
                   checkpoint.I8(layer.outliers->qweight, {layer.n, count}));
  ASSIGN_OR_RETURN(absl::Span<const float> scales,
                   checkpoint.F32(layer.outliers->scales, {layer.n, 1}));
  outliers.channels.assign(channels.begin(), channels.end());
  outliers.weights.assign(weights.begin(), weights.end());
  outliers.scales.assign(scales.begin(), scales.end());
  return outliers;
}

Granularity GranularityPlan::Choose(const Apex4Linear& layer) const {
  if (auto it = per_layer.find(layer.name); it != per_layer.end()) return it->second;
  return all.value_or(layer.configured);
}

absl::StatusOr<GranularityPlan> GranularityPlan::FromExecutionPlan(const ExecutionPlan& plan) {
  GranularityPlan result;
  for (const LayerPlanDecision& decision : plan.layers) {
    if (decision.granularity == kPerChannel) {
      result.per_layer[decision.name] = Granularity::kPerChannel;
    } else if (decision.granularity == kGroup128) {
      result.per_layer[decision.name] = Granularity::kGroup128;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("plan for ", decision.name,
                                                     ": unknown granularity '",
                                                     decision.granularity, "'"));
    }
  }
  return result;
}

absl::StatusOr<LlamaConfig> LlamaConfigFromApex4(const Apex4Metadata& metadata) {
  const Apex4ModelConfig& model = metadata.model;
  LlamaConfig config;
  config.num_layers = static_cast<int32_t>(model.num_layers);
  config.hidden_size = static_cast<int32_t>(model.hidden_size);
  config.num_heads = static_cast<int32_t>(model.num_heads);
  config.num_kv_heads = static_cast<int32_t>(model.num_kv_heads);
  config.head_dim = static_cast<int32_t>(model.head_dim);
  config.intermediate_size = static_cast<int32_t>(model.intermediate_size);
  config.vocab_size = static_cast<int32_t>(model.vocab_size);
  config.context_length = static_cast<int32_t>(model.context_length);
  config.rope_theta = static_cast<float>(model.rope_theta);
  config.rms_norm_eps = static_cast<float>(model.rms_norm_eps);
  config.tied_embeddings = false;
  const Apex4KvCache& kv = metadata.kv_cache;
  if (kv.bits == 4) {
    if (kv.key_online_hadamard_block != 0 && kv.key_online_hadamard_block != model.head_dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          kApex4MetadataFile, ": quantization.kv_cache.key_online_hadamard.block is ",
          kv.key_online_hadamard_block, "; keys are rotated per head, so it must equal head_dim ",
          model.head_dim));
    }
    config.kv_cache.bits = 4;
    config.kv_cache.key_clip_ratio = kv.key_clip_ratio;
    config.kv_cache.value_clip_ratio = kv.value_clip_ratio;
    config.kv_cache.key_hadamard = kv.key_online_hadamard_block != 0;
  } else {
    config.kv_cache.key_hadamard = metadata.rotated;  // for a 4-bit cache asked for at run time
  }
  RETURN_IF_ERROR(config.Validate());
  return config;
}

std::vector<LayerToPlan> Apex4PlannableLayers(const Apex4Metadata& metadata) {
  std::vector<LayerToPlan> layers;
  for (const Apex4Linear& linear : metadata.layers) {
    LayerToPlan layer;
    layer.name = linear.name;
    layer.n = linear.n;
    layer.k = linear.k_padded;
    layer.has_per_channel = linear.variants.count(Granularity::kPerChannel) > 0;
    layer.has_g128 = linear.variants.count(Granularity::kGroup128) > 0;
    if (linear.sensitivity.has_value()) {
      layer.per_channel_over_g128 = linear.sensitivity->per_channel_over_g128;
    }
    layers.push_back(std::move(layer));
  }
  return layers;
}

absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromApex4(const Apex4Checkpoint& checkpoint,
                                                       const LlamaConfig& config,
                                                       const GranularityPlan& plan,
                                                       ThreadPool* pool) {
  const int64_t hidden = config.hidden_size;
  LlamaWeights weights;
  ASSIGN_OR_RETURN(std::vector<float> embedding,
                   CopyF32(checkpoint, "token_embd.weight", {config.vocab_size, hidden}));
  weights.token_embedding = std::make_shared<const std::vector<float>>(std::move(embedding));
  weights.layers.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    const std::string block = absl::StrCat("blk.", l, ".");
    ASSIGN_OR_RETURN(weights.layers[l].attention_norm,
                     CopyF32(checkpoint, block + "attn_norm.weight", {hidden}));
    ASSIGN_OR_RETURN(weights.layers[l].ffn_norm,
                     CopyF32(checkpoint, block + "ffn_norm.weight", {hidden}));
  }
  ASSIGN_OR_RETURN(weights.output_norm, CopyF32(checkpoint, "output_norm.weight", {hidden}));
  ASSIGN_OR_RETURN(std::vector<float> lm_head,
                   CopyF32(checkpoint, "output.weight", {config.vocab_size, hidden}));
  weights.lm_head = std::make_unique<Fp32LinearLayer>(
      std::make_shared<const std::vector<float>>(std::move(lm_head)), config.vocab_size, hidden,
      pool);
  for (const Apex4Linear& layer : checkpoint.metadata().layers) {
    ASSIGN_OR_RETURN(std::unique_ptr<LinearLayer>* slot, ProjectionSlot(layer.name, &weights));
    ASSIGN_OR_RETURN(*slot, BuildW4A4Layer(checkpoint, layer, plan.Choose(layer), pool));
  }
  return weights;
}

absl::Status ApplyGranularityPlan(const Apex4Checkpoint& checkpoint, const GranularityPlan& plan,
                                  ThreadPool* pool, LlamaWeights* weights) {
  std::vector<std::pair<std::unique_ptr<LinearLayer>*, std::unique_ptr<LinearLayer>>> changes;
  for (const Apex4Linear& layer : checkpoint.metadata().layers) {
    ASSIGN_OR_RETURN(std::unique_ptr<LinearLayer>* slot, ProjectionSlot(layer.name, weights));
    const Granularity wanted = plan.Choose(layer);
    const auto* current = dynamic_cast<const W4A4Linear*>(slot->get());
    if (current != nullptr && current->config().weight_granularity == wanted) continue;
    ASSIGN_OR_RETURN(std::unique_ptr<LinearLayer> rebuilt,
                     BuildW4A4Layer(checkpoint, layer, wanted, pool));
    changes.emplace_back(slot, std::move(rebuilt));
  }
  for (auto& [slot, rebuilt] : changes) *slot = std::move(rebuilt);
  return absl::OkStatus();
}

}  // namespace apex4
