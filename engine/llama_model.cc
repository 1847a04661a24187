#include "engine/llama_model.h"

#include <chrono>
#include <cstring>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/llama_ops.h"
#include "engine/status_macros.h"
#include "kernels/cpu/hadamard_transform.h"

namespace apex4 {

// Sums the time of each kernel kind over one step and reports each kind once, so a step of
// 30 layers costs the metrics six observations, not two hundred.
class LlamaModel::StepTimer {
 public:
  explicit StepTimer(KernelTimer* timer) : timer_(timer) {}
  ~StepTimer() {
    if (timer_ == nullptr) return;
    for (KernelKind kind : kAllKernelKinds) {
      const double seconds = seconds_[static_cast<int>(kind)];
      if (seconds > 0) timer_->Record(kind, seconds);
    }
  }

  template <typename Fn>
  void Time(KernelKind kind, Fn&& fn) {
    if (timer_ == nullptr) {
      fn();
      return;
    }
    const auto start = std::chrono::steady_clock::now();
    fn();
    seconds_[static_cast<int>(kind)] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  void Linear(const LinearLayer& layer, const float* x, int64_t m, float* y) {
    Time(layer.kernel_kind(), [&] { layer.Forward(x, m, y); });
  }

 private:
  KernelTimer* timer_;
  double seconds_[std::size(kAllKernelKinds)] = {};
};

LlamaModel::LlamaModel(const LlamaConfig& config, LlamaWeights weights, ThreadPool* pool)
    : config_(config), weights_(std::move(weights)), pool_(pool) {}

absl::Status LlamaModel::Forward(absl::Span<const ForwardEntry> batch, PagedKvCache* cache,
                                 KernelTimer* timer, std::vector<float>* logits) {
  RETURN_IF_ERROR(ValidateStep(batch, config_.vocab_size, cache->allocator()));
  StepTimer step_timer(timer);
  const int64_t hidden = config_.hidden_size;
  const int64_t q_dim = int64_t{config_.num_heads} * config_.head_dim;
  const int64_t kv_dim = int64_t{config_.num_kv_heads} * config_.head_dim;

  num_tokens_ = 0;
  for (const ForwardEntry& entry : batch) num_tokens_ += entry.tokens.size();
  Scratch& s = scratch_;
  s.hidden.resize(num_tokens_ * hidden);
  s.normed.resize(num_tokens_ * hidden);
  s.query.resize(num_tokens_ * q_dim);
  s.key.resize(num_tokens_ * kv_dim);
  s.value.resize(num_tokens_ * kv_dim);
  s.attention.resize(num_tokens_ * q_dim);
  s.projected.resize(num_tokens_ * hidden);
  s.gate.resize(num_tokens_ * config_.intermediate_size);
  s.up.resize(num_tokens_ * config_.intermediate_size);
  s.tokens.clear();
  s.logit_rows.clear();

  // Embed, and note where each token goes in the cache and which rows need logits.
  const float* embedding = weights_.token_embedding->data();
  for (const ForwardEntry& entry : batch) {
    const int32_t count = static_cast<int32_t>(entry.tokens.size());
    ASSIGN_OR_RETURN(const int32_t start, cache->Append(entry.sequence_id, count));
    const std::vector<int32_t>* table = &cache->BlockTable(entry.sequence_id);
    for (int32_t i = 0; i < count; ++i) {
      const int64_t row = static_cast<int64_t>(s.tokens.size());
      std::memcpy(&s.hidden[row * hidden], embedding + int64_t{entry.tokens[i]} * hidden,
                  hidden * sizeof(float));
      if (entry.all_logits || i == count - 1) s.logit_rows.push_back(row);
      s.tokens.push_back({table, start + i});
    }
  }
  for (int l = 0; l < config_.num_layers; ++l) RunLayer(l, cache, &step_timer);
  ComputeLogits(&step_timer, logits);
  return absl::OkStatus();
}

void LlamaModel::RunLayer(int layer_index, PagedKvCache* cache, StepTimer* timer) {
  const LlamaLayerWeights& layer = weights_.layers[layer_index];
  Scratch& s = scratch_;
  const int64_t n = num_tokens_;
  const int64_t hidden = config_.hidden_size;
  const int head_dim = config_.head_dim;
  const int64_t q_dim = int64_t{config_.num_heads} * head_dim;
  const int64_t kv_dim = int64_t{config_.num_kv_heads} * head_dim;

  timer->Time(KernelKind::kNorm, [&] {
    RmsNorm(s.hidden.data(), layer.attention_norm.data(), n, hidden, config_.rms_norm_eps,
            s.normed.data());
  });
  timer->Linear(*layer.query, s.normed.data(), n, s.query.data());
  timer->Linear(*layer.key, s.normed.data(), n, s.key.data());
  timer->Linear(*layer.value, s.normed.data(), n, s.value.data());

  timer->Time(KernelKind::kAttention, [&] {
    for (int64_t t = 0; t < n; ++t) {
      const AttentionToken& token = s.tokens[t];
      ApplyRope(&s.query[t * q_dim], config_.num_heads, head_dim, token.position,
                config_.rope_theta);
      ApplyRope(&s.key[t * kv_dim], config_.num_kv_heads, head_dim, token.position,
                config_.rope_theta);
    }
    if (config_.kv_cache.bits == 4) RoundForInt4KvCache(n);
    for (int64_t t = 0; t < n; ++t) {
      const AttentionToken& token = s.tokens[t];
      const int32_t block = (*token.block_table)[token.position / PagedKvCache::kBlockTokens];
      const int64_t slot_offset = (token.position % PagedKvCache::kBlockTokens) * head_dim;
      for (int h = 0; h < config_.num_kv_heads; ++h) {
        std::memcpy(cache->keys(block, layer_index, h) + slot_offset,
                    &s.key[t * kv_dim + h * head_dim], head_dim * sizeof(float));
        std::memcpy(cache->values(block, layer_index, h) + slot_offset,
                    &s.value[t * kv_dim + h * head_dim], head_dim * sizeof(float));
      }
    }
    PagedAttention(s.query.data(), s.tokens, *cache, layer_index, config_.num_heads,
                   s.attention.data(), pool_);
  });
  timer->Linear(*layer.attention_output, s.attention.data(), n, s.projected.data());
  AddInPlace(s.hidden.data(), s.projected.data(), n * hidden);

  timer->Time(KernelKind::kNorm, [&] {
    RmsNorm(s.hidden.data(), layer.ffn_norm.data(), n, hidden, config_.rms_norm_eps,
            s.normed.data());
  });
  timer->Linear(*layer.gate, s.normed.data(), n, s.gate.data());
  timer->Linear(*layer.up, s.normed.data(), n, s.up.data());
  SiluMul(s.gate.data(), s.up.data(), n * config_.intermediate_size);
  timer->Linear(*layer.down, s.gate.data(), n, s.projected.data());
  AddInPlace(s.hidden.data(), s.projected.data(), n * hidden);
}

void LlamaModel::RoundForInt4KvCache(int64_t n) {
  Scratch& s = scratch_;
  const KvCacheQuantization& kv = config_.kv_cache;
  const int head_dim = config_.head_dim;
  // The config is validated (LlamaConfig::Validate: clip ratios in (0, 1], head_dim even, and a
  // power of two of at least 8 with key_hadamard), so none of these can fail.
  if (kv.key_hadamard) {
    // Every head of every token, queries too: q·k is unchanged, the keys' outliers are spread.
    HadamardTransform(s.query.data(), n, int64_t{config_.num_heads} * head_dim, head_dim)
        .IgnoreError();
    HadamardTransform(s.key.data(), n, int64_t{config_.num_kv_heads} * head_dim, head_dim)
        .IgnoreError();
  }
  const int64_t rows = n * config_.num_kv_heads;  // one per (token, KV head)
  QuantizeDequantizeInt4Rows(s.key.data(), rows, head_dim, kv.key_clip_ratio).IgnoreError();
  QuantizeDequantizeInt4Rows(s.value.data(), rows, head_dim, kv.value_clip_ratio).IgnoreError();
}

void LlamaModel::ComputeLogits(StepTimer* timer, std::vector<float>* logits) {
  Scratch& s = scratch_;
  const int64_t hidden = config_.hidden_size;
  const int64_t rows = static_cast<int64_t>(s.logit_rows.size());
  // Gather the wanted rows first: the LM head is the largest matrix, so it sees only them.
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(&s.projected[r * hidden], &s.hidden[s.logit_rows[r] * hidden],
                 hidden * sizeof(float));
  }
  timer->Time(KernelKind::kNorm, [&] {
    RmsNorm(s.projected.data(), weights_.output_norm.data(), rows, hidden,
            config_.rms_norm_eps, s.normed.data());
  });
  logits->resize(rows * config_.vocab_size);
  timer->Time(KernelKind::kLmHead,
              [&] { weights_.lm_head->Forward(s.normed.data(), rows, logits->data()); });
}

}  // namespace apex4
