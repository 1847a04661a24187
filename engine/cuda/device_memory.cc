#include "engine/cuda/device_memory.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace apex4 {

absl::Status FromCudaStatus(const cuda::CudaStatus& status, absl::string_view what) {
  if (status.ok()) return absl::OkStatus();
  const std::string message =
      absl::StrCat(what, ": ", cudaGetErrorString(status.code), " (",
                   status.statement ? status.statement : "?", " at ",
                   status.file ? status.file : "?", ":", status.line, ")");
  if (status.code == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  if (status.code == cudaErrorInvalidValue) return absl::InvalidArgumentError(message);
  return absl::InternalError(message);
}

absl::Status CudaCall(cudaError_t error, absl::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string message = absl::StrCat(what, ": ", cudaGetErrorString(error));
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

std::string FormatBytes(int64_t bytes) {
  if (bytes >= (int64_t{1} << 30)) return absl::StrFormat("%.2f GiB", bytes / 1073741824.0);
  return absl::StrFormat("%.1f MiB", bytes / 1048576.0);
}

absl::StatusOr<DeviceMemory> DeviceMemory::Allocate(size_t bytes, absl::string_view what) {
  DeviceMemory memory;
  if (bytes == 0) return memory;
  const cudaError_t error = cudaMalloc(&memory.ptr_, bytes);
  if (error != cudaSuccess) {
    cudaGetLastError();  // not sticky: clear it so later calls see their own errors
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    const std::string message = absl::StrCat(
        "allocating ", FormatBytes(bytes), " of GPU memory for ", what, ": ",
        cudaGetErrorString(error), " (", FormatBytes(free_bytes), " free of ",
        FormatBytes(total_bytes), ")");
    if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
    return absl::InternalError(message);
  }
  memory.bytes_ = bytes;
  return memory;
}

DeviceMemory::~DeviceMemory() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceMemory& DeviceMemory::operator=(DeviceMemory&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

absl::StatusOr<DeviceMemory> UploadToDevice(const void* host, size_t bytes,
                                            absl::string_view what) {
  absl::StatusOr<DeviceMemory> memory = DeviceMemory::Allocate(bytes, what);
  if (!memory.ok() || bytes == 0) return memory;
  if (absl::Status status =
          CudaCall(cudaMemcpy(memory->get(), host, bytes, cudaMemcpyHostToDevice),
                   absl::StrCat("copying ", what, " to the GPU"));
      !status.ok()) {
    return status;
  }
  return memory;
}

}  // namespace apex4
