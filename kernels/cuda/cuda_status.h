// Error reporting for the CUDA kernels without Abseil: a failed CUDA call or a rejected
// argument carries the error code, the statement text, file and line.
#ifndef APEX4_KERNELS_CUDA_CUDA_STATUS_H_
#define APEX4_KERNELS_CUDA_CUDA_STATUS_H_

#include <cuda_runtime.h>

namespace apex4::cuda {

struct CudaStatus {
  cudaError_t code = cudaSuccess;
  const char* statement = nullptr;  // the failing call or the violated condition
  const char* file = nullptr;
  int line = 0;

  bool ok() const { return code == cudaSuccess; }
};

inline CudaStatus OkCudaStatus() { return CudaStatus{}; }

}  // namespace apex4::cuda

#define APEX4_CUDA_RETURN_IF_ERROR(stmt)                                         \
  do {                                                                           \
    const cudaError_t apex4_cuda_error_ = (stmt);                                \
    if (apex4_cuda_error_ != cudaSuccess) {                                      \
      return ::apex4::cuda::CudaStatus{apex4_cuda_error_, #stmt, __FILE__, __LINE__}; \
    }                                                                            \
  } while (0)

// Argument checks: an unmet condition returns cudaErrorInvalidValue naming the condition.
#define APEX4_CUDA_CHECK_ARG(cond)                                                      \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      return ::apex4::cuda::CudaStatus{cudaErrorInvalidValue, #cond, __FILE__, __LINE__}; \
    }                                                                                   \
  } while (0)

#define APEX4_CUDA_RETURN_IF_NOT_OK(expr)                   \
  do {                                                      \
    const ::apex4::cuda::CudaStatus apex4_cuda_status_ = (expr); \
    if (!apex4_cuda_status_.ok()) return apex4_cuda_status_;     \
  } while (0)

#endif  // APEX4_KERNELS_CUDA_CUDA_STATUS_H_
