#include "engine/w4a4_linear.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/hadamard_transform.h"
#include "kernels/cpu/int4_quantize.h"
#include "kernels/cpu/w4a4_gemm.h"

namespace apex4 {
namespace {

// Below this many activations (or outlier products) a second thread costs more than it saves.
constexpr int64_t kMinActivationsToSplit = int64_t{1} << 16;

absl::Status ValidateOutliers(const W4A4LinearConfig& c, const W4A4OutlierChannels& o) {
  const size_t count = o.channels.size();
  for (size_t i = 0; i < count; ++i) {
    if (o.channels[i] < 0 || o.channels[i] >= c.in_features ||
        (i > 0 && o.channels[i] <= o.channels[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("w4a4 linear: outlier channel ", o.channels[i], " at ", i,
                       " is not ascending within in_features=", c.in_features));
    }
  }
  const size_t expected_scales = count == 0 ? 0 : c.out_features;
  if (o.weights.size() != c.out_features * count || o.scales.size() != expected_scales) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4a4 linear: ", count, " outlier channels need ", c.out_features * count, " weights and ",
        expected_scales, " scales, got ", o.weights.size(), " and ", o.scales.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const W4A4LinearConfig& c, size_t weight_bytes, size_t scales) {
  if (c.in_features <= 0 || c.out_features <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("w4a4 linear: in_features=", c.in_features,
                                                   " and out_features=", c.out_features,
                                                   " must be positive"));
  }
  if (c.packed_k < c.in_features || c.packed_k % kPackAlignK != 0) {
    return absl::InvalidArgumentError(absl::StrCat("w4a4 linear: packed_k=", c.packed_k,
                                                   " must be a multiple of ", kPackAlignK,
                                                   " and at least in_features=", c.in_features));
  }
  if (!(c.activation_clip_ratio > 0.0f && c.activation_clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4a4 linear: activation_clip_ratio=", c.activation_clip_ratio, " outside (0, 1]"));
  }
  const int block = c.online_hadamard_block;
  if (block != 0 && (block < 8 || (block & (block - 1)) != 0 || c.packed_k % block != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("w4a4 linear: online_hadamard_block=", block,
                     " must be a power of two >= 8 dividing packed_k=", c.packed_k));
  }
  const size_t expected_bytes = c.out_features * PackedRowBytes(c.packed_k);
  if (weight_bytes != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "w4a4 linear: packed weights have ", weight_bytes, " bytes, expected ", expected_bytes));
  }
  const size_t expected_scales =
      c.out_features * (c.packed_k / GroupSizeFor(c.weight_granularity, c.packed_k));
  if (scales != expected_scales) {
    return absl::InvalidArgumentError(
        absl::StrCat("w4a4 linear: ", scales, " weight scales, expected ", expected_scales));
  }
  return absl::OkStatus();
}

// Forward's buffers, per calling thread and shared by all layers: decode does not allocate.
struct ActivationScratch {
  std::vector<float> padded;
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  std::vector<int8_t> outlier_q8;     // m × outlier channels
  std::vector<float> outlier_scales;  // m
};

// Moves row's outlier channels out (zeroing them) into INT8 with one scale per token.
void ExtractOutliers(const std::vector<int32_t>& channels, float* row, int8_t* q8, float* scale) {
  float absmax = 0.0f;
  for (int32_t c : channels) absmax = std::max(absmax, std::fabs(row[c]));
  *scale = absmax / 127.0f;
  for (size_t i = 0; i < channels.size(); ++i) {
    const float v = row[channels[i]];
    row[channels[i]] = 0.0f;
    q8[i] = absmax > 0.0f
                ? static_cast<int8_t>(std::clamp(std::nearbyint(v / *scale), -127.0f, 127.0f))
                : 0;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<W4A4Linear>> W4A4Linear::Create(const W4A4LinearConfig& config,
                                                               std::vector<uint8_t> packed_weights,
                                                               std::vector<float> weight_scales,
                                                               ThreadPool* pool,
                                                               W4A4OutlierChannels outliers) {
  if (auto s = ValidateConfig(config, packed_weights.size(), weight_scales.size()); !s.ok()) {
    return s;
  }
  if (auto s = ValidateOutliers(config, outliers); !s.ok()) return s;
  return std::unique_ptr<W4A4Linear>(new W4A4Linear(
      config, std::move(packed_weights), std::move(weight_scales), pool, std::move(outliers)));
}

W4A4Linear::W4A4Linear(const W4A4LinearConfig& config, std::vector<uint8_t> packed_weights,
                       std::vector<float> weight_scales, ThreadPool* pool,
                       W4A4OutlierChannels outliers)
    : config_(config),
      packed_weights_(std::move(packed_weights)),
      weight_scales_(std::move(weight_scales)),
      weights_{packed_weights_.data(), weight_scales_.data(), config.out_features, config.packed_k,
               GroupSizeFor(config.weight_granularity, config.packed_k)},
      outliers_(std::move(outliers)),
      pool_(pool) {}

void W4A4Linear::Forward(const float* x, int64_t m, float* y) const {
  if (m <= 0) return;
  const auto start = std::chrono::steady_clock::now();
  const int64_t k = config_.packed_k;
  const int x_group = GroupSizeFor(config_.activation_granularity, k);
  thread_local ActivationScratch thread_scratch;
  // A plain reference: the lambda below may run on a pool thread, whose own thread_local
  // instance is not this one.
  ActivationScratch& scratch = thread_scratch;
  scratch.packed.resize(m * PackedRowBytes(k));
  scratch.scales.resize(m * (k / x_group));

  // Rows are independent: pad, rotate and quantize them in parallel for long prompts. The
  // kernels' statuses are ignored because Create checked every shape they check.
  const int64_t outliers = static_cast<int64_t>(outliers_.channels.size());
  const bool copy = k != config_.in_features || config_.online_hadamard_block != 0 || outliers;
  if (copy) scratch.padded.resize(m * k);
  scratch.outlier_q8.resize(m * outliers);
  scratch.outlier_scales.resize(m);
  auto prepare_rows = [&](int64_t begin, int64_t end) {
    const int64_t in = config_.in_features;
    const float* rows = x + begin * in;
    if (copy) {
      float* padded = scratch.padded.data() + begin * k;
      for (int64_t i = 0; i < end - begin; ++i) {
        std::memcpy(padded + i * k, rows + i * in, in * sizeof(float));
        std::memset(padded + i * k + in, 0, (k - in) * sizeof(float));
        if (outliers) {
          ExtractOutliers(outliers_.channels, padded + i * k,
                          scratch.outlier_q8.data() + (begin + i) * outliers,
                          &scratch.outlier_scales[begin + i]);
        }
      }
      if (config_.online_hadamard_block != 0) {
        HadamardTransform(padded, end - begin, k, config_.online_hadamard_block, config_.isa)
            .IgnoreError();
      }
      rows = padded;
    }
    QuantizeInt4(rows, end - begin, k, x_group, config_.activation_clip_ratio,
                 scratch.packed.data() + begin * PackedRowBytes(k),
                 scratch.scales.data() + begin * (k / x_group), config_.isa)
        .IgnoreError();
  };
  if (pool_ != nullptr && m * k >= kMinActivationsToSplit) {
    pool_->ParallelFor(m, 1, prepare_rows);
  } else {
    prepare_rows(0, m);
  }
  const auto quantized = std::chrono::steady_clock::now();

  const W4A4Operand activations{scratch.packed.data(), scratch.scales.data(), m, k, x_group};
  W4A4Gemm(activations, weights_, y, {config_.isa, pool_}).IgnoreError();
  if (outliers) AddOutlierProducts(scratch.outlier_q8.data(), scratch.outlier_scales.data(), m, y);
  if (timer_ != nullptr) {
    using Seconds = std::chrono::duration<double>;
    timer_->Record(KernelKind::kQuantizeActivations, Seconds(quantized - start).count());
    timer_->Record(KernelKind::kGemmW4A4,
                   Seconds(std::chrono::steady_clock::now() - quantized).count());
  }
}

void W4A4Linear::AddOutlierProducts(const int8_t* x_q8, const float* x_scales, int64_t m,
                                    float* y) const {
  const int64_t count = static_cast<int64_t>(outliers_.channels.size());
  const int64_t n = config_.out_features;
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = begin; j < end; ++j) {
        const int8_t* w = outliers_.weights.data() + j * count;
        int32_t dot = 0;
        for (int64_t c = 0; c < count; ++c) dot += int32_t{x_q8[i * count + c]} * w[c];
        y[i * n + j] += static_cast<float>(dot) * (x_scales[i] * outliers_.scales[j]);
      }
    }
  };
  if (pool_ != nullptr && m * n * count >= kMinActivationsToSplit) {
    pool_->ParallelFor(n, 16, rows);
  } else {
    rows(0, n);
  }
}

}  // namespace apex4
