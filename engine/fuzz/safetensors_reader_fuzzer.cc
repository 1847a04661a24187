// libFuzzer target: SafetensorsReader::Open on arbitrary bytes, then every tensor's lookup and
// FP32 conversion.
#include <cstddef>
#include <cstdint>

#include "engine/fuzz/fuzz_input_file.h"
#include "engine/safetensors_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const apex4::FuzzTempDir* dir = new apex4::FuzzTempDir;  // one per process
  const std::string path = dir->Write("input.safetensors", data, size);
  auto reader = apex4::SafetensorsReader::Open(path);
  if (!reader.ok()) return 0;
  for (const apex4::SafetensorsTensor& tensor : (*reader)->tensors()) {
    auto found = (*reader)->FindTensor(tensor.name);
    if (!found.ok() || *found == nullptr) __builtin_trap();  // every listed tensor is findable
    (void)tensor.num_elements();
    auto values = apex4::SafetensorsToFloat(tensor);
    // A converted tensor has exactly one value per element.
    if (values.ok() && static_cast<int64_t>(values->size()) != tensor.num_elements()) {
      __builtin_trap();
    }
  }
  for (const auto& [key, value] : (*reader)->metadata()) (void)key.size(), (void)value.size();
  return 0;
}
