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

// The shell command that exports the GGUF model at `gguf_path` as a Hugging Face directory
// `directory`: FP32 safetensors by tools/gguf_export.py, tokenizer.json by
// engine/testdata/tokenizer_reference.py. Run from the repository root (or Bazel runfiles).
std::string HfExportCommand(const std::string& gguf_path, const std::string& directory);

}  // namespace apex4

#endif  // APEX4_ENGINE_TEST_FILES_H_
