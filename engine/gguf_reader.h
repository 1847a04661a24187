// Reads GGUF files (versions 2 and 3, the llama.cpp model format) through a read-only mmap:
// every header field is checked at Open() with a message naming the field, so a truncated or
// corrupt file is refused before anything reads its tensors. Metadata values are decoded on
// request from the mapping; tensor data is exposed in place, never copied.
#ifndef APEX4_ENGINE_GGUF_READER_H_
#define APEX4_ENGINE_GGUF_READER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/ggml_types.h"
#include "engine/mapped_file.h"

namespace apex4 {

// Metadata value types, numbered as in the GGUF specification.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

const char* GgufValueTypeName(GgufValueType type);

struct GgufTensorInfo {
  std::string name;
  // ggml order: dims[0] is the innermost (contiguous) dimension, so a [rows, cols] matrix in
  // row-major terms has dims = {cols, rows}.
  std::vector<int64_t> dims;
  uint32_t type = 0;           // a ggml type id (GgmlType for the ones the engine decodes)
  uint64_t offset = 0;         // from the start of the data section
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;

  int64_t num_elements() const;
  GgmlType ggml_type() const { return static_cast<GgmlType>(type); }
};

// Immutable after Open(); all methods are const and thread-safe.
class GgufReader {
 public:
  // NOT_FOUND when the file cannot be opened; INVALID_ARGUMENT, naming the field and its byte
  // offset, when it is not a well-formed GGUF v2/v3 file.
  static absl::StatusOr<std::unique_ptr<GgufReader>> Open(const std::string& path);

  GgufReader(const GgufReader&) = delete;
  GgufReader& operator=(const GgufReader&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }

  // Metadata. Getters return NOT_FOUND for a missing key and INVALID_ARGUMENT when the stored
  // type does not fit the request (the message names the key and both types).
  bool HasKey(absl::string_view key) const;
  const std::vector<std::string>& keys() const { return keys_; }  // in file order
  absl::StatusOr<GgufValueType> GetType(absl::string_view key) const;
  // Element type of an array value.
  absl::StatusOr<GgufValueType> GetArrayType(absl::string_view key) const;
  absl::StatusOr<int64_t> GetArrayLength(absl::string_view key) const;

  absl::StatusOr<std::string> GetString(absl::string_view key) const;
  // Any integer type (a uint64 above INT64_MAX is refused).
  absl::StatusOr<int64_t> GetInt(absl::string_view key) const;
  // float32 or float64.
  absl::StatusOr<double> GetFloat(absl::string_view key) const;
  absl::StatusOr<bool> GetBool(absl::string_view key) const;
  absl::StatusOr<std::vector<std::string>> GetStringArray(absl::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(absl::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(absl::string_view key) const;

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  // NOT_FOUND for an unknown name.
  absl::StatusOr<const GgufTensorInfo*> FindTensor(absl::string_view name) const;

 private:
  // Where a metadata value lives in the mapping; checked to lie inside it at Open().
  struct Value {
    GgufValueType type;
    GgufValueType element_type;  // arrays only
    uint64_t count;              // arrays only
    const uint8_t* data;         // the value (for arrays: the first element)
  };

  GgufReader() = default;
  absl::Status Parse();
  absl::StatusOr<const Value*> Find(absl::string_view key) const;
  absl::StatusOr<const Value*> FindArray(absl::string_view key, const char* wanted) const;
  absl::Status TypeMismatch(absl::string_view key, const Value& value, const char* wanted) const;

  std::string path_;
  std::unique_ptr<MappedFile> file_;
  const uint8_t* mapping_ = nullptr;  // file_'s bytes
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = 32;
  std::vector<std::string> keys_;
  absl::flat_hash_map<std::string, Value> values_;
  std::vector<GgufTensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_GGUF_READER_H_
