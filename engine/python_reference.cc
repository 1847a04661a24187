#include "engine/python_reference.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

// 'text' for the shell, with embedded single quotes closed, escaped and reopened.
std::string ShellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

}  // namespace

std::string TestOutputDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

absl::Status RunPythonReference(const std::string& script, const std::vector<std::string>& args) {
  std::string command = "python3 " + ShellQuote(script);
  for (const std::string& arg : args) absl::StrAppend(&command, " ", ShellQuote(arg));
  if (std::system(command.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(command, " failed; it needs the packages of tools/requirements.txt ",
                     "(python3 -m pip install -r tools/requirements.txt)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> ReadReferenceJson(const std::string& path) {
  std::ifstream file(path);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  nlohmann::json parsed = nlohmann::json::parse(file, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  return parsed;
}

}  // namespace apex4
