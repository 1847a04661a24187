// libFuzzer target: Apex4Checkpoint::Open on a directory made from the fuzz input. The input is
// apex4.json, optionally followed by kSeparator and the bytes of model.safetensors, so that both
// the metadata validation and the checks of tensors against it are reached.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "engine/apex4_checkpoint.h"
#include "engine/fuzz/fuzz_input_file.h"

namespace {

constexpr std::string_view kSeparator = "\n#model.safetensors#\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const apex4::FuzzTempDir* dir = new apex4::FuzzTempDir;  // one per process
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = input.find(kSeparator);
  const std::string_view json = input.substr(0, split);
  dir->Write(apex4::kApex4MetadataFile, reinterpret_cast<const uint8_t*>(json.data()),
             json.size());
  const std::string tensor_path = dir->path() + "/" + apex4::kApex4TensorFile;
  if (split == std::string_view::npos) {
    std::remove(tensor_path.c_str());
  } else {
    const std::string_view tensors = input.substr(split + kSeparator.size());
    dir->Write(apex4::kApex4TensorFile, reinterpret_cast<const uint8_t*>(tensors.data()),
               tensors.size());
  }
  if (!apex4::Apex4Checkpoint::IsCheckpointDirectory(dir->path())) __builtin_trap();
  auto checkpoint = apex4::Apex4Checkpoint::Open(dir->path());
  // For checking that seeds get through: APEX4_FUZZ_VERBOSE=1 apex4_checkpoint_fuzzer -runs=0 DIR
  static const bool verbose = std::getenv("APEX4_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "Open: %s\n", checkpoint.status().ToString().c_str());
  if (!checkpoint.ok()) return 0;
  // Every verified tensor is readable through its typed view with its own shape.
  for (const auto& [name, info] : checkpoint->tensors()) {
    if (info.dtype == "F32") (void)checkpoint->F32(name, info.shape);
    if (info.dtype == "U8") (void)checkpoint->U8(name, info.shape);
    if (info.dtype == "I8") (void)checkpoint->I8(name, info.shape);
    if (info.dtype == "I32") (void)checkpoint->I32(name, info.shape);
  }
  return 0;
}
