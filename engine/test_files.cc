#include "engine/test_files.h"

#include <cstdlib>
#include <filesystem>

namespace apex4 {
namespace {

std::string EnvOrEmpty(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

// A runfiles directory of an external repository: under TEST_SRCDIR in `bazel test`, beside
// the working directory (runfiles/apex4) for binaries run from their runfiles or `bazel run`.
std::string RunfilesDir(const std::string& repository) {
  const std::string srcdir = EnvOrEmpty("TEST_SRCDIR");
  if (!srcdir.empty()) return srcdir + "/" + repository;
  const std::string sibling = "../" + repository;
  return std::filesystem::is_directory(sibling) ? sibling : "";
}

}  // namespace

std::string DefaultModelPath() {
  if (std::string path = EnvOrEmpty("APEX4_MODEL"); !path.empty()) return path;
  for (const std::string& dir : {RunfilesDir("default_model"), std::string("models")}) {
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      if (entry.path().extension() == ".gguf") return entry.path().string();
    }
  }
  return "";
}

std::string SharedDataPath(const std::string& name) {
  if (std::string dir = EnvOrEmpty("APEX4_DATA_DIR"); !dir.empty()) return dir + "/" + name;
  const std::string runfiles = RunfilesDir("shared_data");
  return (runfiles.empty() ? std::string("../shared/data") : runfiles) + "/" + name;
}

std::string HfExportCommand(const std::string& gguf_path, const std::string& directory) {
  return "python3 tools/gguf_export.py hf '" + gguf_path + "' '" + directory + "' && " +
         "python3 -c 'import sys; sys.path.insert(0, \"engine/testdata\"); "
         "import tokenizer_reference as t; t.write_hf_tokenizer(sys.argv[1], sys.argv[2])' '" +
         gguf_path + "' '" + directory + "'";
}

}  // namespace apex4
