#include "engine/gguf_reader.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/mapped_file.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxTensorDims = 4;           // GGML_MAX_DIMS
constexpr char kAlignmentKey[] = "general.alignment";

// Byte size of a fixed-size value type, 0 for strings and arrays, -1 for unknown ids.
int ScalarSize(uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return -1;
}

bool IsIntegerType(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

template <typename T>
T Load(const uint8_t* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// Decodes one integer element of `type` at p; the caller has checked IsIntegerType.
absl::StatusOr<int64_t> LoadInt(GgufValueType type, const uint8_t* p) {
  switch (type) {
    case GgufValueType::kUint8: return Load<uint8_t>(p);
    case GgufValueType::kInt8: return Load<int8_t>(p);
    case GgufValueType::kUint16: return Load<uint16_t>(p);
    case GgufValueType::kInt16: return Load<int16_t>(p);
    case GgufValueType::kUint32: return Load<uint32_t>(p);
    case GgufValueType::kInt32: return Load<int32_t>(p);
    case GgufValueType::kInt64: return Load<int64_t>(p);
    case GgufValueType::kUint64: {
      const uint64_t value = Load<uint64_t>(p);
      if (value > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::OutOfRangeError(absl::StrCat("uint64 value ", value, " exceeds int64"));
      }
      return static_cast<int64_t>(value);
    }
    default:
      return absl::InternalError("not an integer type");
  }
}

double LoadFloat(GgufValueType type, const uint8_t* p) {
  return type == GgufValueType::kFloat32 ? Load<float>(p) : Load<double>(p);
}

// Bounds-checked reading of the header; every failure names what was being read and where.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* begin, uint64_t size)
      : path_(path), begin_(begin), size_(size) {}

  uint64_t offset() const { return offset_; }
  uint64_t remaining() const { return size_ - offset_; }
  const uint8_t* here() const { return begin_ + offset_; }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF file '", path_, "': ", what, " (at byte ", offset_, ")"));
  }

  absl::Status Skip(uint64_t bytes, absl::string_view what) {
    if (bytes > remaining()) {
      return Error(absl::StrCat("truncated: ", what, " needs ", bytes, " bytes, ", remaining(),
                                " left"));
    }
    offset_ += bytes;
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    const uint8_t* p = here();
    RETURN_IF_ERROR(Skip(sizeof(T), what));
    return Load<T>(p);
  }

  absl::StatusOr<absl::string_view> ReadString(absl::string_view what) {
    ASSIGN_OR_RETURN(const uint64_t length, Read<uint64_t>(absl::StrCat(what, " length")));
    const uint8_t* p = here();
    RETURN_IF_ERROR(Skip(length, what));
    return absl::string_view(reinterpret_cast<const char*>(p), length);
  }

 private:
  const std::string& path_;
  const uint8_t* begin_;
  uint64_t size_;
  uint64_t offset_ = 0;
};

// Steps over one metadata value of `type`, checking that it lies inside the file.
absl::Status SkipValue(Cursor& cursor, uint32_t type, const std::string& key) {
  const int size = ScalarSize(type);
  if (size < 0) {
    return cursor.Error(absl::StrCat("metadata key '", key, "' has unknown value type ", type));
  }
  if (size > 0) return cursor.Skip(size, absl::StrCat("value of '", key, "'"));
  if (static_cast<GgufValueType>(type) == GgufValueType::kString) {
    return cursor.ReadString(absl::StrCat("string value of '", key, "'")).status();
  }
  ASSIGN_OR_RETURN(const uint32_t element_type,
                   cursor.Read<uint32_t>(absl::StrCat("array type of '", key, "'")));
  ASSIGN_OR_RETURN(const uint64_t count,
                   cursor.Read<uint64_t>(absl::StrCat("array length of '", key, "'")));
  const int element_size = ScalarSize(element_type);
  if (element_size < 0) {
    return cursor.Error(
        absl::StrCat("array '", key, "' has unknown element type ", element_type));
  }
  if (static_cast<GgufValueType>(element_type) == GgufValueType::kArray) {
    return cursor.Error(absl::StrCat("array '", key, "' nests arrays, which GGUF readers refuse"));
  }
  if (element_size > 0) {
    if (count > cursor.remaining() / element_size) {
      return cursor.Error(absl::StrCat("truncated: array '", key, "' of ", count, " ",
                                       GgufValueTypeName(static_cast<GgufValueType>(element_type)),
                                       " runs past the end of the file"));
    }
    return cursor.Skip(count * element_size, key);
  }
  // Strings: each takes at least its 8-byte length, which bounds a corrupt count early.
  if (count > cursor.remaining() / sizeof(uint64_t)) {
    return cursor.Error(absl::StrCat("truncated: string array '", key, "' of ", count,
                                     " entries runs past the end of the file"));
  }
  for (uint64_t i = 0; i < count; ++i) {
    RETURN_IF_ERROR(cursor.ReadString(absl::StrCat("entry ", i, " of '", key, "'")).status());
  }
  return absl::OkStatus();
}

uint64_t AlignUp(uint64_t offset, uint64_t alignment) {
  return (offset + alignment - 1) / alignment * alignment;
}

}  // namespace

const char* GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8: return "uint8";
    case GgufValueType::kInt8: return "int8";
    case GgufValueType::kUint16: return "uint16";
    case GgufValueType::kInt16: return "int16";
    case GgufValueType::kUint32: return "uint32";
    case GgufValueType::kInt32: return "int32";
    case GgufValueType::kFloat32: return "float32";
    case GgufValueType::kBool: return "bool";
    case GgufValueType::kString: return "string";
    case GgufValueType::kArray: return "array";
    case GgufValueType::kUint64: return "uint64";
    case GgufValueType::kInt64: return "int64";
    case GgufValueType::kFloat64: return "float64";
  }
  return "unknown";
}

int64_t GgufTensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<GgufReader>> GgufReader::Open(const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("GGUF file: ", file.status().message()));
  }
  std::unique_ptr<GgufReader> reader(new GgufReader());
  reader->path_ = path;
  reader->file_ = std::move(*file);
  reader->mapping_ = reader->file_->data();
  reader->size_ = reader->file_->size();
  RETURN_IF_ERROR(reader->Parse());
  return reader;
}

absl::Status GgufReader::Parse() {
  Cursor cursor(path_, mapping_, size_);
  ASSIGN_OR_RETURN(const uint32_t magic, cursor.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "'%s' is not a GGUF file: magic is 0x%08x, expected 0x%08x (\"GGUF\")", path_, magic,
        kGgufMagic));
  }
  ASSIGN_OR_RETURN(version_, cursor.Read<uint32_t>("version"));
  if (version_ == 1) {
    return cursor.Error("GGUF version 1 (32-bit counts) is not supported; re-convert the model");
  }
  if (version_ != 2 && version_ != 3) {
    // A big-endian file shows its version byte-swapped.
    return cursor.Error(absl::StrCat("unsupported GGUF version ", version_,
                                     (version_ & 0xFFFF) == 0 ? " (a big-endian file?)" : "",
                                     "; expected 2 or 3"));
  }
  ASSIGN_OR_RETURN(const uint64_t tensor_count, cursor.Read<uint64_t>("tensor count"));
  ASSIGN_OR_RETURN(const uint64_t kv_count, cursor.Read<uint64_t>("metadata key/value count"));
  // Smallest encodings: a key/value is 8 (key length) + 4 (type) + 1 bytes, a tensor info
  // 8 (name length) + 4 (dims) + 8 (one dim) + 4 (type) + 8 (offset) bytes.
  if (kv_count > cursor.remaining() / 13) {
    return cursor.Error(absl::StrCat("metadata key/value count ", kv_count,
                                     " cannot fit in the rest of the file"));
  }
  if (tensor_count > cursor.remaining() / 32) {
    return cursor.Error(
        absl::StrCat("tensor count ", tensor_count, " cannot fit in the rest of the file"));
  }

  for (uint64_t i = 0; i < kv_count; ++i) {
    ASSIGN_OR_RETURN(const absl::string_view key_view,
                     cursor.ReadString(absl::StrCat("key of metadata entry ", i)));
    std::string key(key_view);
    ASSIGN_OR_RETURN(const uint32_t type,
                     cursor.Read<uint32_t>(absl::StrCat("value type of '", key, "'")));
    Value value{static_cast<GgufValueType>(type), GgufValueType::kUint8, 0, cursor.here()};
    if (value.type == GgufValueType::kArray && cursor.remaining() >= 12) {
      value.element_type = static_cast<GgufValueType>(Load<uint32_t>(value.data));
      value.count = Load<uint64_t>(value.data + 4);
      value.data += 12;
    }
    RETURN_IF_ERROR(SkipValue(cursor, type, key));
    if (values_.contains(key)) {
      return cursor.Error(absl::StrCat("duplicate metadata key '", key, "'"));
    }
    keys_.push_back(key);
    values_.emplace(std::move(key), value);
  }

  if (HasKey(kAlignmentKey)) {
    const Value& value = values_.at(kAlignmentKey);
    if (value.type != GgufValueType::kUint32) {
      return TypeMismatch(kAlignmentKey, value, "uint32");
    }
    alignment_ = Load<uint32_t>(value.data);
    if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF file '", path_, "': general.alignment ", alignment_, " is not a power of two"));
    }
  }

  tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    ASSIGN_OR_RETURN(const absl::string_view name,
                     cursor.ReadString(absl::StrCat("name of tensor ", i)));
    info.name = std::string(name);
    ASSIGN_OR_RETURN(const uint32_t num_dims,
                     cursor.Read<uint32_t>(absl::StrCat("dimension count of '", info.name, "'")));
    if (num_dims == 0 || num_dims > kMaxTensorDims) {
      return cursor.Error(absl::StrCat("tensor '", info.name, "' has ", num_dims,
                                       " dimensions; expected 1 to ", kMaxTensorDims));
    }
    int64_t num_elements = 1;
    for (uint32_t d = 0; d < num_dims; ++d) {
      ASSIGN_OR_RETURN(const uint64_t dim, cursor.Read<uint64_t>(absl::StrCat(
                                               "dimension ", d, " of '", info.name, "'")));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() /
                                      std::max<int64_t>(num_elements, 1))) {
        return cursor.Error(absl::StrCat("tensor '", info.name, "' dimension ", d, " (", dim,
                                         ") makes its element count overflow"));
      }
      info.dims.push_back(static_cast<int64_t>(dim));
      num_elements *= static_cast<int64_t>(dim);
    }
    ASSIGN_OR_RETURN(info.type,
                     cursor.Read<uint32_t>(absl::StrCat("type of '", info.name, "'")));
    const GgmlTypeTraits* traits = GgmlTypeTraitsFor(info.type);
    if (traits == nullptr) {
      return cursor.Error(
          absl::StrCat("tensor '", info.name, "' has unknown ggml type ", info.type));
    }
    if (info.dims[0] % traits->block_size != 0) {
      return cursor.Error(absl::StrCat("tensor '", info.name, "' row of ", info.dims[0],
                                       " elements is not a whole number of ", traits->name,
                                       " blocks of ", traits->block_size));
    }
    ASSIGN_OR_RETURN(info.offset,
                     cursor.Read<uint64_t>(absl::StrCat("data offset of '", info.name, "'")));
    if (info.offset % alignment_ != 0) {
      return cursor.Error(absl::StrCat("tensor '", info.name, "' data offset ", info.offset,
                                       " is not a multiple of the alignment ", alignment_));
    }
    const uint64_t num_blocks = static_cast<uint64_t>(num_elements / traits->block_size);
    if (num_blocks > std::numeric_limits<uint64_t>::max() /
                         static_cast<uint64_t>(traits->block_bytes)) {
      return cursor.Error(absl::StrCat("tensor '", info.name, "' of ", num_elements, " ",
                                       traits->name, " elements has a byte size that overflows"));
    }
    info.num_bytes = num_blocks * static_cast<uint64_t>(traits->block_bytes);
    if (tensor_index_.contains(info.name)) {
      return cursor.Error(absl::StrCat("duplicate tensor name '", info.name, "'"));
    }
    tensor_index_.emplace(info.name, tensors_.size());
    tensors_.push_back(std::move(info));
  }

  const uint64_t data_start = AlignUp(cursor.offset(), alignment_);
  if (data_start > size_ && !tensors_.empty()) {
    return cursor.Error("truncated: the file ends before its tensor data section");
  }
  for (GgufTensorInfo& info : tensors_) {
    const uint64_t available = size_ > data_start ? size_ - data_start : 0;
    if (info.offset > available || info.num_bytes > available - info.offset) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GGUF file '", path_, "': truncated: data of tensor '", info.name, "' (", info.num_bytes,
          " bytes at data offset ", info.offset, ") runs past the end of the file (",
          available, " data bytes)"));
    }
    info.data = mapping_ + data_start + info.offset;
  }
  return absl::OkStatus();
}

bool GgufReader::HasKey(absl::string_view key) const { return values_.contains(key); }

absl::StatusOr<const GgufReader::Value*> GgufReader::Find(absl::string_view key) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    return absl::NotFoundError(
        absl::StrCat("GGUF file '", path_, "' has no metadata key '", key, "'"));
  }
  return &it->second;
}

absl::Status GgufReader::TypeMismatch(absl::string_view key, const Value& value,
                                      const char* wanted) const {
  std::string stored = GgufValueTypeName(value.type);
  if (value.type == GgufValueType::kArray) {
    absl::StrAppend(&stored, " of ", GgufValueTypeName(value.element_type));
  }
  return absl::InvalidArgumentError(absl::StrCat("GGUF metadata key '", key, "' in '", path_,
                                                 "' is ", stored, ", expected ", wanted));
}

absl::StatusOr<GgufValueType> GgufReader::GetType(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  return value->type;
}

absl::StatusOr<const GgufReader::Value*> GgufReader::FindArray(absl::string_view key,
                                                               const char* wanted) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  if (value->type != GgufValueType::kArray) return TypeMismatch(key, *value, wanted);
  return value;
}

absl::StatusOr<GgufValueType> GgufReader::GetArrayType(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, FindArray(key, "an array"));
  return value->element_type;
}

absl::StatusOr<int64_t> GgufReader::GetArrayLength(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, FindArray(key, "an array"));
  return static_cast<int64_t>(value->count);
}

absl::StatusOr<std::string> GgufReader::GetString(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  if (value->type != GgufValueType::kString) return TypeMismatch(key, *value, "string");
  const uint64_t length = Load<uint64_t>(value->data);
  return std::string(reinterpret_cast<const char*>(value->data) + sizeof(uint64_t), length);
}

absl::StatusOr<int64_t> GgufReader::GetInt(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  if (!IsIntegerType(value->type)) return TypeMismatch(key, *value, "an integer");
  absl::StatusOr<int64_t> result = LoadInt(value->type, value->data);
  if (!result.ok()) {
    return absl::OutOfRangeError(absl::StrCat("GGUF metadata key '", key, "': ",
                                              result.status().message()));
  }
  return result;
}

absl::StatusOr<double> GgufReader::GetFloat(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  if (value->type != GgufValueType::kFloat32 && value->type != GgufValueType::kFloat64) {
    return TypeMismatch(key, *value, "float32 or float64");
  }
  return LoadFloat(value->type, value->data);
}

absl::StatusOr<bool> GgufReader::GetBool(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, Find(key));
  if (value->type != GgufValueType::kBool) return TypeMismatch(key, *value, "bool");
  return *value->data != 0;
}

absl::StatusOr<std::vector<std::string>> GgufReader::GetStringArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, FindArray(key, "array of string"));
  if (value->element_type != GgufValueType::kString) {
    return TypeMismatch(key, *value, "array of string");
  }
  std::vector<std::string> strings;
  strings.reserve(value->count);
  const uint8_t* p = value->data;
  for (uint64_t i = 0; i < value->count; ++i) {
    const uint64_t length = Load<uint64_t>(p);
    strings.emplace_back(reinterpret_cast<const char*>(p) + sizeof(uint64_t), length);
    p += sizeof(uint64_t) + length;
  }
  return strings;
}

absl::StatusOr<std::vector<int64_t>> GgufReader::GetIntArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, FindArray(key, "array of integers"));
  if (!IsIntegerType(value->element_type)) {
    return TypeMismatch(key, *value, "array of integers");
  }
  const int element_size = ScalarSize(static_cast<uint32_t>(value->element_type));
  std::vector<int64_t> ints;
  ints.reserve(value->count);
  for (uint64_t i = 0; i < value->count; ++i) {
    absl::StatusOr<int64_t> element =
        LoadInt(value->element_type, value->data + i * element_size);
    if (!element.ok()) {
      return absl::OutOfRangeError(absl::StrCat("GGUF metadata key '", key, "' entry ", i, ": ",
                                                element.status().message()));
    }
    ints.push_back(*element);
  }
  return ints;
}

absl::StatusOr<std::vector<double>> GgufReader::GetFloatArray(absl::string_view key) const {
  ASSIGN_OR_RETURN(const Value* value, FindArray(key, "array of floats"));
  if (value->element_type != GgufValueType::kFloat32 &&
      value->element_type != GgufValueType::kFloat64) {
    return TypeMismatch(key, *value, "array of floats");
  }
  const int element_size = ScalarSize(static_cast<uint32_t>(value->element_type));
  std::vector<double> floats;
  floats.reserve(value->count);
  for (uint64_t i = 0; i < value->count; ++i) {
    floats.push_back(LoadFloat(value->element_type, value->data + i * element_size));
  }
  return floats;
}

absl::StatusOr<const GgufTensorInfo*> GgufReader::FindTensor(absl::string_view name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("GGUF file '", path_, "' has no tensor '", name, "'"));
  }
  return &tensors_[it->second];
}

}  // namespace apex4
