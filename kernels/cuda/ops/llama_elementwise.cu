// One CTA per row (≤ 256 threads, a multiple of 32), each thread striding over the row V elements
// at a time: V = 4 (16-byte float / 8-byte bf16 accesses) when widths, strides and pointers
// allow, else 1. Row reductions: warp shuffles, then one value per warp in shared memory.
// Float arithmetic that must round as the CPU engine's does uses the _rn intrinsics, which nvcc
// never contracts into FMAs.
#include "kernels/cuda/ops/llama_elementwise.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace apex4::cuda {
namespace {

constexpr int kMaxThreads = 256;
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
  __shared__ Value partial[kMaxThreads / 32];
#pragma unroll
  for (int m = 16; m >= 1; m /= 2) v = op(v, __shfl_xor_sync(0xFFFFFFFFu, v, m));
  __syncthreads();  // a previous reduction of this type may still be reading `partial`
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  v = partial[0];
  for (int w = 1; w < int(blockDim.x) / 32; ++w) v = op(v, partial[w]);
  return v;
}

// engine/llama_ops.cc RmsNorm's scale: exact squares summed in double, 1 / sqrt(sum / n + eps) in
// double, rounded once to float.
template <int V, typename T>
__device__ float RmsNormScale(const T* x, int64_t dim, float eps) {
  double sum = 0.0;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    Load<V>(x + i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) sum = fma(double(v[j]), double(v[j]), sum);
  }
  sum = BlockReduce(sum, [](double a, double b) { return a + b; });
  return static_cast<float>(1.0 / sqrt(sum / double(dim) + double(eps)));
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    embed_tokens_kernel(const __nv_bfloat16* table, const int32_t* tokens, int64_t dim, float* hidden) {
  const __nv_bfloat16* src = table + int64_t{tokens[blockIdx.x]} * dim;
  float* dst = hidden + int64_t{blockIdx.x} * dim;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    Load<V>(src + i, v);
    Store<V>(dst + i, v);
  }
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    rmsnorm_bf16_kernel(const float* x, const float* weight, int64_t dim, float eps, __nv_bfloat16* y,
                        int64_t ldy) {
  x += int64_t{blockIdx.x} * dim;
  y += int64_t{blockIdx.x} * ldy;
  const float scale = RmsNormScale<V>(x, dim, eps);
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V], g[V];
    Load<V>(x + i, v);
    Load<V>(weight + i, g);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fmul_rn(__fmul_rn(v[j], scale), g[j]);
    Store<V>(y + i, v);
  }
}

// The (optionally normalized) elements [i, i + V) of a row.
template <int V, typename T>
__device__ __forceinline__ void LoadNormalized(const T* x, const float* weight, float scale, int64_t i,
                                               float (&v)[V]) {
  Load<V>(x + i, v);
  if (weight != nullptr) {
    float g[V];
    Load<V>(weight + i, g);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fmul_rn(__fmul_rn(v[j], scale), g[j]);
  }
}

template <int V, typename T>
__global__ void __launch_bounds__(kMaxThreads)
    quantize_fp8_kernel(const T* x, int64_t ldx, int64_t dim, const float* weight, float eps, __nv_fp8_e4m3* y,
                        float* scales) {
  x += int64_t{blockIdx.x} * ldx;
  y += int64_t{blockIdx.x} * dim;
  const float norm = weight != nullptr ? RmsNormScale<V>(x, dim, eps) : 1.0f;
  float absmax = 0.0f;
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    LoadNormalized<V>(x, weight, norm, i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) absmax = fmaxf(absmax, fabsf(v[j]));
  }
  absmax = BlockReduce(absmax, [](float a, float b) { return fmaxf(a, b); });
  float scale = __fdiv_rn(absmax, kFp8E4m3Max);
  if (!(scale > 0.0f)) scale = 1.0f;  // zero row, or absmax / 448 underflowed
  if (threadIdx.x == 0) scales[blockIdx.x] = scale;
  // The row is read again (from L1 / L2) and normalized again, identically.
  for (int64_t i = int64_t{threadIdx.x} * V; i < dim; i += int64_t{blockDim.x} * V) {
    float v[V];
    LoadNormalized<V>(x, weight, norm, i, v);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = __fdiv_rn(v[j], scale);
    Store<V>(y + i, v);
  }
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    add_residual_kernel(float* hidden, const __nv_bfloat16* y, int64_t ldy, int64_t dim) {
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
  gate_up += int64_t{blockIdx.x} * ld;
  out += int64_t{blockIdx.x} * inter;
  for (int64_t i = int64_t{threadIdx.x} * V; i < inter; i += int64_t{blockDim.x} * V) {
    float g[V], u[V];
    Load<V>(gate_up + i, g);
    Load<V>(gate_up + inter + i, u);
#pragma unroll
    for (int j = 0; j < V; ++j) g[j] = __fmul_rn(__fdiv_rn(g[j], __fadd_rn(1.0f, expf(-g[j]))), u[j]);
    Store<V>(out + i, g);
  }
}

template <int V>
__global__ void __launch_bounds__(kMaxThreads)
    gather_rows_kernel(const float* hidden, int64_t dim, const int32_t* rows, float* out) {
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
int Threads(int64_t width, int v) {
  const int64_t work = (width + v - 1) / v;
  return static_cast<int>(std::clamp<int64_t>((work + 31) / 32 * 32, 32, kMaxThreads));
}

template <typename Kernel1, typename Kernel4, typename... Args>
CudaStatus Launch(bool vector, Kernel1 kernel1, Kernel4 kernel4, int64_t rows, int64_t width, cudaStream_t stream,
                  Args... args) {
  if (vector) {
    kernel4<<<static_cast<unsigned>(rows), Threads(width, 4), 0, stream>>>(args...);
  } else {
    kernel1<<<static_cast<unsigned>(rows), Threads(width, 1), 0, stream>>>(args...);
  }
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return OkCudaStatus();
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
  return Launch(vector, rmsnorm_bf16_kernel<1>, rmsnorm_bf16_kernel<4>, rows, dim, stream, x, weight, dim, eps, y,
                ldy);
}

CudaStatus QuantizeFp8PerToken(const void* x, ActivationType type, int64_t ldx, int64_t rows, int64_t dim,
                               const float* rmsnorm_weight, float eps, __nv_fp8_e4m3* y, float* scales,
                               cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(ValidType(type));
  APEX4_CUDA_CHECK_ARG(rows >= 0 && rows <= kMaxRows && dim > 0 && ldx >= dim);
  if (rows == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && y != nullptr && scales != nullptr);
  if (type == ActivationType::kBFloat16) {
    const auto* xb = static_cast<const __nv_bfloat16*>(x);
    const bool vector = VectorCheck().Width(dim).Width(ldx).Pointer(xb).Pointer(rmsnorm_weight).Pointer(y).ok;
    return Launch(vector, quantize_fp8_kernel<1, __nv_bfloat16>, quantize_fp8_kernel<4, __nv_bfloat16>, rows, dim,
                  stream, xb, ldx, dim, rmsnorm_weight, eps, y, scales);
  }
  const auto* xf = static_cast<const float*>(x);
  const bool vector = VectorCheck().Width(dim).Width(ldx).Pointer(xf).Pointer(rmsnorm_weight).Pointer(y).ok;
  return Launch(vector, quantize_fp8_kernel<1, float>, quantize_fp8_kernel<4, float>, rows, dim, stream, xf, ldx,
                dim, rmsnorm_weight, eps, y, scales);
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
