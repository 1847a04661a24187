// Host API of apex4's CUDA W4A4 linear layers: what a GPU engine calls. Raw device pointers and a
// cudaStream_t in, CudaStatus out; no Abseil, gRPC or model knowledge.
//
//   Y[m, n] = Σ_g sx[m, g] · sw[n, g] · Σ_{k ∈ g} qx[m, k] · qw[n, k]     (bf16 out)
//
// Operands follow kernels/w4a4_format.h. Both operands share one granularity: per-channel
// weights with per-token activations, or group-128 on both ("mixed" is a per-layer choice).
// Thread safety: every function is reentrant; calls on one stream run in order.
#ifndef APEX4_KERNELS_CUDA_W4A4_LINEAR_H_
#define APEX4_KERNELS_CUDA_W4A4_LINEAR_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/cuda_status.h"
#include "kernels/w4a4_format.h"

namespace apex4::cuda {

// Which GEMM implementation runs; weights are prepacked for one backend.
enum class W4A4Backend : int32_t {
  kSm90 = 0,      // Hopper: INT8 wgmma on unpacked nibbles (sm_90a)
  kPortable = 1,  // INT4 tensor cores, mma.sync m16n8k64 (sm_80/86/89; runs, slowly, on sm_90)
};

// The fastest backend built for `device`; cudaErrorNoKernelImageForDevice on architectures
// that are not compiled in (anything but sm_80, sm_86, sm_89, sm_90).
CudaStatus SelectW4A4Backend(int device, W4A4Backend* backend);

// Rewrites canonical weights (host memory) into the backend's layout, also in host memory.
// Output sizes equal the canonical ones: w.rows * w.k / 2 bytes and w.rows * w.groups() floats.
// Needs w.rows % 128 == 0, w.k % 128 == 0 and group_size ∈ {k, 128}.
CudaStatus PrepackW4A4Weights(W4A4Backend backend, const W4A4Operand& w, uint8_t* packed,
                              float* scales);

// Atom-style INT8 outlier channels of a W4A4 GEMM (W4A4OutlierProductArgs' operands): y gets
// (x_q8 · weights^T) · (x_scales · weight_scales) added as well.
struct W4A4GemmOutliers {
  const int8_t* x_q8 = nullptr;           // device: m × codes_stride (16-byte aligned)
  const float* x_scales = nullptr;        // device: m
  int32_t count = 0;                      // 1..kMaxW4A4Outliers
  int64_t codes_stride = 0;               // W4A4OutlierCodesStride(count)
  const int8_t* weights = nullptr;        // device: n × codes_stride (16-byte aligned)
  const float* weight_scales = nullptr;   // device: n
};

struct W4A4GemmArgs {
  const uint8_t* x = nullptr;         // device: m × k/2 bytes, canonical packed activations
  const float* x_scales = nullptr;    // device: m × (k / group) floats
  const uint8_t* w = nullptr;         // device: n × k/2 bytes, prepacked for the backend
  const float* w_scales = nullptr;    // device: n × (k / group) floats, prepacked
  __nv_bfloat16* y = nullptr;         // device: m × n, row-major
  int64_t m = 0;
  int64_t n = 0;                      // multiple of 128
  int64_t k = 0;                      // multiple of 128
  Granularity granularity = Granularity::kPerChannel;
  // Scratch: at least W4A4GemmWorkspaceBytes(...) bytes (split-K counters and partials, and
  // the large-batch path's unpacked activations, m·k bytes), zeroed once after allocation (the
  // kernels leave the counters zeroed again). May be null when that size is 0.
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // Optional. The Hopper decode kernel (M ≤ 16) adds the outlier product in its epilogue, before
  // the bf16 rounding, as the CPU's W4A4Linear adds it to its float output; other paths run
  // AddW4A4OutlierProducts on the bf16 output after the GEMM.
  const W4A4GemmOutliers* outliers = nullptr;
};

// Scratch the GEMM needs for this shape on a device with `num_sms` multiprocessors.
size_t W4A4GemmWorkspaceBytes(W4A4Backend backend, int64_t m, int64_t n, int64_t k,
                              Granularity granularity, int num_sms);

CudaStatus W4A4Gemm(W4A4Backend backend, const W4A4GemmArgs& args, cudaStream_t stream);

enum class ActivationType : int32_t { kFloat32 = 0, kBFloat16 = 1 };

// The most outlier channels a layer may have (the quantizer takes k · 128 / 4096: 896 at
// k = 28672).
inline constexpr int32_t kMaxW4A4Outliers = 1024;

// Where a layer's outlier channels are, as the quantizer kernel looks them up: per 8-column chunk
// c of the padded row, a bit mask of its outlier columns (bit j: column 8c + j) and the number of
// outlier columns before it. Build with W4A4OutlierColumnsFor (device arrays of k / 8 entries).
struct W4A4OutlierColumns {
  const uint8_t* mask = nullptr;    // device: k / 8
  const int16_t* before = nullptr;  // device: k / 8
  int32_t count = 0;
};
// Bytes between rows of outlier INT8 codes, activations' and weights' alike: the channel count
// rounded up to the mma k-step (32), zeros past it.
constexpr int64_t W4A4OutlierCodesStride(int32_t count) { return (int64_t{count} + 31) / 32 * 32; }
// The host arrays of W4A4OutlierColumns for sorted, distinct `channels` < k (k % 8 == 0).
void W4A4OutlierColumnsFor(const int32_t* channels, int32_t count, int64_t k, uint8_t* mask, int16_t* before);

// One pass per token: optional RMSNorm, optional 128-wide Walsh-Hadamard rotation, symmetric
// INT4 quantization (bit for bit QuantizeInt4Reference on the transformed values) and packing.
//
// Zero-padded K (the CPU engine's W4A4Linear for layers whose width is not a multiple of 128):
// a row holds k_valid real values; columns k_valid..k-1 are zeros whatever x holds there (they
// are not read). The order is the CPU engine's: RMSNorm over the k_valid columns (as
// engine/llama_ops.cc RmsNorm before the layer), zero padding to k, Hadamard on the padded row,
// quantization of all k columns (per-token absmax and group-128 groups over the padded row).
// RMSNorm sums the squares in double and forms 1 / sqrt(mean + eps) in double, rounded once to
// float, as RmsNorm does; the padded pipeline therefore matches the CPU engine (RmsNorm, pad,
// HadamardTransform block 128, QuantizeInt4) bit for bit, up to the order of a double sum.
//
// Fused input modes (at most one; both exclude nothing else unless said):
//  - Residual: `residual` set (x must be kFloat32, the FP32 residual stream). Each row is first
//    updated in place, x[r, i] += float(residual[r, i]) for i < k_valid (one float add, as
//    AddResidual does; x IS WRITTEN although it is a const pointer here, so it must be writable
//    device memory), then RMSNorm / Hadamard / quantization run on the updated row. Bit for bit
//    AddResidual(x, residual, residual_stride, rows, k_valid) followed by the unfused call.
//  - SwiGLU: `swiglu` true (x must be kBFloat16, no RMSNorm, no residual). x is the gate/up GEMM
//    output, gate at columns [0, k_valid) and up at [k_valid, 2·k_valid) of each row
//    (x_row_stride ≥ 2·k_valid); the row quantized is silu(gate) · up in float, the expression of
//    SiluMul (ops/llama_elementwise.h), so bit for bit SiluMul(..., kFloat32, tmp) followed by the
//    unfused call on tmp (k_valid = inter, x_row_stride = inter).
struct W4A4QuantizeArgs {
  const void* x = nullptr;                  // device: rows × x_row_stride of `type`
  ActivationType type = ActivationType::kFloat32;
  int64_t rows = 0;
  int64_t k = 0;                            // multiple of 128 (the packed, padded width)
  int64_t x_row_stride = 0;                 // elements between rows of x; 0 means k; >= k_valid
  int64_t k_valid = 0;                      // logical width in (0, k]; 0 means k
  const float* rmsnorm_weight = nullptr;    // device: k_valid floats; null skips RMSNorm
  float rmsnorm_eps = 1e-6f;
  bool hadamard = false;                    // x[blk] ← H128 · x[blk] / sqrt(128) per 128 block
  Granularity granularity = Granularity::kPerChannel;  // per token or group-128
  float clip_ratio = 1.0f;                  // in (0, 1]
  uint8_t* packed = nullptr;                // device: rows × k/2 bytes
  float* scales = nullptr;                  // device: rows × (k / group) floats
  const __nv_bfloat16* residual = nullptr;  // device: rows × residual_stride; null: no residual
  int64_t residual_stride = 0;              // elements between rows of residual; 0 means k_valid
  bool swiglu = false;                      // x is bf16 gate|up rows: quantize silu(gate) · up
  // Atom-style INT8 outlier channels (tools/quantizer/FORMAT.md "Outlier channels"), as the CPU
  // engine's W4A4Linear takes them: after the RMSNorm (and the zero padding), the columns of
  // `outliers` are copied out as per-token INT8 (scale = absmax / 127, q = clamp(rint(v / scale),
  // ±127)) and zeroed before the Hadamard and the INT4 quantization. Null: none.
  const W4A4OutlierColumns* outliers = nullptr;
  int8_t* outlier_q8 = nullptr;             // device: rows × W4A4OutlierCodesStride(count), zero-padded
  float* outlier_scales = nullptr;          // device: rows floats
};

CudaStatus QuantizeW4A4Activations(const W4A4QuantizeArgs& args, cudaStream_t stream);

// y[r, j] (bf16, row stride ldy) = bf16(float(y[r, j]) + (x_q8[r, :] · weights[j, :]) ·
// (x_scales[r] · weight_scales[j])) for j < n, r < rows: the outlier channels' INT8 product added
// to the INT4 GEMM's output (the CPU's W4A4Linear adds it before rounding; here y was rounded to
// bf16 once already). Codes of activations and weights alike in rows of
// codes_stride = W4A4OutlierCodesStride(count) bytes, zeros past count.
struct W4A4OutlierProductArgs {
  const int8_t* x_q8 = nullptr;        // device: rows × codes_stride (16-byte aligned)
  const float* x_scales = nullptr;     // device: rows
  int64_t rows = 0;
  int32_t count = 0;                   // outlier channels, 1..kMaxW4A4Outliers
  int64_t codes_stride = 0;
  const int8_t* weights = nullptr;     // device: n × codes_stride (16-byte aligned)
  const float* weight_scales = nullptr;  // device: n
  int64_t n = 0;
  __nv_bfloat16* y = nullptr;          // device: rows × ldy
  int64_t ldy = 0;
};
CudaStatus AddW4A4OutlierProducts(const W4A4OutlierProductArgs& args, cudaStream_t stream);

}  // namespace apex4::cuda

#endif  // APEX4_KERNELS_CUDA_W4A4_LINEAR_H_
