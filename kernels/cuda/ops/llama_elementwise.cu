// One CTA per row (≤ 256 threads, a multiple of 32), each thread striding over the row V elements
// at a time: V = 4 (16-byte float / 8-byte bf16 accesses) when widths, strides and pointers
// allow, else 1. Row reductions: warp shuffles, then one value per warp in shared memory.
// Float arithmetic that must round as the CPU engine's does uses the _rn intrinsics, which nvcc
// never contracts into FMAs.
#include "kernels/cuda/ops/llama_elementwise.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/programmatic_launch.cuh"

namespace apex4::cuda {
namespace {

constexpr int kMaxThreads = 256;
// The FP8 quantizer of few rows without RMSNorm (decode's SwiGLU / attention outputs) takes up to
// 1024 threads: fewer passes per row, and a result independent of the thread count (absmax is a
// max), so a row quantizes identically in any batch. RMSNorm rows keep kMaxThreads (the double
// sum's order follows the thread count).
constexpr int kWideThreads = 1024;
constexpr int64_t kFewRows = 64;
constexpr float kFp8E4m3Max = 448.0f;

__device__ __forceinline__ float ToFloat(float v) { return v; }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }

// p[0, V) as floats; V == 4 needs p aligned to 4 elements.
template <int V, typename T>
__device__ __forceinline__ void Load(const T* p, float (&v)[V]) {
  if constexpr (V == 1) {
    v[0] = ToFloat(p[0]);
  } else if constexpr (std::is_same_v<T, float>) {
    static_assert(V == 4);
    const float4 a = *reinterpret_cast<const float4*>(p);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  } else {
    static_assert(V == 4 && std::is_same_v<T, __nv_bfloat16>);
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
    const float2 lo = __bfloat1622float2(h[0]), hi = __bfloat1622float2(h[1]);
    v[0] = lo.x, v[1] = lo.y, v[2] = hi.x, v[3] = hi.y;
  }
}

// v → p[0, V): float as is, bf16 and e4m3 rounded to nearest even (e4m3 saturated to ±448).
template <int V, typename T>
__device__ __forceinline__ void Store(T* p, const float (&v)[V]) {
  if constexpr (std::is_same_v<T, float>) {
    if constexpr (V == 1) {
      p[0] = v[0];
    } else {
      *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    }
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (V == 1) {
      p[0] = __float2bfloat16_rn(v[0]);
    } else {
      uint2 raw;
      __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&raw);
      h[0] = __floats2bfloat162_rn(v[0], v[1]);
      h[1] = __floats2bfloat162_rn(v[2], v[3]);
      *reinterpret_cast<uint2*>(p) = raw;
    }
  } else {
    static_assert(std::is_same_v<T, __nv_fp8_e4m3>);
    uint32_t word = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      word |= uint32_t{__nv_cvt_float_to_fp8(v[j], __NV_SATFINITE, __NV_E4M3)} << (8 * j);
    }
    if constexpr (V == 1) {
      p[0].__x = static_cast<__nv_fp8_storage_t>(word);
    } else {
      *reinterpret_cast<uint32_t*>(p) = word;
    }
  }
}

// The whole block's reduction of v, returned to every thread. blockDim.x is a multiple of 32.
template <typename Value, typename Op>
__device__ Value BlockReduce(Value v, Op op) {
  __shared__ Value partial[kWideThreads / 32];
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, m));
  __syncthreads();  // a previous reduction of this type may still be reading `partial`
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < int(blockDim.x) / 32; ++w) v = op(v, partial[w]);
  return v;
}

// Where a row comes from: x as is; x f32 += residual bf16, written back to x (the fused residual
// add); silu(gate) · up of a bf16 gate|up row (the fused SwiGLU, gate = x, up = x + dim).
enum class RowMode : int { kPlain = 0, kResidual = 1, kSwiGlu = 2 };

// silu_mul_kernel's expression (also quant/w4a4_quantize_activations.cuh SiluMulValue: keep the
// three identical so fused and unfused SwiGLU agree bit for bit).
__device__ __forceinline__ float SiluMulValue(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// Elements [i, i + V) of the row, per `kMode`. kResidual adds residual[i..] to x[i..] (one float
// add each, as add_residual_kernel) and stores the sums back to x: call it once per element (the
// first pass over the row); later passes read x plainly. Every pass of a kernel maps element i to
// the same thread, so a thread only rereads its own stores.
template <RowMode kMode, int V, typename T>
__device__ __forceinline__ void LoadRow(const T* x, const __nv_bfloat16* residual, int64_t dim, int64_t i,
                                        float (&v)[V]) {
  if constexpr (kMode == RowMode::kPlain) {
    Load<V>(x + i, v);
  } else if constexpr (kMode == RowMode::kResidual) {
    static_assert(std::is_same_v<T, float>);
    float r[V];
    Load<V>(x + i, v);
    Load<V>(residual + i, r);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fadd_rn(v[j], r[j]);
    Store<V>(const_cast<float*>(x) + i, v);
  } else {
    static_assert(kMode == RowMode::kSwiGlu && std::is_same_v<T, __nv_bfloat16>);
    float u[V];
    Load<V>(x + i, v);
    Load<V>(x + dim + i, u);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = SiluMulValue(v[j], u[j]);
  }
}

// engine/llama_ops.cc RmsNorm's scale: exact squares summed in double, 1 / sqrt(sum / n + eps) in
// double, rounded once to float. kResidual: this pass is the row's first, it applies the residual.
template <int V, RowMode kMode = RowMode::kPlain, typename T>
__device__ float RmsNormScale(const T* x, int64_t dim, float eps, const __nv_bfloat16* residual = nullptr) {
  double sum = 0.0;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    LoadRow<kMode, V>(x, residual, dim, i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) sum = fma(double(v[j]), double(v[j]), sum);
  }
  sum = BlockReduce(sum, [](double a, double b) { return a + b; });
  return static_cast<float>(1.0 / sqrt(sum / double(dim) + double(eps)));
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    embed_tokens_kernel(const __nv_bfloat16* table, const int32_t* tokens, int64_t dim, float* hidden) {
  StartAfterPrerequisiteGrids();
  const __nv_bfloat16* src = table + int64_t{tokens[blockIdx.x]} * dim;
  float* dst = hidden + int64_t{blockIdx.x} * dim;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    Load<V>(src + i, v);
    Store<V>(dst + i, v);
  }
}

template <int V, RowMode kMode>
__global__ void __launch_bounds__(kMaxThreads)
    rmsnorm_bf16_kernel(const float* x, const float* weight, int64_t dim, float eps, __nv_bfloat16* y,
                        int64_t ldy, const __nv_bfloat16* residual, int64_t ld_residual) {
  StartAfterPrerequisiteGrids();
  x += int64_t{blockIdx.x} * dim;
  y += int64_t{blockIdx.x} * ldy;
  if constexpr (kMode == RowMode::kResidual) residual += int64_t{blockIdx.x} * ld_residual;
  const float scale = RmsNormScale<V, kMode>(x, dim, eps, residual);
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V], g[V];
    Load<V>(x + i, v);
    Load<V>(weight + i, g);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fmul_rn(__fmul_rn(v[j], scale), g[j]);
    Store<V>(y + i, v);
  }
}

// The (optionally normalized) elements [i, i + V) of a row (kMode as LoadRow).
template <int V, RowMode kMode, typename T>
__device__ __forceinline__ void LoadNormalized(const T* x, const __nv_bfloat16* residual, int64_t dim,
                                               const float* weight, float scale, int64_t i, float (&v)[V]) {
  LoadRow<kMode, V>(x, residual, dim, i, v);
  if (weight != nullptr) {
    float g[V];
    Load<V>(weight + i, g);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fmul_rn(__fmul_rn(v[j], scale), g[j]);
  }
}

// kResidual: the first pass over the row (RMSNorm's, else absmax's) applies the residual; the
// later ones read the updated x. kSwiGlu recomputes silu(gate) · up in each pass (identically).
template <int V, typename T, RowMode kMode>
__global__ void __launch_bounds__(kWideThreads)
    quantize_fp8_kernel(const T* x, int64_t ldx, int64_t dim, const float* weight, float eps, __nv_fp8_e4m3* y,
                        float* scales, const __nv_bfloat16* residual, int64_t ld_residual) {
  StartAfterPrerequisiteGrids();
  constexpr RowMode kLater = kMode == RowMode::kResidual ? RowMode::kPlain : kMode;
  x += int64_t{blockIdx.x} * ldx;
  y += int64_t{blockIdx.x} * dim;
  if constexpr (kMode == RowMode::kResidual) residual += int64_t{blockIdx.x} * ld_residual;
  float norm = 1.0f;
  float absmax = 0.0f;
  if (weight != nullptr) {
    norm = RmsNormScale<V, kMode>(x, dim, eps, residual);
    for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
      float v[V];
      LoadNormalized<V, kLater>(x, residual, dim, weight, norm, i, v);
#pragma unroll
      for (int j = 0; j < V; ++j) absmax = fmaxf(absmax, fabsf(v[j]));
    }
  } else {
    for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
      float v[V];
      LoadNormalized<V, kMode>(x, residual, dim, nullptr, norm, i, v);
#pragma unroll
      for (int j = 0; j < V; ++j) absmax = fmaxf(absmax, fabsf(v[j]));
    }
  }
  absmax = BlockReduce(absmax, [](float a, float b) { return fmaxf(a, b); });
  float scale = __fdiv_rn(absmax, kFp8E4m3Max);
  if (!(scale > 0.0f)) scale = 1.0f;  // zero row, or absmax / 448 underflowed
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  // The row is read again (from L1 / L2) and normalized again, identically.
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    LoadNormalized<V, kLater>(x, residual, dim, weight, norm, i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fdiv_rn(v[j], scale);
    Store<V>(y + i, v);
  }
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    add_residual_kernel(float* hidden, const __nv_bfloat16* y, int64_t ldy, int64_t dim) {
  StartAfterPrerequisiteGrids();
  hidden += int64_t{blockIdx.x} * dim;
  y += int64_t{blockIdx.x} * ldy;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float h[V], v[V];
    Load<V>(hidden + i, h);
    Load<V>(y + i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) h[j] += v[j];
    Store<V>(hidden + i, h);
  }
}

template <int V, typename Out>
__global__ void __launch_bounds__(kMaxThreads)
    silu_mul_kernel(const __nv_bfloat16* gate_up, int64_t ld, int64_t inter, Out* out) {
  StartAfterPrerequisiteGrids();
  gate_up += int64_t{blockIdx.x} * ld;
  out += int64_t{blockIdx.x} * inter;
  for (int64_t i = int64_t{threadIdx.x} * V; i < inter; i += int64_t{blockDim.x} * V) {
    float g[V], u[V];
    Load<V>(gate_up + i, g);
    Load<V>(gate_up + inter + i, u);
#pragma unroll
    for (int j = 0; j < V; ++j) g[j] = SiluMulValue(g[j], u[j]);
    Store<V>(out + i, g);
  }
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    gather_rows_kernel(const float* hidden, int64_t dim, const int32_t* rows, float* out) {
  StartAfterPrerequisiteGrids();
  const float* src = hidden + int64_t{rows[blockIdx.x]} * dim;
  out += int64_t{blockIdx.x} * dim;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    Load<V>(src + i, v);
    Store<V>(out + i, v);
  }
}

// ---------------------------------------------------------------------------------------------
// Launchers.

constexpr int64_t kMaxRows = (int64_t{1} << 31) - 1;

bool Aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// 4-wide accesses: every width and stride a multiple of 4, every pointer aligned to 4 elements.
struct VectorCheck {
  bool ok = true;
  VectorCheck& Width(int64_t w) { ok = ok && w % 4 == 0; return *this; }
  template <typename T>
  VectorCheck& Pointer(const T* p) { ok = ok && (p == nullptr || Aligned(p, 4 * sizeof(T))); return *this; }
};

// Threads for a row of `width` elements taken `v` at a time: whole warps, at most kMaxThreads.
int Threads(int64_t width, int v, int max_threads = kMaxThreads) {
  const int64_t work = (width + v - 1) / v;
  return static_cast<int>(std::clamp<int64_t>((work + 31) / 32 * 32, 32, max_threads));
}

template <typename Kernel1, typename Kernel4, typename... Args>
CudaStatus LaunchWith(int max_threads, bool vector, Kernel1 kernel1, Kernel4 kernel4, int64_t rows, int64_t width,
                      cudaStream_t stream, Args... args) {
  const dim3 grid(static_cast<unsigned>(rows));
  return vector ? LaunchProgrammatic(kernel4, grid, dim3(Threads(width, 4, max_threads)), 0, stream, args...)
                : LaunchProgrammatic(kernel1, grid, dim3(Threads(width, 1, max_threads)), 0, stream, args...);
}

template <typename Kernel1, typename Kernel4, typename... Args>
CudaStatus Launch(bool vector, Kernel1 kernel1, Kernel4 kernel4, int64_t rows, int64_t width, cudaStream_t stream,
                  Args... args) {
  return LaunchWith(kMaxThreads, vector, kernel1, kernel4, rows, width, stream, args...);
}

bool ValidType(ActivationType type) {
  return type == ActivationType::kFloat32 || type == ActivationType::kBFloat16;
}

}  // namespace

CudaStatus EmbedTokens(const __nv_bfloat16* table, const int32_t* tokens, int64_t m, int64_t dim, float* hidden,
                       cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(m >= 0 && m <= kMaxRows && dim > 0);
  if (m == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(table != nullptr && tokens != nullptr && hidden != nullptr);
  const bool vector = VectorCheck().Width(dim).Pointer(table).Pointer(hidden).ok;
  return Launch(vector, embed_tokens_kernel<1>, embed_tokens_kernel<4>, m, dim, stream, table, tokens, dim, hidden);
}

CudaStatus RmsNormToBf16(const float* x, const float* weight, int64_t rows, int64_t dim, float eps, __nv_bfloat16* y,
                         int64_t ldy, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= kMaxRows && dim > 0 && ldy >= dim);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && weight != nullptr && y != nullptr);
  const bool vector = VectorCheck().Width(dim).Width(ldy).Pointer(x).Pointer(weight).Pointer(y).ok;
  const __nv_bfloat16* no_residual = nullptr;
  return Launch(vector, rmsnorm_bf16_kernel<1, RowMode::kPlain>, rmsnorm_bf16_kernel<4, RowMode::kPlain>, rows, dim,
                stream, x, weight, dim, eps, y, ldy, no_residual, int64_t{0});
}

CudaStatus RmsNormToBf16(float* x, const __nv_bfloat16* residual, int64_t ld_residual, const float* weight,
                         int64_t rows, int64_t dim, float eps, __nv_bfloat16* y, int64_t ldy, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= kMaxRows && dim > 0 && ldy >= dim && ld_residual >= dim);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && residual != nullptr && weight != nullptr && y != nullptr);
  const bool vector =
      VectorCheck().Width(dim).Width(ldy).Width(ld_residual).Pointer(x).Pointer(residual).Pointer(weight).Pointer(y).ok;
  const float* cx = x;
  return Launch(vector, rmsnorm_bf16_kernel<1, RowMode::kResidual>, rmsnorm_bf16_kernel<4, RowMode::kResidual>, rows,
                dim, stream, cx, weight, dim, eps, y, ldy, residual, ld_residual);
}

CudaStatus QuantizeFp8PerToken(const void* x, ActivationType type, int64_t ldx, int64_t rows, int64_t dim,
                               const float* rmsnorm_weight, float eps, __nv_fp8_e4m3* y, float* scales,
                               cudaStream_t stream) {
  Fp8QuantizeArgs args;
  args.x = x;
  args.type = type;
  args.ldx = ldx;
  args.rows = rows;
  args.dim = dim;
  args.rmsnorm_weight = rmsnorm_weight;
  args.eps = eps;
  args.y = y;
  args.scales = scales;
  return QuantizeFp8PerToken(args, stream);
}

CudaStatus QuantizeFp8PerToken(const Fp8QuantizeArgs& a, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(ValidType(a.type));
  const int64_t ld_residual = a.ld_residual == 0 ? a.dim : a.ld_residual;
  APEX4_CUDA_CHECK_ARG(a.rows >= 0 && a.rows <= kMaxRows && a.dim > 0 && a.ldx >= (a.swiglu ? 2 * a.dim : a.dim));
  const bool residual = a.residual != nullptr;
  APEX4_CUDA_CHECK_ARG(!(residual && a.swiglu));
  if (residual) APEX4_CUDA_CHECK_ARG(a.type == ActivationType::kFloat32 && ld_residual >= a.dim);
  if (a.swiglu) APEX4_CUDA_CHECK_ARG(a.type == ActivationType::kBFloat16 && a.rmsnorm_weight == nullptr);
  if (a.rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(a.x != nullptr && a.y != nullptr && a.scales != nullptr);
  const int64_t rows = a.rows, dim = a.dim, ldx = a.ldx;
  const int threads = a.rmsnorm_weight == nullptr && rows <= kFewRows ? kWideThreads : kMaxThreads;
  if (a.type == ActivationType::kBFloat16) {
    const auto* xb = static_cast<const __nv_bfloat16*>(a.x);
    const bool vector = VectorCheck().Width(dim).Width(ldx).Pointer(xb).Pointer(a.rmsnorm_weight).Pointer(a.y).ok;
    if (a.swiglu) {
      return LaunchWith(threads, vector, quantize_fp8_kernel<1, __nv_bfloat16, RowMode::kSwiGlu>,
                    quantize_fp8_kernel<4, __nv_bfloat16, RowMode::kSwiGlu>, rows, dim, stream, xb, ldx, dim,
                    a.rmsnorm_weight, a.eps, a.y, a.scales, a.residual, ld_residual);
    }
    return LaunchWith(threads, vector, quantize_fp8_kernel<1, __nv_bfloat16, RowMode::kPlain>,
                  quantize_fp8_kernel<4, __nv_bfloat16, RowMode::kPlain>, rows, dim, stream, xb, ldx, dim,
                  a.rmsnorm_weight, a.eps, a.y, a.scales, a.residual, ld_residual);
  }
  const auto* xf = static_cast<const float*>(a.x);
  const bool vector = VectorCheck()
                          .Width(dim)
                          .Width(ldx)
                          .Width(residual ? ld_residual : 0)
                          .Pointer(xf)
                          .Pointer(a.rmsnorm_weight)
                          .Pointer(a.residual)
                          .Pointer(a.y)
                          .ok;
  if (residual) {
    return LaunchWith(threads, vector, quantize_fp8_kernel<1, float, RowMode::kResidual>,
                  quantize_fp8_kernel<4, float, RowMode::kResidual>, rows, dim, stream, xf, ldx, dim,
                  a.rmsnorm_weight, a.eps, a.y, a.scales, a.residual, ld_residual);
  }
  return LaunchWith(threads, vector, quantize_fp8_kernel<1, float, RowMode::kPlain>, quantize_fp8_kernel<4, float, RowMode::kPlain>,
                rows, dim, stream, xf, ldx, dim, a.rmsnorm_weight, a.eps, a.y, a.scales, a.residual, ld_residual);
}

CudaStatus AddResidual(float* hidden, const __nv_bfloat16* y, int64_t ldy, int64_t rows, int64_t dim,
                       cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= kMaxRows && dim > 0 && ldy >= dim);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(hidden != nullptr && y != nullptr);
  const bool vector = VectorCheck().Width(dim).Width(ldy).Pointer(hidden).Pointer(y).ok;
  return Launch(vector, add_residual_kernel<1>, add_residual_kernel<4>, rows, dim, stream, hidden, y, ldy, dim);
}

CudaStatus SiluMul(const __nv_bfloat16* gate_up, int64_t ld, int64_t rows, int64_t inter, ActivationType out_type,
                   void* out, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(ValidType(out_type));
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= kMaxRows && inter > 0 && ld >= 2 * inter);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(gate_up != nullptr && out != nullptr);
  if (out_type == ActivationType::kBFloat16) {
    auto* ob = static_cast<__nv_bfloat16*>(out);
    const bool vector = VectorCheck().Width(inter).Width(ld).Pointer(gate_up).Pointer(ob).ok;
    return Launch(vector, silu_mul_kernel<1, __nv_bfloat16>, silu_mul_kernel<4, __nv_bfloat16>, rows, inter, stream,
                  gate_up, ld, inter, ob);
  }
  auto* of = static_cast<float*>(out);
  const bool vector = VectorCheck().Width(inter).Width(ld).Pointer(gate_up).Pointer(of).ok;
  return Launch(vector, silu_mul_kernel<1, float>, silu_mul_kernel<4, float>, rows, inter, stream, gate_up, ld,
                inter, of);
}

CudaStatus GatherRows(const float* hidden, int64_t dim, const int32_t* rows, int64_t count, float* out,
                      cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(count >= 0 && count <= kMaxRows && dim > 0);
  if (count == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(hidden != nullptr && rows != nullptr && out != nullptr);
  const bool vector = VectorCheck().Width(dim).Pointer(hidden).Pointer(out).ok;
  return Launch(vector, gather_rows_kernel<1>, gather_rows_kernel<4>, count, dim, stream, hidden, dim, rows, out);
}

}  // namespace apex4::cuda
