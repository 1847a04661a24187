#include "engine/cuda/gpu_linear.h"

#include <cuda_fp8.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "kernels/cuda/fill/random_fill.h"
#include "kernels/cuda/ops/llama_elementwise.h"

namespace apex4 {
namespace {

constexpr int64_t kTileRows = 128;  // the W4A4 kernels' N tile (PrepackW4A4Weights)
constexpr size_t kScratchAlign = 256;

int64_t RoundUp(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// W4A4 and FP8 operands: the values, then their scales at an aligned offset.
size_t ScalesOffset(size_t value_bytes) { return RoundUp(value_bytes, kScratchAlign); }

}  // namespace

const char* GpuWeightFormatName(GpuWeightFormat format) {
  switch (format) {
    case GpuWeightFormat::kW4A4: return "w4a4";
    case GpuWeightFormat::kBf16: return "bf16";
    case GpuWeightFormat::kFp8: return "fp8";
  }
  return "unknown";
}

absl::StatusOr<GpuWeightFormat> ParseGpuWeightFormat(absl::string_view name) {
  for (GpuWeightFormat format :
       {GpuWeightFormat::kW4A4, GpuWeightFormat::kBf16, GpuWeightFormat::kFp8}) {
    if (name == GpuWeightFormatName(format)) return format;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown GPU weight format '", name, "' (w4a4, bf16 or fp8)"));
}

absl::StatusOr<W4A4HostWeights> W4A4HostWeights::Concatenate(
    std::vector<W4A4HostWeights> parts) {
  if (parts.empty()) return absl::InvalidArgumentError("no weights to concatenate");
  W4A4HostWeights result = std::move(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    W4A4HostWeights& part = parts[i];
    if (part.k != result.k || part.k_padded != result.k_padded ||
        part.granularity != result.granularity ||
        part.activation_clip_ratio != result.activation_clip_ratio ||
        part.online_hadamard_block != result.online_hadamard_block ||
        part.outliers.channels != result.outliers.channels) {
      return absl::InvalidArgumentError(absl::StrCat(
          "part ", i, " of a fused projection quantizes its input differently from part 0 "
          "(K, granularity, activation clip ratio, online Hadamard or outlier channels differ); "
          "the CUDA engine "
          "runs these projections as one GEMM on one quantized input"));
    }
    result.n += part.n;
    result.packed.insert(result.packed.end(), part.packed.begin(), part.packed.end());
    result.scales.insert(result.scales.end(), part.scales.begin(), part.scales.end());
    std::vector<int8_t>& weights = result.outliers.weights;
    weights.insert(weights.end(), part.outliers.weights.begin(), part.outliers.weights.end());
    std::vector<float>& scales = result.outliers.scales;
    scales.insert(scales.end(), part.outliers.scales.begin(), part.outliers.scales.end());
  }
  return result;
}

absl::StatusOr<std::unique_ptr<GpuLinear>> GpuLinear::FromFloat(GpuWeightFormat format,
                                                                absl::Span<const float> weights,
                                                                int64_t n, int64_t k,
                                                                const std::string& name) {
  if (static_cast<int64_t>(weights.size()) != n * k) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", weights.size(),
                                                   " weights for a ", n, " x ", k, " layer"));
  }
  std::unique_ptr<GpuLinear> layer(new GpuLinear());
  layer->name_ = name;
  layer->format_ = format;
  layer->n_ = layer->n_stored_ = n;
  layer->k_ = layer->k_stored_ = k;
  if (format == GpuWeightFormat::kBf16) {
    std::vector<__nv_bfloat16> converted(weights.size());
    cuda::ConvertWeightsToBf16(weights.data(), static_cast<int64_t>(weights.size()),
                               converted.data());
    ASSIGN_OR_RETURN(layer->weights_,
                     UploadToDevice(converted.data(), converted.size() * sizeof(__nv_bfloat16),
                                    name + " (bf16 weights)"));
  } else if (format == GpuWeightFormat::kFp8) {
    std::vector<__nv_fp8_e4m3> quantized(weights.size());
    std::vector<float> scales(n);
    cuda::QuantizeWeightsToFp8(weights.data(), n, k, quantized.data(), scales.data());
    ASSIGN_OR_RETURN(layer->weights_, UploadToDevice(quantized.data(), quantized.size(),
                                                     name + " (fp8 weights)"));
    ASSIGN_OR_RETURN(layer->weight_scales_,
                     UploadToDevice(scales.data(), scales.size() * sizeof(float),
                                    name + " (fp8 scales)"));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": W4A4 weights come from an apex4 checkpoint (tools/quantizer), not from "
              "full-precision weights"));
  }
  return layer;
}

absl::StatusOr<std::unique_ptr<GpuLinear>> GpuLinear::FromW4A4(const W4A4HostWeights& weights,
                                                               cuda::W4A4Backend backend,
                                                               const std::string& name) {
  const int group = GroupSizeFor(weights.granularity, weights.k_padded);
  const int64_t groups = weights.k_padded / group;
  if (weights.k_padded % kPackAlignK != 0 || weights.k > weights.k_padded ||
      static_cast<int64_t>(weights.packed.size()) != weights.n * weights.k_padded / 2 ||
      static_cast<int64_t>(weights.scales.size()) != weights.n * groups) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": W4A4 weights of ", weights.n, " x ", weights.k_padded, " (logical K ",
        weights.k, ") do not match their ", weights.packed.size(), " bytes and ",
        weights.scales.size(), " scales"));
  }
  if (weights.online_hadamard_block != 0 && weights.online_hadamard_block != 128) {
    return absl::UnimplementedError(absl::StrCat(
        name, ": the CUDA activation quantizer rotates 128-wide blocks only, the checkpoint "
              "asks for ", weights.online_hadamard_block));
  }
  const W4A4OutlierChannels& outliers = weights.outliers;
  const auto count = static_cast<int64_t>(outliers.channels.size());
  for (int64_t i = 0; i < count; ++i) {
    if (outliers.channels[i] < 0 || outliers.channels[i] >= weights.k ||
        (i > 0 && outliers.channels[i] <= outliers.channels[i - 1])) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": outlier channel ", outliers.channels[i], " at ", i,
                                                     " is not ascending within K = ", weights.k));
    }
  }
  if (count > cuda::kMaxW4A4Outliers ||
      static_cast<int64_t>(outliers.weights.size()) != weights.n * count ||
      static_cast<int64_t>(outliers.scales.size()) != (count > 0 ? weights.n : 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": ", count, " outlier channels (at most ", cuda::kMaxW4A4Outliers, ") need ", weights.n * count,
        " INT8 weights and ", weights.n, " scales, got ", outliers.weights.size(), " and ", outliers.scales.size()));
  }
  std::unique_ptr<GpuLinear> layer(new GpuLinear());
  layer->name_ = name;
  layer->format_ = GpuWeightFormat::kW4A4;
  layer->n_ = weights.n;
  layer->n_stored_ = RoundUp(weights.n, kTileRows);
  layer->k_ = weights.k;
  layer->k_stored_ = weights.k_padded;
  layer->granularity_ = weights.granularity;
  layer->activation_clip_ratio_ = weights.activation_clip_ratio;
  layer->online_hadamard_block_ = weights.online_hadamard_block;
  layer->backend_ = backend;
  // Rows past n are zero weights with zero scales: their outputs are 0 and never read.
  const int64_t row_bytes = PackedRowBytes(weights.k_padded);
  std::vector<uint8_t> padded(layer->n_stored_ * row_bytes, 0);
  std::copy(weights.packed.begin(), weights.packed.end(), padded.begin());
  std::vector<float> padded_scales(layer->n_stored_ * groups, 0.0f);
  std::copy(weights.scales.begin(), weights.scales.end(), padded_scales.begin());
  W4A4Operand canonical{padded.data(), padded_scales.data(), layer->n_stored_, weights.k_padded,
                        group};
  std::vector<uint8_t> prepacked(padded.size());
  std::vector<float> prepacked_scales(padded_scales.size());
  RETURN_IF_ERROR(FromCudaStatus(
      cuda::PrepackW4A4Weights(backend, canonical, prepacked.data(), prepacked_scales.data()),
      name + ": prepacking W4A4 weights"));
  ASSIGN_OR_RETURN(layer->weights_, UploadToDevice(prepacked.data(), prepacked.size(),
                                                   name + " (w4a4 weights)"));
  ASSIGN_OR_RETURN(layer->weight_scales_,
                   UploadToDevice(prepacked_scales.data(), prepacked_scales.size() * sizeof(float),
                                  name + " (w4a4 scales)"));
  if (count == 0) return layer;
  // Outlier channels: where they are for the quantizer, and their INT8 weights in rows of
  // W4A4OutlierCodesStride bytes (zeros past count; rows past n zero with zero scales).
  const int64_t chunks = weights.k_padded / 8;
  std::vector<uint8_t> mask(chunks);
  std::vector<int16_t> before(chunks);
  cuda::W4A4OutlierColumnsFor(outliers.channels.data(), static_cast<int32_t>(count), weights.k_padded,
                              mask.data(), before.data());
  layer->outlier_stride_ = cuda::W4A4OutlierCodesStride(static_cast<int32_t>(count));
  std::vector<int8_t> outlier_weights(layer->n_stored_ * layer->outlier_stride_, 0);
  for (int64_t j = 0; j < weights.n; ++j) {
    std::copy_n(outliers.weights.begin() + j * count, count, outlier_weights.begin() + j * layer->outlier_stride_);
  }
  std::vector<float> outlier_scales(layer->n_stored_, 0.0f);
  std::copy(outliers.scales.begin(), outliers.scales.end(), outlier_scales.begin());
  ASSIGN_OR_RETURN(layer->outlier_mask_, UploadToDevice(mask.data(), mask.size(), name + " (outlier columns)"));
  ASSIGN_OR_RETURN(layer->outliers_before_,
                   UploadToDevice(before.data(), before.size() * sizeof(int16_t), name + " (outlier columns)"));
  ASSIGN_OR_RETURN(layer->outlier_weights_,
                   UploadToDevice(outlier_weights.data(), outlier_weights.size(), name + " (outlier weights)"));
  ASSIGN_OR_RETURN(layer->outlier_scales_, UploadToDevice(outlier_scales.data(), outlier_scales.size() * sizeof(float),
                                                          name + " (outlier scales)"));
  layer->outlier_columns_ = {layer->outlier_mask_.as<uint8_t>(), layer->outliers_before_.as<int16_t>(),
                             static_cast<int32_t>(count)};
  return layer;
}

absl::StatusOr<std::unique_ptr<GpuLinear>> GpuLinear::Synthetic(GpuWeightFormat format,
                                                                int64_t n, int64_t k,
                                                                Granularity granularity,
                                                                cuda::W4A4Backend backend,
                                                                uint64_t seed,
                                                                const std::string& name) {
  std::unique_ptr<GpuLinear> layer(new GpuLinear());
  layer->name_ = name;
  layer->format_ = format;
  layer->n_ = n;
  layer->k_ = k;
  layer->n_stored_ = format == GpuWeightFormat::kW4A4 ? RoundUp(n, kTileRows) : n;
  layer->k_stored_ = format == GpuWeightFormat::kW4A4 ? RoundUp(k, kPackAlignK) : k;
  layer->granularity_ = granularity;
  layer->backend_ = backend;
  const int64_t count = layer->n_stored_ * layer->k_stored_;
  // Scaled so that |w| stays near 0.02, as in trained LLaMA projections.
  const std::string what = absl::StrCat(name, " (synthetic ", GpuWeightFormatName(format), ")");
  switch (format) {
    case GpuWeightFormat::kBf16: {
      ASSIGN_OR_RETURN(layer->weights_, DeviceMemory::Allocate(count * 2, what));
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::FillRandomBf16(layer->weights_.as<__nv_bfloat16>(), count, seed, 0.04f, nullptr),
          what));
      break;
    }
    case GpuWeightFormat::kFp8: {
      ASSIGN_OR_RETURN(layer->weights_, DeviceMemory::Allocate(count, what));
      ASSIGN_OR_RETURN(layer->weight_scales_, DeviceMemory::Allocate(n * sizeof(float), what));
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::FillRandomFp8(layer->weights_.as<__nv_fp8_e4m3>(), count, seed, nullptr), what));
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::FillRandomFloat(layer->weight_scales_.as<float>(), n, seed + 1, 2e-5f, 1e-4f,
                                nullptr),
          what));
      break;
    }
    case GpuWeightFormat::kW4A4: {
      const int64_t groups = layer->k_stored_ / GroupSizeFor(granularity, layer->k_stored_);
      // Random nibbles and scales are as valid in the prepacked layout as in the canonical one.
      ASSIGN_OR_RETURN(layer->weights_, DeviceMemory::Allocate(count / 2, what));
      ASSIGN_OR_RETURN(layer->weight_scales_,
                       DeviceMemory::Allocate(layer->n_stored_ * groups * sizeof(float), what));
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::FillRandomInt4(layer->weights_.as<uint8_t>(), count / 2, seed, nullptr), what));
      RETURN_IF_ERROR(FromCudaStatus(
          cuda::FillRandomFloat(layer->weight_scales_.as<float>(), layer->n_stored_ * groups,
                                seed + 1, 1e-3f, 5e-3f, nullptr),
          what));
      break;
    }
  }
  RETURN_IF_ERROR(CudaCall(cudaDeviceSynchronize(), what));
  return layer;
}

bool GpuLinear::ReadsInputDirectly(const GpuLinearInput& input) const {
  return format_ == GpuWeightFormat::kBf16 && input.type == cuda::ActivationType::kBFloat16 &&
         input.rmsnorm_weight == nullptr && input.residual == nullptr && !input.swiglu;
}

size_t GpuLinear::InputScratchBytes(int64_t rows) const {
  switch (format_) {
    case GpuWeightFormat::kBf16:
      return rows * k_ * sizeof(__nv_bfloat16);
    case GpuWeightFormat::kFp8:
      return ScalesOffset(rows * k_) + rows * sizeof(float);
    case GpuWeightFormat::kW4A4:
      return OutlierScalesOffset(rows) + (outlier_columns_.count > 0 ? rows * sizeof(float) : 0);
  }
  return 0;
}

// W4A4 scratch: packed codes, their scales (room for group-128), then with outlier channels
// their INT8 codes and scales, each at an aligned offset.
size_t GpuLinear::OutlierCodesOffset(int64_t rows) const {
  return ScalesOffset(ScalesOffset(rows * PackedRowBytes(k_stored_)) + rows * (k_stored_ / kGroupSize128) * sizeof(float));
}

size_t GpuLinear::OutlierScalesOffset(int64_t rows) const {
  return ScalesOffset(OutlierCodesOffset(rows) + rows * outlier_stride_);
}

KernelKind GpuLinear::prepare_kind() const {
  return format_ == GpuWeightFormat::kBf16 ? KernelKind::kNorm : KernelKind::kQuantizeActivations;
}

KernelKind GpuLinear::multiply_kind() const {
  switch (format_) {
    case GpuWeightFormat::kW4A4: return KernelKind::kGemmW4A4;
    case GpuWeightFormat::kBf16: return KernelKind::kGemmBf16;
    case GpuWeightFormat::kFp8: return KernelKind::kGemmFp8;
  }
  return KernelKind::kGemmBf16;
}

absl::Status GpuLinear::PrepareInput(const GpuLinearInput& input, void* scratch,
                                     const GpuLinearContext& context) const {
  const std::string what = absl::StrCat(name_, ": preparing the input");
  switch (format_) {
    case GpuWeightFormat::kBf16: {
      if (ReadsInputDirectly(input)) return absl::OkStatus();
      auto* operand = static_cast<__nv_bfloat16*>(scratch);
      if (input.swiglu) {
        return FromCudaStatus(cuda::SiluMul(static_cast<const __nv_bfloat16*>(input.x),
                                            input.row_stride, input.rows, k_,
                                            cuda::ActivationType::kBFloat16, operand,
                                            context.stream),
                              what);
      }
      if (input.type != cuda::ActivationType::kFloat32 || input.rmsnorm_weight == nullptr) {
        return absl::UnimplementedError(
            absl::StrCat(what, ": BF16 layers take bf16 rows, or FP32 rows with an RMSNorm"));
      }
      if (input.residual == nullptr) {
        return FromCudaStatus(
            cuda::RmsNormToBf16(static_cast<const float*>(input.x), input.rmsnorm_weight,
                                input.rows, k_, input.rmsnorm_eps, operand, k_, context.stream),
            what);
      }
      // The residual stream is updated in place: the fused kernel writes x.
      return FromCudaStatus(
          cuda::RmsNormToBf16(static_cast<float*>(const_cast<void*>(input.x)), input.residual,
                              input.residual_stride, input.rmsnorm_weight, input.rows, k_,
                              input.rmsnorm_eps, operand, k_, context.stream),
          what);
    }
    case GpuWeightFormat::kFp8: {
      cuda::Fp8QuantizeArgs args;
      args.x = input.x;
      args.type = input.type;
      args.ldx = input.row_stride;
      args.rows = input.rows;
      args.dim = k_;
      args.rmsnorm_weight = input.rmsnorm_weight;
      args.eps = input.rmsnorm_eps;
      args.residual = input.residual;
      args.ld_residual = input.residual_stride;
      args.swiglu = input.swiglu;
      args.y = static_cast<__nv_fp8_e4m3*>(scratch);
      args.scales = reinterpret_cast<float*>(static_cast<char*>(scratch) +
                                             ScalesOffset(input.rows * k_));
      return FromCudaStatus(cuda::QuantizeFp8PerToken(args, context.stream), what);
    }
    case GpuWeightFormat::kW4A4: {
      cuda::W4A4QuantizeArgs args;
      args.x = input.x;
      args.type = input.type;
      args.rows = input.rows;
      args.k = k_stored_;
      args.x_row_stride = input.row_stride;
      args.k_valid = k_;
      args.rmsnorm_weight = input.rmsnorm_weight;
      args.rmsnorm_eps = input.rmsnorm_eps;
      args.hadamard = online_hadamard_block_ == 128;
      args.residual = input.residual;
      args.residual_stride = input.residual_stride;
      args.swiglu = input.swiglu;
      args.granularity = granularity_;
      args.clip_ratio = activation_clip_ratio_;
      args.packed = static_cast<uint8_t*>(scratch);
      args.scales = reinterpret_cast<float*>(
          static_cast<char*>(scratch) + ScalesOffset(input.rows * PackedRowBytes(k_stored_)));
      if (outlier_columns_.count > 0) {
        args.outliers = &outlier_columns_;
        args.outlier_q8 = reinterpret_cast<int8_t*>(static_cast<char*>(scratch) + OutlierCodesOffset(input.rows));
        args.outlier_scales = reinterpret_cast<float*>(static_cast<char*>(scratch) + OutlierScalesOffset(input.rows));
      }
      return FromCudaStatus(cuda::QuantizeW4A4Activations(args, context.stream), what);
    }
  }
  return absl::InternalError(what);
}

absl::Status GpuLinear::Multiply(const GpuLinearInput& input, const void* scratch,
                                 __nv_bfloat16* y, const GpuLinearContext& context) const {
  const std::string what = absl::StrCat(name_, ": GEMM");
  const int64_t m = input.rows;
  switch (format_) {
    case GpuWeightFormat::kBf16: {
      const bool direct = ReadsInputDirectly(input);
      return FromCudaStatus(
          context.dense->Bf16(static_cast<const __nv_bfloat16*>(direct ? input.x : scratch),
                              direct ? input.row_stride : k_,
                              weights_.as<__nv_bfloat16>(), y, n_stored_, m, n_, k_),
          what);
    }
    case GpuWeightFormat::kFp8: {
      const auto* scales = reinterpret_cast<const float*>(static_cast<const char*>(scratch) +
                                                          ScalesOffset(m * k_));
      return FromCudaStatus(
          context.dense->Fp8(static_cast<const __nv_fp8_e4m3*>(scratch), scales,
                             weights_.as<__nv_fp8_e4m3>(), weight_scales_.as<float>(), y,
                             n_stored_, m, n_, k_),
          what);
    }
    case GpuWeightFormat::kW4A4: {
      cuda::W4A4GemmArgs args;
      args.x = static_cast<const uint8_t*>(scratch);
      args.x_scales = reinterpret_cast<const float*>(
          static_cast<const char*>(scratch) + ScalesOffset(m * PackedRowBytes(k_stored_)));
      args.w = weights_.as<uint8_t>();
      args.w_scales = weight_scales_.as<float>();
      args.y = y;
      args.m = m;
      args.n = n_stored_;
      args.k = k_stored_;
      args.granularity = granularity_;
      args.workspace = context.w4a4_workspace;
      args.workspace_bytes = context.w4a4_workspace_bytes;
      cuda::W4A4GemmOutliers outliers;
      if (outlier_columns_.count > 0) {
        outliers.x_q8 = reinterpret_cast<const int8_t*>(static_cast<const char*>(scratch) + OutlierCodesOffset(m));
        outliers.x_scales =
            reinterpret_cast<const float*>(static_cast<const char*>(scratch) + OutlierScalesOffset(m));
        outliers.count = outlier_columns_.count;
        outliers.codes_stride = outlier_stride_;
        outliers.weights = outlier_weights_.as<int8_t>();
        outliers.weight_scales = outlier_scales_.as<float>();
        args.outliers = &outliers;
      }
      return FromCudaStatus(cuda::W4A4Gemm(backend_, args, context.stream), what);
    }
  }
  return absl::InternalError(what);
}

}  // namespace apex4
