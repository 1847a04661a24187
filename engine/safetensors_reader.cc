#include "engine/safetensors_reader.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/gguf_dequant.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

constexpr char kMetadataKey[] = "__metadata__";
// The reference implementation refuses headers above 100 MB; so does this one, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Bytes per element of the dtypes the format defines (0: unknown).
int DtypeSize(const std::string& dtype) {
  static const std::map<std::string, int>* const kSizes = new std::map<std::string, int>{
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2},
      {"U16", 2},  {"F16", 2}, {"BF16", 2}, {"I32", 4},    {"U32", 4},     {"F32", 4},
      {"I64", 8},  {"U64", 8}, {"F64", 8}};
  auto it = kSizes->find(dtype);
  return it == kSizes->end() ? 0 : it->second;
}

}  // namespace

int64_t SafetensorsTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsReader>> SafetensorsReader::Open(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<MappedFile>> file = MappedFile::Open(path);
  if (!file.ok()) {
    return absl::Status(file.status().code(),
                        absl::StrCat("safetensors file: ", file.status().message()));
  }
  std::unique_ptr<SafetensorsReader> reader(new SafetensorsReader());
  reader->path_ = path;
  reader->file_ = std::move(*file);
  RETURN_IF_ERROR(reader->Parse());
  return reader;
}

absl::Status SafetensorsReader::Parse() {
  auto error = [this](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors file '", path_, "': ", what));
  };
  const uint64_t size = file_->size();
  if (size < sizeof(uint64_t)) return error("truncated: no 8-byte header length");
  uint64_t header_bytes;
  std::memcpy(&header_bytes, file_->data(), sizeof(header_bytes));
  if (header_bytes > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_bytes, " exceeds the 100 MB limit"));
  }
  if (header_bytes > size - sizeof(uint64_t)) {
    return error(absl::StrCat("truncated: header of ", header_bytes, " bytes, file has ",
                              size - sizeof(uint64_t), " after the length"));
  }
  const char* header_begin = reinterpret_cast<const char*>(file_->data()) + sizeof(uint64_t);
  const nlohmann::json header =
      nlohmann::json::parse(header_begin, header_begin + header_bytes, nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return error("header is not a JSON object");
  }
  const uint8_t* data = file_->data() + sizeof(uint64_t) + header_bytes;
  const uint64_t data_bytes = size - sizeof(uint64_t) - header_bytes;

  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      if (!entry.is_object()) return error("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return error(absl::StrCat("__metadata__ value '", key, "' is not a string"));
        }
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "'");
    if (!entry.is_object()) return error(absl::StrCat(where, " is not an object"));
    SafetensorsTensor tensor;
    tensor.name = name;
    auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string()) {
      return error(absl::StrCat(where, " has no string 'dtype'"));
    }
    tensor.dtype = dtype->get<std::string>();
    const int element_bytes = DtypeSize(tensor.dtype);
    if (element_bytes == 0) {
      return error(absl::StrCat(where, " has unknown dtype '", tensor.dtype, "'"));
    }
    auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array()) {
      return error(absl::StrCat(where, " has no 'shape' array"));
    }
    uint64_t elements = 1;
    for (const nlohmann::json& dim : *shape) {
      if (!dim.is_number_unsigned()) {
        return error(absl::StrCat(where, " shape has a non-integer or negative dimension"));
      }
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / d) {
        return error(absl::StrCat(where, " shape overflows"));
      }
      elements *= d;
      tensor.shape.push_back(static_cast<int64_t>(d));
    }
    if (elements > std::numeric_limits<uint64_t>::max() / element_bytes) {
      return error(absl::StrCat(where, " shape overflows its byte size"));
    }
    auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return error(absl::StrCat(where, " has no 'data_offsets' [begin, end] pair"));
    }
    const uint64_t begin = (*offsets)[0].get<uint64_t>();
    const uint64_t end = (*offsets)[1].get<uint64_t>();
    if (begin > end || end > data_bytes) {
      return error(absl::StrCat(where, " data_offsets [", begin, ", ", end,
                                "] lie outside the ", data_bytes, " data bytes (truncated?)"));
    }
    if (end - begin != elements * element_bytes) {
      return error(absl::StrCat(where, " holds ", end - begin, " bytes, its ", tensor.dtype,
                                " shape needs ", elements * element_bytes));
    }
    tensor.data = data + begin;
    tensor.num_bytes = end - begin;
    tensors_.push_back(std::move(tensor));
  }
  // An empty tensor may share its offset with the next tensor (the safetensors package writes
  // them so): at equal offsets it sorts first, so that it is not taken for an overlap.
  std::sort(tensors_.begin(), tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.data != b.data ? a.data < b.data : a.num_bytes < b.num_bytes;
            });
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (i > 0 && tensors_[i].data < tensors_[i - 1].data + tensors_[i - 1].num_bytes) {
      return error(absl::StrCat("tensors '", tensors_[i - 1].name, "' and '", tensors_[i].name,
                                "' overlap"));
    }
    index_[tensors_[i].name] = i;
  }
  return absl::OkStatus();
}

absl::StatusOr<const SafetensorsTensor*> SafetensorsReader::FindTensor(
    const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("safetensors file '", path_, "' has no tensor '", name, "'"));
  }
  return &tensors_[it->second];
}

absl::StatusOr<std::vector<float>> SafetensorsToFloat(const SafetensorsTensor& tensor) {
  GgmlType type;
  if (tensor.dtype == "F32") {
    type = GgmlType::kF32;
  } else if (tensor.dtype == "F16") {
    type = GgmlType::kF16;
  } else if (tensor.dtype == "BF16") {
    type = GgmlType::kBF16;
  } else {
    return absl::UnimplementedError(absl::StrCat("tensor '", tensor.name, "' has dtype ",
                                                 tensor.dtype, "; supported: F32, F16, BF16"));
  }
  std::vector<float> values(tensor.num_elements());
  RETURN_IF_ERROR(DequantizeToFloat(static_cast<uint32_t>(type), tensor.data,
                                    tensor.num_elements(), values.data()));
  return values;
}

}  // namespace apex4
