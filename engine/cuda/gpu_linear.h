// A linear layer of the CUDA engine, Y[m, n] = X[m, k] · W[n, k]^T with bf16 output, in one of
// three weight formats: apex4's W4A4 (kernels/cuda/w4a4_linear.h) and the two baselines the
// engine is measured against, BF16 through cuBLAS and FP8 (e4m3, per-token × per-channel
// scales) through cuBLASLt. Each runs in two halves, so that the engine can time them apart:
// PrepareInput turns the arriving activations (FP32 residual rows with an optional fused
// RMSNorm, or bf16 rows) into the GEMM's operand in a scratch buffer, Multiply runs the GEMM.
#ifndef APEX4_ENGINE_CUDA_GPU_LINEAR_H_
#define APEX4_ENGINE_CUDA_GPU_LINEAR_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/cuda/device_memory.h"
#include "engine/kernel_timer.h"
#include "engine/w4a4_linear.h"
#include "kernels/cuda/dense/dense_linear.h"
#include "kernels/cuda/w4a4_linear.h"
#include "kernels/w4a4_format.h"

namespace apex4 {

enum class GpuWeightFormat : int32_t { kW4A4 = 0, kBf16 = 1, kFp8 = 2 };

const char* GpuWeightFormatName(GpuWeightFormat format);  // "w4a4", "bf16", "fp8"
// INVALID_ARGUMENT naming the accepted spellings.
absl::StatusOr<GpuWeightFormat> ParseGpuWeightFormat(absl::string_view name);

// What every layer of one GPU shares: the stream, the cuBLAS handles, the W4A4 backend and its
// split-K scratch (zeroed once; the kernels leave it zeroed).
struct GpuLinearContext {
  cudaStream_t stream = nullptr;
  cuda::DenseGemm* dense = nullptr;
  cuda::W4A4Backend w4a4_backend = cuda::W4A4Backend::kSm90;
  int num_sms = 0;
  void* w4a4_workspace = nullptr;
  size_t w4a4_workspace_bytes = 0;
};

// Activations as they reach a layer: `rows` rows of k() values, `row_stride` elements apart.
// Two fusions save a kernel each (kernels/cuda: bit for bit the unfused sequences):
//   - `residual`: x is the FP32 residual stream; PrepareInput first adds the previous
//     projection's bf16 output into it (x is written) and then normalises the updated rows;
//   - `swiglu`: x is the gate/up projection's bf16 output, gate in columns [0, k()) and up in
//     [k(), 2·k()); the layer's input is silu(gate) · up.
struct GpuLinearInput {
  const void* x = nullptr;
  cuda::ActivationType type = cuda::ActivationType::kFloat32;
  int64_t row_stride = 0;
  int64_t rows = 0;
  const float* rmsnorm_weight = nullptr;  // device, k() floats; null: no RMSNorm
  float rmsnorm_eps = 1e-5f;
  const __nv_bfloat16* residual = nullptr;
  int64_t residual_stride = 0;
  bool swiglu = false;
};

// 4-bit weights in the canonical layout of kernels/w4a4_format.h, with the online work the
// checkpoint asks for their activations (tools/quantizer/FORMAT.md).
struct W4A4HostWeights {
  int64_t n = 0;
  int64_t k = 0;          // logical K
  int64_t k_padded = 0;   // multiple of kPackAlignK
  Granularity granularity = Granularity::kPerChannel;  // weights and activations alike
  float activation_clip_ratio = 1.0f;
  int online_hadamard_block = 0;  // 0 or 128
  std::vector<uint8_t> packed;    // n × k_padded / 2
  std::vector<float> scales;      // n × k_padded / group
  W4A4OutlierChannels outliers;   // Atom-style INT8 channels (engine/w4a4_linear.h); none: empty

  // Stacks the rows of `parts` (same K, granularity and activation treatment, outlier channels
  // included: they read one input), e.g. Q, K and V into one QKV projection. INVALID_ARGUMENT
  // naming the mismatch.
  static absl::StatusOr<W4A4HostWeights> Concatenate(std::vector<W4A4HostWeights> parts);
};

class GpuLinear {
 public:
  // BF16 or FP8 from full-precision rows (n × k floats).
  static absl::StatusOr<std::unique_ptr<GpuLinear>> FromFloat(GpuWeightFormat format,
                                                              absl::Span<const float> weights,
                                                              int64_t n, int64_t k,
                                                              const std::string& name);
  static absl::StatusOr<std::unique_ptr<GpuLinear>> FromW4A4(const W4A4HostWeights& weights,
                                                             cuda::W4A4Backend backend,
                                                             const std::string& name);
  // Random weights (never zero) generated on the device, for speed measurements at shapes of
  // models we do not have (LLaMA-2-7B/70B). `granularity` matters for W4A4 only.
  static absl::StatusOr<std::unique_ptr<GpuLinear>> Synthetic(GpuWeightFormat format, int64_t n,
                                                              int64_t k, Granularity granularity,
                                                              cuda::W4A4Backend backend,
                                                              uint64_t seed,
                                                              const std::string& name);

  const std::string& name() const { return name_; }
  GpuWeightFormat format() const { return format_; }
  Granularity granularity() const { return granularity_; }
  int64_t n() const { return n_; }
  int64_t k() const { return k_; }
  // Elements between output rows: n() rounded up to the W4A4 kernels' 128-row tile.
  int64_t output_stride() const { return n_stored_; }
  int64_t weight_bytes() const {
    return weights_.bytes() + weight_scales_.bytes() + outlier_weights_.bytes() + outlier_scales_.bytes();
  }

  // Scratch PrepareInput needs for `rows` rows, at either granularity (a plan may switch it).
  size_t InputScratchBytes(int64_t rows) const;
  // The kernel kinds the two halves are timed under.
  KernelKind prepare_kind() const;
  KernelKind multiply_kind() const;

  // Writes the GEMM operand for `input` into `scratch` (InputScratchBytes(input.rows) bytes).
  absl::Status PrepareInput(const GpuLinearInput& input, void* scratch,
                            const GpuLinearContext& context) const;
  // y (bf16, rows × output_stride()) = the operand PrepareInput left in `scratch` · W^T.
  absl::Status Multiply(const GpuLinearInput& input, const void* scratch, __nv_bfloat16* y,
                        const GpuLinearContext& context) const;

 private:
  GpuLinear() = default;
  // The BF16 operand is the input itself when it is bf16 already and needs no RMSNorm, no
  // residual and no SwiGLU.
  bool ReadsInputDirectly(const GpuLinearInput& input) const;

  std::string name_;
  GpuWeightFormat format_ = GpuWeightFormat::kBf16;
  int64_t n_ = 0;
  int64_t k_ = 0;
  int64_t n_stored_ = 0;
  int64_t k_stored_ = 0;  // W4A4: the packed K
  Granularity granularity_ = Granularity::kPerChannel;
  float activation_clip_ratio_ = 1.0f;
  int online_hadamard_block_ = 0;
  cuda::W4A4Backend backend_ = cuda::W4A4Backend::kSm90;
  // Where PrepareInput leaves the outlier channels' INT8 codes and scales in the scratch.
  size_t OutlierCodesOffset(int64_t rows) const;
  size_t OutlierScalesOffset(int64_t rows) const;

  DeviceMemory weights_;        // bf16, e4m3 or backend-packed int4
  DeviceMemory weight_scales_;  // FP8: per channel; W4A4: per channel or group
  // W4A4 with outlier channels: their columns (cuda::W4A4OutlierColumns over outlier_mask_ and
  // outliers_before_), INT8 weights (n_stored_ rows of outlier_stride_ bytes, the codes' row
  // stride of cuda::W4A4OutlierCodesStride) and scales.
  cuda::W4A4OutlierColumns outlier_columns_;
  DeviceMemory outlier_mask_;
  DeviceMemory outliers_before_;
  DeviceMemory outlier_weights_;
  DeviceMemory outlier_scales_;
  int64_t outlier_stride_ = 0;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_CUDA_GPU_LINEAR_H_
