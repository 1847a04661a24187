// Runs the Python scripts under engine/testdata that compute reference answers with independent
// implementations (llama.cpp through llama-cpp-python, Hugging Face tokenizers, jinja2, numpy),
// for tests and benchmarks to compare against.
#ifndef APEX4_ENGINE_PYTHON_REFERENCE_H_
#define APEX4_ENGINE_PYTHON_REFERENCE_H_

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace apex4 {

// A writable folder for outputs: $TEST_TMPDIR under `bazel test`, else /tmp.
std::string TestOutputDir();

// Runs `python3 script args...` from the runfiles root (each argument shell-quoted).
// FAILED_PRECONDITION, naming the command and where its packages come from, when it fails.
absl::Status RunPythonReference(const std::string& script, const std::vector<std::string>& args);

// Parses a JSON file a reference script wrote.
absl::StatusOr<nlohmann::json> ReadReferenceJson(const std::string& path);

}  // namespace apex4

#endif  // APEX4_ENGINE_PYTHON_REFERENCE_H_
