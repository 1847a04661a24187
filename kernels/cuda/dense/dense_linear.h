// Baseline linear layers for the GPU engine: cuBLAS BF16 and cuBLASLt FP8 (e4m3) GEMMs with the
// W4A4 kernels' conventions — raw device pointers, row-major operands, CudaStatus back:
//
//   Y[m, n] (bf16, row stride ldy) = X[m, k] · W[n, k]^T
//
// FP8 uses per-token × per-channel scales ("outer vector" scaling,
// CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F): Y = (Σ_k x·w) · x_scale[m] · w_scale[n], fp32
// accumulation, one bf16 rounding at the end. cuBLAS may split K and, by default (as PyTorch
// does), reduce the BF16 GEMM's splits in bf16.
//
// FP8 limits (cuBLASLt's FP8 requirements — TN layout, 16-byte aligned dimensions and pointers —
// checked up front, cudaErrorInvalidValue naming the condition): k % 16 == 0, n % 16 == 0,
// ldy % 8 == 0, x, w and y 16-byte aligned; any m ≥ 0. Outer-vector scales need a GPU and cuBLAS
// that support them (Hopper, cuBLAS ≥ 12.9); elsewhere Fp8 returns cudaErrorNotSupported.
// BF16 has no alignment limits beyond cuBLAS's (any m, n, k; ldx ≥ k, ldy ≥ n).
// m == 0 is a no-op. Dimensions and leading dimensions must fit in int32.
#ifndef APEX4_KERNELS_CUDA_DENSE_DENSE_LINEAR_H_
#define APEX4_KERNELS_CUDA_DENSE_DENSE_LINEAR_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda {

// Not thread-safe: one DenseGemm per stream (and per host thread using it).
class DenseGemm {
 public:
  // Bytes of the workspace each DenseGemm owns (cuBLAS's recommendation for Hopper).
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;

  // Owns a cuBLAS and a cuBLASLt handle and one workspace, given to cuBLAS with
  // cublasSetWorkspace and to cuBLASLt with every matmul, so that calls can be captured in a CUDA
  // graph (no allocation inside a call). Every call runs on `stream`.
  static CudaStatus Create(cudaStream_t stream, std::unique_ptr<DenseGemm>* out);
  ~DenseGemm();
  DenseGemm(const DenseGemm&) = delete;
  DenseGemm& operator=(const DenseGemm&) = delete;

  // x bf16 [m, k] (row stride ldx), w bf16 [n, k] row-major, y bf16 [m, n] (row stride ldy);
  // fp32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F).
  CudaStatus Bf16(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, __nv_bfloat16* y,
                  int64_t ldy, int64_t m, int64_t n, int64_t k);

  // As Bf16 with a float output (no bf16 rounding): the LM head, whose logits feed sampling.
  CudaStatus Bf16ToFloat(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, float* y,
                         int64_t ldy, int64_t m, int64_t n, int64_t k);

  // x e4m3 [m, k] contiguous with x_scales [m] (per token), w e4m3 [n, k] contiguous with
  // w_scales [n] (per channel), all device memory: y = (Σ_k x·w) · x_scale[m] · w_scale[n].
  // The matmul descriptor and cuBLASLt's heuristic algorithm are cached per (m, n, k, ldy and
  // the pointers' alignment); the first call of a shape queries the heuristic (host only, so
  // that is allowed during graph capture too).
  CudaStatus Fp8(const __nv_fp8_e4m3* x, const float* x_scales, const __nv_fp8_e4m3* w,
                 const float* w_scales, __nv_bfloat16* y, int64_t ldy, int64_t m, int64_t n,
                 int64_t k);

 private:
  struct State;
  CudaStatus Bf16Gemm(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, void* y,
                      cudaDataType_t y_type, int64_t ldy, int64_t m, int64_t n, int64_t k);
  explicit DenseGemm(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Host-side weight conversion. float [count] → bf16, round to nearest even.
void ConvertWeightsToBf16(const float* w, int64_t count, __nv_bfloat16* out);

// float [n, k] → e4m3 [n, k] with one scale per output channel (row): scale = absmax / 448,
// q = e4m3(w / scale) rounded to nearest even and saturated to ±448 (__nv_cvt_float_to_fp8 with
// __NV_SATFINITE), so that w ≈ q · scale. A row whose absmax is 0 (or whose absmax / 448
// underflows to 0) gets scale 1 and zeros. The same rule as QuantizeFp8PerToken
// (kernels/cuda/ops/llama_elementwise.h) on activations. Non-finite weights are not supported.
void QuantizeWeightsToFp8(const float* w, int64_t n, int64_t k, __nv_fp8_e4m3* out, float* scales);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_DENSE_DENSE_LINEAR_H_
