#include "engine/apex4_test_checkpoint.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/test_files.h"

namespace apex4 {
namespace {

constexpr char kScript[] = "engine/testdata/tiny_apex4_checkpoint.py";

absl::StatusOr<TinyApex4Checkpoint> WriteTinyCheckpoint() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string out = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tiny_apex4");
  const std::string log = out + ".log";
  const std::string command = absl::StrCat(
      "python3 ", kScript, " '", DefaultModelPath(), "' '", SharedDataPath("moby_dick.txt"),
      "' '", SharedDataPath("hellaswag_val_dev1000.txt"), "' '",
      SharedDataPath("wikitext2_valid_tokens.txt"), "' '", out, "' > '", log, "' 2>&1");
  if (std::system(command.c_str()) != 0) {
    std::ifstream output(log);
    std::stringstream text;
    text << output.rdbuf();
    return absl::InternalError(absl::StrCat(command, " failed:\n", text.str()));
  }
  std::ifstream reference_file(out + "/reference.json");
  TinyApex4Checkpoint checkpoint;
  checkpoint.directory = out + "/tiny.apex4";
  checkpoint.atom_directory = out + "/tiny_atom.apex4";
  checkpoint.kv4_directory = out + "/tiny_kv4.apex4";
  checkpoint.reference = nlohmann::json::parse(reference_file, nullptr, false);
  if (checkpoint.reference.is_discarded()) {
    return absl::InternalError(absl::StrCat(out, "/reference.json is not JSON"));
  }
  return checkpoint;
}

}  // namespace

absl::StatusOr<const TinyApex4Checkpoint*> GetTinyApex4Checkpoint() {
  static const auto* const checkpoint =
      new absl::StatusOr<TinyApex4Checkpoint>(WriteTinyCheckpoint());
  if (!checkpoint->ok()) return checkpoint->status();
  return &**checkpoint;
}

}  // namespace apex4
