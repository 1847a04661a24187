// The element-wise and per-row operations of a LLaMA block on the GPU, around the linear layers
// (W4A4: kernels/cuda/w4a4_linear.h; BF16 / FP8 baselines: kernels/cuda/dense/dense_linear.h).
// The residual stream ("hidden") is float32, as in the CPU engine (engine/llama_model.cc).
//
// Raw device pointers, a stream, CudaStatus back (cudaErrorInvalidValue naming a bad argument;
// launches are asynchronous, so a bad device pointer shows up later as a CUDA error). A count of
// 0 rows is a no-op; rows must be < 2^31. Every function can be captured in a CUDA graph. Row
// strides are in elements. Aligned operands (widths and strides multiples of 4, 16-byte aligned
// float and 8-byte aligned bf16 pointers) take 4-element vector accesses; any other layout works,
// element by element.
//
// Numerics against the CPU engine (engine/llama_ops.cc):
//  - RMSNorm sums the squares in double and forms 1 / sqrt(mean + eps) in double, rounded once to
//    float, then x · scale · weight in float — RmsNorm's arithmetic, so results are identical up
//    to the order of the double sum (a float scale differs only when that order moves a double
//    across a float rounding boundary).
//  - SiluMul uses the device expf (≤ 2 ulp), so it agrees with the CPU's std::exp to a few ulp.
//  - Embedding, residual add and gather are exact.
#ifndef APEX4_KERNELS_CUDA_OPS_LLAMA_ELEMENTWISE_H_
#define APEX4_KERNELS_CUDA_OPS_LLAMA_ELEMENTWISE_H_

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/w4a4_linear.h"  // ActivationType

namespace apex4::cuda {

// hidden f32 [m, dim] = table[tokens[i]] (table bf16 [vocab, dim]); tokens device int32, each in
// [0, vocab) (not checked on the device: the caller validates token ids).
CudaStatus EmbedTokens(const __nv_bfloat16* table, const int32_t* tokens, int64_t m, int64_t dim,
                       float* hidden, cudaStream_t stream);

// y bf16 [rows, dim] (row stride ldy) = RMSNorm(x f32 [rows, dim] contiguous) · weight
// (weight f32 [dim]), rounded to nearest even.
CudaStatus RmsNormToBf16(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                         __nv_bfloat16* y, int64_t ldy, cudaStream_t stream);

// The same with the residual add before it fused in: x[r, i] += residual[r, i] for i < dim
// (residual bf16, row stride ld_residual ≥ dim; one float add, as AddResidual), WRITTEN BACK to x,
// then y = RMSNorm(updated x) · weight. Bit for bit AddResidual(x, residual, ld_residual, rows,
// dim) followed by the call above.
CudaStatus RmsNormToBf16(float* x, const __nv_bfloat16* residual, int64_t ld_residual, const float* weight,
                         int64_t rows, int64_t dim, float eps, __nv_bfloat16* y, int64_t ldy,
                         cudaStream_t stream);

// Per-token FP8 e4m3: optional RMSNorm (rmsnorm_weight null skips it), then per row
// scale = absmax / 448 (a row whose absmax is 0, or whose absmax / 448 underflows to 0, gets
// scale 1 and zeros), y = e4m3(v / scale) rounded to nearest even and saturated (the
// __nv_cvt_float_to_fp8 rule, as QuantizeWeightsToFp8 does for weights). x is f32 or bf16 `type`,
// row stride ldx; y e4m3 [rows, dim] contiguous, scales f32 [rows]; the pair feeds
// DenseGemm::Fp8 as its x / x_scales.
CudaStatus QuantizeFp8PerToken(const void* x, ActivationType type, int64_t ldx, int64_t rows,
                               int64_t dim, const float* rmsnorm_weight, float eps,
                               __nv_fp8_e4m3* y, float* scales, cudaStream_t stream);

// QuantizeFp8PerToken with an optional fused input step (at most one of the two):
//  - residual (x f32): x[r, i] += residual[r, i] for i < dim (residual bf16, row stride
//    ld_residual ≥ dim; one float add, as AddResidual), WRITTEN BACK to x, before the optional
//    RMSNorm and the quantization of the updated row. Bit for bit AddResidual then the plain call.
//  - swiglu (x bf16, no RMSNorm): x is the gate/up GEMM output, gate at [0, dim) and up at
//    [dim, 2·dim) of each row (ldx ≥ 2·dim); the row quantized is silu(gate) · up in float, as
//    SiluMul computes it. Bit for bit SiluMul(x, ldx, rows, dim, kFloat32, tmp) then the plain call
//    on tmp (ldx = dim).
struct Fp8QuantizeArgs {
  const void* x = nullptr;                  // device: rows × ldx of `type` (written with residual)
  ActivationType type = ActivationType::kFloat32;
  int64_t ldx = 0;                          // ≥ dim (≥ 2·dim with swiglu)
  int64_t rows = 0;
  int64_t dim = 0;                          // width of the quantized row
  const float* rmsnorm_weight = nullptr;    // device: dim floats; null skips RMSNorm
  float eps = 1e-6f;
  const __nv_bfloat16* residual = nullptr;  // device: rows × ld_residual; null: no residual
  int64_t ld_residual = 0;                  // 0 means dim
  bool swiglu = false;
  __nv_fp8_e4m3* y = nullptr;               // device: rows × dim, contiguous
  float* scales = nullptr;                  // device: rows floats
};
CudaStatus QuantizeFp8PerToken(const Fp8QuantizeArgs& args, cudaStream_t stream);

// hidden f32 [rows, dim] contiguous += y bf16 [rows, dim] (row stride ldy).
CudaStatus AddResidual(float* hidden, const __nv_bfloat16* y, int64_t ldy, int64_t rows,
                       int64_t dim, cudaStream_t stream);

// out[r, i] = silu(gate_up[r, i]) · gate_up[r, inter + i] for i < inter, with
// silu(g) = g / (1 + e^-g); gate_up bf16 [rows, 2·inter] (row stride ld ≥ 2·inter); out f32 or
// bf16 (`out_type`) [rows, inter] contiguous.
CudaStatus SiluMul(const __nv_bfloat16* gate_up, int64_t ld, int64_t rows, int64_t inter,
                   ActivationType out_type, void* out, cudaStream_t stream);

// out f32 [count, dim] = hidden[rows[i]] (hidden f32 [*, dim] contiguous; rows device int32,
// valid row indices, not checked on the device): the last token of each sequence before the LM
// head.
CudaStatus GatherRows(const float* hidden, int64_t dim, const int32_t* rows, int64_t count,
                      float* out, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_OPS_LLAMA_ELEMENTWISE_H_
