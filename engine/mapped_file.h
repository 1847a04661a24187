// A whole file mapped read-only into memory, for the model readers (GGUF, safetensors): tensors
// are used in place and the OS pages them in on first touch.
#ifndef APEX4_ENGINE_MAPPED_FILE_H_
#define APEX4_ENGINE_MAPPED_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace apex4 {

class MappedFile {
 public:
  // NOT_FOUND when the file cannot be opened; INVALID_ARGUMENT for an empty file.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}

  const uint8_t* data_;
  uint64_t size_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_MAPPED_FILE_H_
