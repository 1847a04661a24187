#include "kernels/cuda/quant/w4a4_quantize_activations.h"

#include <cstdint>

#include "kernels/cuda/quant/w4a4_quantize_activations.cuh"

namespace apex4::cuda {
namespace {

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, bool kVector, quant::InputMode kMode>
auto* KernelFor(int held_passes) {
  if constexpr (kVector) {
    switch (held_passes) {
      case 1: return &quant::w4a4_quantize_activations_kernel<T, true, kMode, 1>;
      case 2: return &quant::w4a4_quantize_activations_kernel<T, true, kMode, 2>;
    }
  }
  return &quant::w4a4_quantize_activations_kernel<T, kVector, kMode, 0>;
}

template <typename T, quant::InputMode kMode>
CudaStatus Launch(const quant::QuantizeParams& params, int64_t rows, cudaStream_t stream) {
  // Whole 8-element chunks load as 16 bytes when every row start (and the RMSNorm weight, the
  // residual rows, the up half of a SwiGLU row) is 16-byte aligned; other layouts take
  // per-element loads.
  const bool vector =
      Aligned16(params.x) && (params.x_row_stride * sizeof(T)) % 16 == 0 &&
      (params.rmsnorm_weight == nullptr || Aligned16(params.rmsnorm_weight)) &&
      (kMode != quant::InputMode::kResidual ||
       (Aligned16(params.residual) && (params.residual_stride * sizeof(__nv_bfloat16)) % 16 == 0)) &&
      (kMode != quant::InputMode::kSwiGlu || (params.k_valid * sizeof(T)) % 16 == 0);
  if constexpr (kMode != quant::InputMode::kResidual) {
    int major = 0;
    APEX4_CUDA_RETURN_IF_NOT_OK(CurrentDeviceMajor(&major));
    if (major >= 9 && vector && rows <= quant::kFewRows && params.rmsnorm_weight == nullptr &&
        params.outlier_mask == nullptr) {
      return LaunchProgrammaticInClusters(&quant::w4a4_quantize_split_rows_kernel<T, true, kMode>,
                                          dim3(static_cast<unsigned>(rows * quant::kSplitCtas)),
                                          dim3(quant::SplitThreads(params.k)), 0, stream, dim3(quant::kSplitCtas),
                                          params);
    }
  }
  const int threads = quant::ThreadsFor(params.per_token, params.k, rows, params.rmsnorm_weight != nullptr);
  // Rows of at most two passes (every decode row of the 7B/8B shapes) stay in registers; four
  // passes spilled under the 64 registers a 1024-thread CTA leaves.
  const int passes = (params.k / 128 + threads / 16 - 1) / (threads / 16);
  const int held_passes =
      passes <= 2 && threads <= quant::kQuantizeMaxThreads<kMode, 1> ? passes : 0;
  auto* kernel = vector ? KernelFor<T, true, kMode>(held_passes) : KernelFor<T, false, kMode>(held_passes);
  const bool row_cached = params.per_token && (held_passes == 0 || !vector);
  const int smem = ((row_cached ? params.k : 0) + (params.outlier_mask != nullptr ? params.outlier_count : 0)) *
                   static_cast<int>(sizeof(float));
  APEX4_CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  return LaunchProgrammatic(kernel, dim3(static_cast<unsigned>(rows)), dim3(threads), smem, stream, params);
}

}  // namespace

CudaStatus LaunchW4A4QuantizeActivations(const W4A4QuantizeArgs& args, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(args.x && args.packed && args.scales);
  APEX4_CUDA_CHECK_ARG(args.rows > 0 && args.rows < (int64_t{1} << 31));
  // Per-token rows are cached in shared memory: k ≤ 32768 fits every shipped architecture's
  // opt-in limit except sm_86/89 (≤ 99 KB, k ≤ 24576), which the launch then reports.
  APEX4_CUDA_CHECK_ARG(args.k > 0 && args.k % 128 == 0 && args.k <= 32768);
  APEX4_CUDA_CHECK_ARG(args.clip_ratio > 0.0f && args.clip_ratio <= 1.0f);
  const int64_t k_valid = args.k_valid == 0 ? args.k : args.k_valid;
  const int64_t x_row_stride = args.x_row_stride == 0 ? args.k : args.x_row_stride;
  APEX4_CUDA_CHECK_ARG(k_valid > 0 && k_valid <= args.k);
  APEX4_CUDA_CHECK_ARG(x_row_stride >= (args.swiglu ? 2 * k_valid : k_valid));
  const bool residual = args.residual != nullptr;
  const int64_t residual_stride = args.residual_stride == 0 ? k_valid : args.residual_stride;
  if (residual) {
    APEX4_CUDA_CHECK_ARG(args.type == ActivationType::kFloat32 && !args.swiglu);
    APEX4_CUDA_CHECK_ARG(residual_stride >= k_valid);
  }
  if (args.swiglu) {
    APEX4_CUDA_CHECK_ARG(args.type == ActivationType::kBFloat16 && args.rmsnorm_weight == nullptr);
  }
  const W4A4OutlierColumns none;
  const W4A4OutlierColumns& outliers = args.outliers != nullptr ? *args.outliers : none;
  if (args.outliers != nullptr) {
    APEX4_CUDA_CHECK_ARG(outliers.mask && outliers.before && args.outlier_q8 && args.outlier_scales);
    APEX4_CUDA_CHECK_ARG(outliers.count > 0 && outliers.count <= kMaxW4A4Outliers && outliers.count <= k_valid);
  }
  const quant::QuantizeParams params{args.x,
                                     x_row_stride,
                                     static_cast<int>(k_valid),
                                     args.rmsnorm_weight,
                                     args.rmsnorm_eps,
                                     args.hadamard,
                                     args.granularity == Granularity::kPerChannel,
                                     args.clip_ratio,
                                     static_cast<int>(args.k),
                                     args.packed,
                                     args.scales,
                                     args.residual,
                                     residual_stride,
                                     outliers.mask,
                                     outliers.before,
                                     outliers.count,
                                     static_cast<int>(W4A4OutlierCodesStride(outliers.count)),
                                     args.outlier_q8,
                                     args.outlier_scales};
  using quant::InputMode;
  if (args.type == ActivationType::kBFloat16) {
    return args.swiglu ? Launch<__nv_bfloat16, InputMode::kSwiGlu>(params, args.rows, stream)
                       : Launch<__nv_bfloat16, InputMode::kPlain>(params, args.rows, stream);
  }
  APEX4_CUDA_CHECK_ARG(args.type == ActivationType::kFloat32);
  return residual ? Launch<float, InputMode::kResidual>(params, args.rows, stream)
                  : Launch<float, InputMode::kPlain>(params, args.rows, stream);
}

}  // namespace apex4::cuda
