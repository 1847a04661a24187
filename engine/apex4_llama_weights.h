// Builds the LLaMA model's weights from a verified apex4 checkpoint: W4A4Linear layers for the
// seven projections of every block (one stored granularity each, chosen by a GranularityPlan),
// FP32 for the token embedding, the norms and the LM head (tools/quantizer/FORMAT.md).
#ifndef APEX4_ENGINE_APEX4_LLAMA_WEIGHTS_H_
#define APEX4_ENGINE_APEX4_LLAMA_WEIGHTS_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/apex4_checkpoint.h"
#include "engine/llama_config.h"
#include "engine/llama_weights.h"
#include "engine/planner/planner.h"
#include "engine/w4a4_linear.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

// Which stored variant each W4A4 layer runs. A default plan runs every layer at the
// granularity the quantizer configured for it (all group-128 for a "g128" checkpoint, the
// quantizer's own split for "mixed"). `all` overrides that for every layer (the eval CLI's
// --granularity); `per_layer` names single layers (the node's ρ planner, via FromExecutionPlan).
// Choosing a variant the checkpoint does not store is an error, naming the layer.
struct GranularityPlan {
  std::optional<Granularity> all;
  std::map<std::string, Granularity> per_layer;  // "blk.3.ffn_down" -> granularity

  Granularity Choose(const Apex4Linear& layer) const;

  // INVALID_ARGUMENT for a decision whose granularity is neither "per_channel" nor "g128".
  static absl::StatusOr<GranularityPlan> FromExecutionPlan(const ExecutionPlan& plan);
};

// A layer's Atom-style INT8 outlier channels as W4A4Linear takes them (empty when it has none);
// the CPU and CUDA engines both load them this way.
absl::StatusOr<W4A4OutlierChannels> ReadOutlierChannels(const Apex4Checkpoint& checkpoint,
                                                        const Apex4Linear& layer);

// The engine's config from the checkpoint's `model` section (the LM head is never tied).
absl::StatusOr<LlamaConfig> LlamaConfigFromApex4(const Apex4Metadata& metadata);

// The checkpoint's layers as the node's planner sees them.
std::vector<LayerToPlan> Apex4PlannableLayers(const Apex4Metadata& metadata);

// Every weight of the model; the projections are W4A4Linear layers on `pool` (may be null;
// not owned). Refuses a plan that picks a variant a layer lacks.
absl::StatusOr<LlamaWeights> LoadLlamaWeightsFromApex4(const Apex4Checkpoint& checkpoint,
                                                       const LlamaConfig& config,
                                                       const GranularityPlan& plan,
                                                       ThreadPool* pool);

// Replaces the projections of `weights` whose planned granularity differs from what they run
// now. On error `weights` is unchanged.
absl::Status ApplyGranularityPlan(const Apex4Checkpoint& checkpoint, const GranularityPlan& plan,
                                  ThreadPool* pool, LlamaWeights* weights);

}  // namespace apex4

#endif  // APEX4_ENGINE_APEX4_LLAMA_WEIGHTS_H_
