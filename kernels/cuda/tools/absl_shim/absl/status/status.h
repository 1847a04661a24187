// Minimal stand-in for absl::Status, only for building the GPU test and benchmark with plain
// nvcc on machines without Abseil (tools/build_standalone.sh). Bazel builds use real Abseil.
#ifndef APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STATUS_H_
#define APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STATUS_H_

#include <string>
#include <utility>

namespace absl {

class Status {
 public:
  Status() = default;
  explicit Status(std::string message) : ok_(false), message_(std::move(message)) {}
  bool ok() const { return ok_; }
  const std::string& message() const { return message_; }

 private:
  bool ok_ = true;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgumentError(std::string message) { return Status(std::move(message)); }

}  // namespace absl

#endif  // APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STATUS_H_
