#include "kernels/cuda/fill/random_fill.h"

namespace apex4::cuda {
namespace {

// splitmix64's finaliser: a good 64-bit mix of (seed, index).
__device__ __forceinline__ uint64_t Hash(uint64_t seed, uint64_t index) {
  uint64_t z = seed + index * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// In (0, 1]: never 0, so a scaled value is never 0 either.
__device__ __forceinline__ float Unit(uint64_t bits) {
  return (static_cast<float>(bits >> 40) + 1.0f) * (1.0f / 16777216.0f);
}

template <typename Op>
__global__ void FillKernel(int64_t count, Op op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    op(i);
  }
}

template <typename Op>
CudaStatus Launch(int64_t count, Op op, cudaStream_t stream) {
  APEX4_CUDA_CHECK_ARG(count >= 0);
  if (count == 0) return OkCudaStatus();
  constexpr int kThreads = 256;
  const int64_t blocks = (count + kThreads - 1) / kThreads;
  FillKernel<<<static_cast<unsigned>(blocks < 65536 ? blocks : 65536), kThreads, 0, stream>>>(
      count, op);
  APEX4_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return OkCudaStatus();
}

}  // namespace

CudaStatus FillRandomBf16(__nv_bfloat16* out, int64_t count, uint64_t seed, float amplitude,
                          cudaStream_t stream) {
  return Launch(count, [=] __device__(int64_t i) {
    const uint64_t h = Hash(seed, i);
    const float magnitude = amplitude * Unit(h);
    out[i] = __float2bfloat16((h & 1) ? -magnitude : magnitude);
  }, stream);
}

CudaStatus FillRandomFloat(float* out, int64_t count, uint64_t seed, float low, float high,
                           cudaStream_t stream) {
  return Launch(count, [=] __device__(int64_t i) {
    out[i] = low + (high - low) * (1.0f - Unit(Hash(seed, i)));
  }, stream);
}

CudaStatus FillRandomFp8(__nv_fp8_e4m3* out, int64_t count, uint64_t seed, cudaStream_t stream) {
  return Launch(count, [=] __device__(int64_t i) {
    const uint64_t h = Hash(seed, i);
    // Magnitude codes 1..0x7E: 0x7F is NaN and 0x00 is zero.
    const uint8_t magnitude = static_cast<uint8_t>(1 + (h >> 8) % 0x7E);
    out[i].__x = static_cast<__nv_fp8_storage_t>(magnitude | ((h & 1) << 7));
  }, stream);
}

CudaStatus FillRandomInt4(uint8_t* out, int64_t count_bytes, uint64_t seed, cudaStream_t stream) {
  return Launch(count_bytes, [=] __device__(int64_t i) {
    const uint64_t h = Hash(seed, i);
    auto nibble = [](uint64_t bits) {  // -7..7 without 0
      const int v = 1 + static_cast<int>(bits % 7);
      return ((bits >> 3) & 1) ? -v : v;
    };
    out[i] = static_cast<uint8_t>((nibble(h) & 0xF) | ((nibble(h >> 16) & 0xF) << 4));
  }, stream);
}

}  // namespace apex4::cuda
