// Where tests and benchmarks find the real model and data: Bazel runfiles of @default_model and
// @shared_data, or the environment variables APEX4_MODEL / APEX4_DATA_DIR when run by hand.
#ifndef APEX4_ENGINE_TEST_FILES_H_
#define APEX4_ENGINE_TEST_FILES_H_

#include <string>

namespace apex4 {

// Path of the default model's GGUF file; empty if it cannot be found.
std::string DefaultModelPath();

// Path of `name` in the shared data folder (../shared/data beside the checkout).
std::string SharedDataPath(const std::string& name);

}  // namespace apex4

#endif  // APEX4_ENGINE_TEST_FILES_H_
