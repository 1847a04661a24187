// What the GPU tests of kernels/cuda share: failure counting, CUDA checks, a device buffer and
// bf16 bit conversions. The tests are plain binaries (no GoogleTest on the GPU machine): they
// print PASS/FAIL lines, exit non-zero on a failure, and print "no CUDA device: skipped" and exit
// 0 without a GPU, so CI (no GPU) builds and runs them.
#ifndef APEX4_KERNELS_CUDA_TESTING_GPU_TEST_UTIL_H_
#define APEX4_KERNELS_CUDA_TESTING_GPU_TEST_UTIL_H_

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_status.h"

namespace apex4::cuda::testing {

inline int g_failures = 0;

// Number of failed checks so far; the summary line; the exit status.
inline int FinishTests() {
  if (g_failures == 0) {
    std::printf("ALL TESTS PASSED\n");
  } else {
    std::printf("%d CHECKS FAILED\n", g_failures);
  }
  return g_failures == 0 ? 0 : 1;
}

// False, after printing "no CUDA device: skipped", when this machine has no usable GPU.
inline bool HaveCudaDevice() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return false;
  }
  return true;
}

}  // namespace apex4::cuda::testing

#define EXPECT_TRUE_MSG(cond, ...)                                   \
  do {                                                               \
    if (!(cond)) {                                                   \
      ++::apex4::cuda::testing::g_failures;                          \
      std::printf("FAIL %s:%d: ", __FILE__, __LINE__);               \
      std::printf(__VA_ARGS__);                                      \
      std::printf("\n");                                             \
    }                                                                \
  } while (0)

#define ASSERT_CUDA_OK(expr)                                                                  \
  do {                                                                                        \
    const ::apex4::cuda::CudaStatus s_ = (expr);                                              \
    if (!s_.ok()) {                                                                           \
      std::printf("FATAL %s (%s at %s:%d)\n", cudaGetErrorString(s_.code), s_.statement,      \
                  s_.file, s_.line);                                                          \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)
#define ASSERT_CUDA(call) \
  ASSERT_CUDA_OK(([&] { APEX4_CUDA_RETURN_IF_ERROR(call); return ::apex4::cuda::OkCudaStatus(); })())

namespace apex4::cuda::testing {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t count) : count_(count) {
    ASSERT_CUDA(cudaMalloc(&ptr_, std::max<size_t>(count, 1) * sizeof(T)));
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
    ASSERT_CUDA(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  size_t size() const { return count_; }
  std::vector<T> ToHost() const {
    std::vector<T> host(count_);
    ASSERT_CUDA(cudaMemcpy(host.data(), ptr_, count_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void Fill(uint8_t byte) const { ASSERT_CUDA(cudaMemset(ptr_, byte, count_ * sizeof(T))); }

 private:
  T* ptr_ = nullptr;
  size_t count_;
};

// Prints the device and a fresh seed (a failure can be replayed with it) and returns a generator
// seeded with it. Call after HaveCudaDevice().
inline std::mt19937 DeviceAndSeededRng() {
  cudaDeviceProp prop;
  ASSERT_CUDA(cudaGetDeviceProperties(&prop, 0));
  const uint32_t seed = std::random_device{}();
  std::printf("device: %s (sm_%d%d), seed %u\n", prop.name, prop.major, prop.minor, seed);
  return std::mt19937(seed);
}

inline uint16_t Bf16Bits(__nv_bfloat16 v) {
  uint16_t bits;
  std::memcpy(&bits, &v, 2);
  return bits;
}
inline float Bf16ToFloat(__nv_bfloat16 v) {
  const uint32_t wide = uint32_t{Bf16Bits(v)} << 16;
  float f;
  std::memcpy(&f, &wide, 4);
  return f;
}
inline __nv_bfloat16 FloatToBf16Truncate(float f) {  // test inputs only: any bf16 value will do
  uint32_t wide;
  std::memcpy(&wide, &f, 4);
  __nv_bfloat16_raw raw;
  raw.x = static_cast<uint16_t>(wide >> 16);
  return __nv_bfloat16(raw);
}

}  // namespace apex4::cuda::testing

#endif  // APEX4_KERNELS_CUDA_TESTING_GPU_TEST_UTIL_H_
