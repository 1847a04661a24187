// The CUDA engine's bridge from the kernels' CudaStatus to absl::Status, and owned device
// allocations whose failure says what did not fit and how much memory was free.
#ifndef APEX4_ENGINE_CUDA_DEVICE_MEMORY_H_
#define APEX4_ENGINE_CUDA_DEVICE_MEMORY_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/cuda/cuda_status.h"

namespace apex4 {

// INTERNAL (RESOURCE_EXHAUSTED for out-of-memory) naming `what`, the failed call and its place.
absl::Status FromCudaStatus(const cuda::CudaStatus& status, absl::string_view what);

// Wraps a CUDA runtime call: `RETURN_IF_ERROR(CudaCall(cudaMemcpy(...), "copying X"))`.
absl::Status CudaCall(cudaError_t error, absl::string_view what);

// A cudaMalloc'd region; moves, never copies.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  // RESOURCE_EXHAUSTED naming `what`, the size and the device's free memory when it does not fit.
  static absl::StatusOr<DeviceMemory> Allocate(size_t bytes, absl::string_view what);
  ~DeviceMemory();
  DeviceMemory(DeviceMemory&& other) noexcept
      : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;

  void* get() const { return ptr_; }
  template <typename T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Allocates and copies `bytes` from host memory (synchronously: start-up only).
absl::StatusOr<DeviceMemory> UploadToDevice(const void* host, size_t bytes, absl::string_view what);

// "12.3 GiB" for messages.
std::string FormatBytes(int64_t bytes);

}  // namespace apex4

#endif  // APEX4_ENGINE_CUDA_DEVICE_MEMORY_H_
