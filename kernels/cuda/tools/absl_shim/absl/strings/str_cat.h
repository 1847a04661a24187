// Minimal stand-in for absl::StrCat (see ../status/status.h for why it exists).
#ifndef APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STR_CAT_H_
#define APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STR_CAT_H_

#include <sstream>
#include <string>

namespace absl {

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

}  // namespace absl

#endif  // APEX4_KERNELS_CUDA_TOOLS_ABSL_SHIM_STR_CAT_H_
