#include "engine/cuda/gpu_llama_model.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/kv_block_allocator.h"
#include "engine/status_macros.h"
#include "kernels/cuda/ops/llama_elementwise.h"

namespace apex4 {
namespace {

// cos and sin of every (position, pair) as engine/llama_ops.cc ApplyRope computes them (in
// double), so that the GPU rotates by exactly the CPU's angles.
std::vector<float> RopeTable(const LlamaConfig& config) {
  const int half = config.head_dim / 2;
  std::vector<float> table(int64_t{config.context_length} * half * 2);
  for (int64_t position = 0; position < config.context_length; ++position) {
    for (int i = 0; i < half; ++i) {
      const double angle = position * std::pow(double{config.rope_theta},
                                               -2.0 * i / static_cast<double>(config.head_dim));
      table[(position * half + i) * 2] = static_cast<float>(std::cos(angle));
      table[(position * half + i) * 2 + 1] = static_cast<float>(std::sin(angle));
    }
  }
  return table;
}

static_assert(cuda::kKvBlockTokens == kKvBlockTokens, "one KV block size for engine and kernels");

cuda::AttentionShape ShapeOf(const LlamaConfig& config) {
  return {config.num_heads, config.num_kv_heads, config.head_dim};
}

}  // namespace

absl::StatusOr<std::unique_ptr<GpuLlamaModel>> GpuLlamaModel::Create(
    const LlamaConfig& config, GpuLlamaWeights weights, int64_t max_tokens, int max_sequences,
    int64_t max_logit_rows, const GpuLinearContext& context) {
  if (weights.layers.size() != static_cast<size_t>(config.num_layers) || weights.layers.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("GPU model has ", weights.layers.size(),
                                                   " layers, its config ", config.num_layers));
  }
  std::unique_ptr<GpuLlamaModel> model(new GpuLlamaModel(config, std::move(weights), context));
  model->max_tokens_ = max_tokens;
  model->max_logit_rows_ = max_logit_rows;
  const GpuLlamaLayer& first = model->weights_.layers[0];
  size_t scratch = 0;
  for (const GpuLlamaLayer& layer : model->weights_.layers) {
    for (const GpuLinear* linear :
         {layer.qkv.get(), layer.attention_output.get(), layer.gate_up.get(), layer.down.get()}) {
      scratch = std::max(scratch, linear->InputScratchBytes(max_tokens));
    }
  }
  const int64_t hidden = config.hidden_size;
  const int64_t q_dim = int64_t{config.num_heads} * config.head_dim;
  const int64_t projected_stride =
      std::max(first.attention_output->output_stride(), first.down->output_stride());
  const std::vector<float> rope = RopeTable(config);
  ASSIGN_OR_RETURN(model->rope_table_,
                   UploadToDevice(rope.data(), rope.size() * sizeof(float), "the RoPE table"));
  ASSIGN_OR_RETURN(model->hidden_,
                   DeviceMemory::Allocate(max_tokens * hidden * sizeof(float), "hidden states"));
  ASSIGN_OR_RETURN(model->input_scratch_,
                   DeviceMemory::Allocate(scratch, "quantized layer inputs"));
  ASSIGN_OR_RETURN(model->qkv_, DeviceMemory::Allocate(
                                    max_tokens * first.qkv->output_stride() * 2, "QKV outputs"));
  ASSIGN_OR_RETURN(model->query_, DeviceMemory::Allocate(max_tokens * q_dim * 2, "queries"));
  ASSIGN_OR_RETURN(model->attention_out_,
                   DeviceMemory::Allocate(max_tokens * q_dim * 2, "attention outputs"));
  ASSIGN_OR_RETURN(model->projected_, DeviceMemory::Allocate(max_tokens * projected_stride * 2,
                                                             "projection outputs"));
  ASSIGN_OR_RETURN(model->gate_up_,
                   DeviceMemory::Allocate(max_tokens * first.gate_up->output_stride() * 2,
                                          "gate/up outputs"));
  ASSIGN_OR_RETURN(model->final_rows_, DeviceMemory::Allocate(
                                           max_logit_rows * hidden * sizeof(float), "final rows"));
  ASSIGN_OR_RETURN(model->final_normed_,
                   DeviceMemory::Allocate(max_logit_rows * hidden * 2, "final normed rows"));
  // The largest scratch any step within the bounds can ask for: every decode batch size (the
  // graphs' bounds: the whole context) and prefill-shaped batches.
  size_t attention_bytes = 0;
  for (int32_t seqs = 1; seqs <= max_sequences; ++seqs) {
    for (bool decode : {true, false}) {
      cuda::AttentionBatch bounds;
      bounds.num_seqs = seqs;
      bounds.num_tokens = decode ? seqs : max_tokens;
      bounds.max_query_len = decode ? 1 : static_cast<int32_t>(max_tokens);
      bounds.max_context_len = config.context_length;
      bounds.block_table_stride =
          static_cast<int32_t>(KvBlockAllocator::BlocksFor(config.context_length));
      attention_bytes =
          std::max(attention_bytes, cuda::PagedAttentionWorkspaceBytes(bounds, ShapeOf(config)));
    }
  }
  ASSIGN_OR_RETURN(model->attention_workspace_,
                   DeviceMemory::Allocate(attention_bytes, "attention workspace"));
  return model;
}

absl::Status GpuLlamaModel::RunLinear(const GpuLinear& layer, const GpuLinearInput& input,
                                      __nv_bfloat16* y, GpuPhaseTimer* phases) {
  RETURN_IF_ERROR(layer.PrepareInput(input, input_scratch_.get(), context_));
  Mark(phases, layer.prepare_kind());
  RETURN_IF_ERROR(layer.Multiply(input, input_scratch_.get(), y, context_));
  Mark(phases, layer.multiply_kind());
  return absl::OkStatus();
}

absl::Status GpuLlamaModel::RunLayer(int index, const GpuStepInputs& inputs,
                                     const GpuKvCacheView& cache, GpuPhaseTimer* phases) {
  const GpuLlamaLayer& layer = weights_.layers[index];
  const int64_t rows = inputs.batch.num_tokens;
  const int64_t hidden = config_.hidden_size;
  const int64_t q_dim = int64_t{config_.num_heads} * config_.head_dim;
  const cudaStream_t stream = context_.stream;
  auto* hidden_rows = hidden_.as<float>();
  const std::string where = absl::StrCat("layer ", index);

  // The previous block's down projection is added into the stream by this input's preparation.
  GpuLinearInput attention_input{hidden_rows, cuda::ActivationType::kFloat32, hidden, rows,
                                 layer.attention_norm.as<float>(), config_.rms_norm_eps};
  if (index > 0) {
    attention_input.residual = projected_.as<__nv_bfloat16>();
    attention_input.residual_stride = weights_.layers[index - 1].down->output_stride();
  }
  RETURN_IF_ERROR(RunLinear(*layer.qkv, attention_input, qkv_.as<__nv_bfloat16>(), phases));
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::RopeAndWriteKv(qkv_.as<__nv_bfloat16>(), layer.qkv->output_stride(), inputs.batch,
                           ShapeOf(config_), rope_table_.as<float>(), config_.context_length,
                           query_.as<__half>(), cache.layers[index], cache.int4, stream),
      where + ": RoPE and KV write"));
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::PagedAttention(query_.as<__half>(), cache.layers[index], inputs.batch, ShapeOf(config_),
                           1.0f / std::sqrt(static_cast<float>(config_.head_dim)),
                           attention_workspace_.get(), attention_out_.as<__nv_bfloat16>(), q_dim,
                           stream),
      where + ": attention"));
  Mark(phases, KernelKind::kAttention);

  GpuLinearInput output_input{attention_out_.get(), cuda::ActivationType::kBFloat16, q_dim,
                              rows};
  RETURN_IF_ERROR(RunLinear(*layer.attention_output, output_input,
                            projected_.as<__nv_bfloat16>(), phases));

  GpuLinearInput ffn_input{hidden_rows, cuda::ActivationType::kFloat32, hidden, rows,
                           layer.ffn_norm.as<float>(), config_.rms_norm_eps};
  ffn_input.residual = projected_.as<__nv_bfloat16>();
  ffn_input.residual_stride = layer.attention_output->output_stride();
  RETURN_IF_ERROR(RunLinear(*layer.gate_up, ffn_input, gate_up_.as<__nv_bfloat16>(), phases));

  GpuLinearInput down_input{gate_up_.get(), cuda::ActivationType::kBFloat16,
                            layer.gate_up->output_stride(), rows};
  down_input.swiglu = true;
  RETURN_IF_ERROR(RunLinear(*layer.down, down_input, projected_.as<__nv_bfloat16>(), phases));
  return absl::OkStatus();
}

absl::Status GpuLlamaModel::Forward(const GpuStepInputs& inputs, const GpuKvCacheView& cache,
                                    float* logits, GpuPhaseTimer* phases) {
  const int64_t rows = inputs.batch.num_tokens;
  if (rows <= 0 || rows > max_tokens_ || inputs.num_logit_rows <= 0 ||
      inputs.num_logit_rows > max_logit_rows_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a step of ", rows, " tokens and ", inputs.num_logit_rows, " logit rows is outside the ",
        max_tokens_, " tokens and ", max_logit_rows_, " rows the GPU buffers hold"));
  }
  const cudaStream_t stream = context_.stream;
  const int64_t hidden = config_.hidden_size;
  if (phases != nullptr) phases->Begin(stream);
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::EmbedTokens(weights_.token_embedding.as<__nv_bfloat16>(), inputs.tokens, rows, hidden,
                        hidden_.as<float>(), stream),
      "token embedding"));
  Mark(phases, KernelKind::kElementwise);
  for (int l = 0; l < config_.num_layers; ++l) RETURN_IF_ERROR(RunLayer(l, inputs, cache, phases));
  // The last block's down projection: the inputs of later blocks add the one before them.
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::AddResidual(hidden_.as<float>(), projected_.as<__nv_bfloat16>(),
                        weights_.layers.back().down->output_stride(), rows, hidden, stream),
      "last residual"));
  Mark(phases, KernelKind::kElementwise);

  const int64_t out_rows = inputs.num_logit_rows;
  RETURN_IF_ERROR(FromCudaStatus(cuda::GatherRows(hidden_.as<float>(), hidden, inputs.logit_rows,
                                                  out_rows, final_rows_.as<float>(), stream),
                                 "gathering the last rows"));
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::RmsNormToBf16(final_rows_.as<float>(), weights_.output_norm.as<float>(), out_rows,
                          hidden, config_.rms_norm_eps, final_normed_.as<__nv_bfloat16>(), hidden,
                          stream),
      "final RMSNorm"));
  Mark(phases, KernelKind::kNorm);
  const DeviceMemory& head =
      weights_.lm_head.get() != nullptr ? weights_.lm_head : weights_.token_embedding;
  RETURN_IF_ERROR(FromCudaStatus(
      context_.dense->Bf16ToFloat(final_normed_.as<__nv_bfloat16>(), hidden,
                                  head.as<__nv_bfloat16>(), logits, config_.vocab_size, out_rows,
                                  config_.vocab_size, hidden),
      "LM head"));
  Mark(phases, KernelKind::kLmHead);
  return absl::OkStatus();
}

}  // namespace apex4
