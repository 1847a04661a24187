// Reads Hugging Face safetensors files through a read-only mmap: an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
// Every header field is checked at Open() with a message naming the tensor and the field.
#ifndef APEX4_ENGINE_SAFETENSORS_READER_H_
#define APEX4_ENGINE_SAFETENSORS_READER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/mapped_file.h"

namespace apex4 {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;            // as the header spells it: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;   // row-major, outermost first
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;

  int64_t num_elements() const;
};

// Immutable after Open(); all methods are const and thread-safe.
class SafetensorsReader {
 public:
  // NOT_FOUND when the file cannot be opened; INVALID_ARGUMENT naming the field when it is not
  // a well-formed safetensors file (header length, JSON, dtype, shape, offsets, overlaps).
  static absl::StatusOr<std::unique_ptr<SafetensorsReader>> Open(const std::string& path);

  const std::string& path() const { return path_; }
  // The header's "__metadata__" string map (may be empty).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Sorted by data offset.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // NOT_FOUND for an unknown name.
  absl::StatusOr<const SafetensorsTensor*> FindTensor(const std::string& name) const;

 private:
  SafetensorsReader() = default;
  absl::Status Parse();

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// The tensor as FP32: F32, F16 and BF16 are converted exactly; other dtypes are UNIMPLEMENTED.
absl::StatusOr<std::vector<float>> SafetensorsToFloat(const SafetensorsTensor& tensor);

}  // namespace apex4

#endif  // APEX4_ENGINE_SAFETENSORS_READER_H_
