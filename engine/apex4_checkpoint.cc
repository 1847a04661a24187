#include "engine/apex4_checkpoint.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/status_macros.h"
#include "nlohmann/json.hpp"

namespace apex4 {
namespace {

using Json = nlohmann::json;

// Limits on sizes read from apex4.json, far above any real model's (2^24 = 16M).
constexpr int64_t kMaxSize = int64_t{1} << 24;
constexpr int64_t kMaxLayers = 4096;

constexpr char kLinearKinds[][12] = {"attn_q",   "attn_k", "attn_v", "attn_output",
                                     "ffn_gate", "ffn_up", "ffn_down"};

absl::Status MetadataError(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(kApex4MetadataFile, ": ", field, ": ", what));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Required JSON fields with messages that name the field's path and what was found instead.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}

  absl::StatusOr<const Json*> Field(const char* key, Json::value_t kind,
                                    const char* kind_name) const {
    const std::string field = Path(key);
    if (!object_.is_object()) return MetadataError(path_, "expected an object");
    auto it = object_.find(key);
    if (it == object_.end()) return MetadataError(field, "missing");
    const bool numeric_ok = kind == Json::value_t::number_float && it->is_number();
    const bool integer_ok = kind == Json::value_t::number_integer && it->is_number_integer();
    if (!numeric_ok && !integer_ok && it->type() != kind) {
      return MetadataError(field, absl::StrCat("expected ", kind_name, ", got ", it->dump()));
    }
    return &*it;
  }

  absl::Status Read(const char* key, std::string* out) const {
    auto field = Field(key, Json::value_t::string, "a string");
    if (!field.ok()) return field.status();
    *out = (*field)->get<std::string>();
    return absl::OkStatus();
  }
  absl::Status Read(const char* key, int64_t* out) const {
    auto field = Field(key, Json::value_t::number_integer, "an integer");
    if (!field.ok()) return field.status();
    *out = (*field)->get<int64_t>();
    return absl::OkStatus();
  }
  absl::Status Read(const char* key, double* out) const {
    auto field = Field(key, Json::value_t::number_float, "a number");
    if (!field.ok()) return field.status();
    *out = (*field)->get<double>();
    return absl::OkStatus();
  }
  absl::Status ReadPositive(const char* key, int64_t* out) const {
    if (auto s = Read(key, out); !s.ok()) return s;
    if (*out <= 0) return MetadataError(Path(key), absl::StrCat("must be positive, got ", *out));
    return absl::OkStatus();
  }
  // A positive size of at most `max`: bounded so that sums and products of sizes cannot overflow
  // and a corrupt count cannot make the checks below loop or allocate for ever.
  absl::Status ReadSize(const char* key, int64_t* out, int64_t max = kMaxSize) const {
    if (auto s = ReadPositive(key, out); !s.ok()) return s;
    if (*out > max) {
      return MetadataError(Path(key), absl::StrCat(*out, " exceeds the limit of ", max));
    }
    return absl::OkStatus();
  }
  // A ratio in (0, 1], as the activation quantizer accepts.
  absl::Status ReadClipRatio(const char* key, float* out) const {
    double value = 0;
    if (auto s = Read(key, &value); !s.ok()) return s;
    if (!(value > 0.0 && value <= 1.0)) {
      return MetadataError(Path(key), absl::StrCat("clip ratio ", value, " outside (0, 1]"));
    }
    *out = static_cast<float>(value);
    return absl::OkStatus();
  }

  bool Has(const char* key) const { return object_.contains(key) && !object_[key].is_null(); }
  std::string Path(const char* key) const { return path_.empty() ? key : path_ + "." + key; }
  const Json& object() const { return object_; }

 private:
  const Json& object_;
  std::string path_;
};

absl::StatusOr<Granularity> ParseGranularity(const std::string& field, const std::string& name) {
  if (name == kGranularityPerChannelName) return Granularity::kPerChannel;
  if (name == kGranularityGroup128Name) return Granularity::kGroup128;
  return MetadataError(field, absl::StrCat("unknown granularity '", name, "' (expected '",
                                           kGranularityPerChannelName, "' or '",
                                           kGranularityGroup128Name, "')"));
}

// {"block": B} or null: B, or 0 for null. B must be a power of two.
absl::StatusOr<int> ParseHadamardBlock(const FieldReader& parent, const char* key) {
  if (!parent.Has(key)) return 0;
  FieldReader hadamard(parent.object()[key], parent.Path(key));
  int64_t block = 0;
  RETURN_IF_ERROR(hadamard.ReadSize("block", &block));
  if ((block & (block - 1)) != 0) {
    return MetadataError(hadamard.Path("block"),
                         absl::StrCat("Hadamard block ", block, " is not a power of two"));
  }
  return static_cast<int>(block);
}

absl::Status ParseSource(const FieldReader& root, Apex4Source* source) {
  auto field = root.Field("source", Json::value_t::object, "an object");
  if (!field.ok()) return field.status();
  FieldReader reader(**field, "source");
  RETURN_IF_ERROR(reader.Read("kind", &source->kind));
  RETURN_IF_ERROR(reader.Read("file", &source->file));
  RETURN_IF_ERROR(reader.Read("sha256", &source->sha256));
  RETURN_IF_ERROR(reader.Read("tokenizer", &source->tokenizer));
  if (source->sha256.size() != 64 ||
      source->sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return MetadataError("source.sha256", absl::StrCat("expected 64 lowercase hex digits, got '",
                                                       source->sha256, "'"));
  }
  return absl::OkStatus();
}

absl::Status ParseModel(const FieldReader& root, Apex4ModelConfig* model) {
  auto field = root.Field("model", Json::value_t::object, "an object");
  if (!field.ok()) return field.status();
  FieldReader reader(**field, "model");
  RETURN_IF_ERROR(reader.Read("architecture", &model->architecture));
  if (model->architecture != "llama") {
    return MetadataError("model.architecture",
                         absl::StrCat("'", model->architecture, "' is not supported (llama)"));
  }
  RETURN_IF_ERROR(reader.ReadSize("vocab_size", &model->vocab_size));
  RETURN_IF_ERROR(reader.ReadSize("hidden_size", &model->hidden_size));
  RETURN_IF_ERROR(reader.ReadSize("intermediate_size", &model->intermediate_size));
  RETURN_IF_ERROR(reader.ReadSize("num_layers", &model->num_layers, kMaxLayers));
  RETURN_IF_ERROR(reader.ReadSize("num_heads", &model->num_heads));
  RETURN_IF_ERROR(reader.ReadSize("num_kv_heads", &model->num_kv_heads));
  RETURN_IF_ERROR(reader.ReadSize("head_dim", &model->head_dim));
  RETURN_IF_ERROR(reader.Read("rope_theta", &model->rope_theta));
  RETURN_IF_ERROR(reader.Read("rope_style", &model->rope_style));
  RETURN_IF_ERROR(reader.Read("rms_norm_eps", &model->rms_norm_eps));
  RETURN_IF_ERROR(reader.ReadSize("context_length", &model->context_length));
  RETURN_IF_ERROR(reader.Read("bos_token_id", &model->bos_token_id));
  RETURN_IF_ERROR(reader.Read("eos_token_id", &model->eos_token_id));
  if (model->rope_style != "adjacent_pairs") {
    return MetadataError("model.rope_style",
                         absl::StrCat("'", model->rope_style,
                                      "' is not supported (adjacent_pairs)"));
  }
  if (model->num_heads % model->num_kv_heads != 0) {
    return MetadataError("model.num_kv_heads",
                         absl::StrCat(model->num_kv_heads, " does not divide num_heads ",
                                      model->num_heads));
  }
  if (model->rope_theta <= 0 || model->rms_norm_eps <= 0) {
    return MetadataError("model", "rope_theta and rms_norm_eps must be positive");
  }
  return absl::OkStatus();
}

absl::Status ParseQuantization(const FieldReader& root, Apex4Metadata* metadata) {
  auto field = root.Field("quantization", Json::value_t::object, "an object");
  if (!field.ok()) return field.status();
  FieldReader reader(**field, "quantization");
  RETURN_IF_ERROR(reader.Read("method", &metadata->method));
  RETURN_IF_ERROR(reader.Read("default_granularity", &metadata->default_granularity));
  for (const char* bits_key : {"weight_bits", "act_bits"}) {
    int64_t bits = 0;
    RETURN_IF_ERROR(reader.Read(bits_key, &bits));
    if (bits != 4) {
      return MetadataError(reader.Path(bits_key), absl::StrCat("expected 4, got ", bits));
    }
  }
  metadata->rotated = reader.Has("rotation");
  if (!reader.Has("kv_cache")) return absl::OkStatus();
  FieldReader kv(reader.object()["kv_cache"], reader.Path("kv_cache"));
  int64_t bits = 0;
  RETURN_IF_ERROR(kv.Read("bits", &bits));
  if (bits != 4 && bits != 16) {
    return MetadataError(kv.Path("bits"), absl::StrCat("expected 4 or 16, got ", bits));
  }
  metadata->kv_cache.bits = static_cast<int>(bits);
  if (bits == 4) {
    RETURN_IF_ERROR(kv.ReadClipRatio("key_clip_ratio", &metadata->kv_cache.key_clip_ratio));
    RETURN_IF_ERROR(
        kv.ReadClipRatio("value_clip_ratio", &metadata->kv_cache.value_clip_ratio));
    auto block = ParseHadamardBlock(kv, "key_online_hadamard");
    if (!block.ok()) return block.status();
    metadata->kv_cache.key_online_hadamard_block = *block;
  }
  return absl::OkStatus();
}

absl::StatusOr<Apex4Linear> ParseLinear(const Json& entry, const std::string& path) {
  FieldReader reader(entry, path);
  Apex4Linear linear;
  RETURN_IF_ERROR(reader.Read("name", &linear.name));
  RETURN_IF_ERROR(reader.ReadSize("n", &linear.n));
  RETURN_IF_ERROR(reader.ReadSize("k", &linear.k));
  RETURN_IF_ERROR(reader.ReadSize("k_padded", &linear.k_padded));
  const int64_t expected_padded = (linear.k + kPackAlignK - 1) / kPackAlignK * kPackAlignK;
  if (linear.k_padded != expected_padded) {
    return MetadataError(reader.Path("k_padded"),
                         absl::StrCat("expected ", expected_padded, " (k=", linear.k,
                                      " rounded up to ", kPackAlignK, "), got ", linear.k_padded));
  }
  std::string granularity;
  RETURN_IF_ERROR(reader.Read("granularity", &granularity));
  auto configured = ParseGranularity(reader.Path("granularity"), granularity);
  if (!configured.ok()) return configured.status();
  linear.configured = *configured;

  auto variants = reader.Field("variants", Json::value_t::object, "an object");
  if (!variants.ok()) return variants.status();
  for (const auto& [name, variant_json] : (*variants)->items()) {
    const std::string variant_path = reader.Path("variants") + "." + name;
    auto variant_granularity = ParseGranularity(variant_path, name);
    if (!variant_granularity.ok()) return variant_granularity.status();
    FieldReader variant_reader(variant_json, variant_path);
    Apex4Variant variant;
    RETURN_IF_ERROR(variant_reader.Read("qweight", &variant.qweight));
    RETURN_IF_ERROR(variant_reader.Read("scales", &variant.scales));
    RETURN_IF_ERROR(variant_reader.ReadClipRatio("act_clip_ratio", &variant.act_clip_ratio));
    linear.variants[*variant_granularity] = std::move(variant);
  }
  if (linear.variants.count(linear.configured) == 0) {
    return MetadataError(reader.Path("variants"),
                         absl::StrCat("lacks the configured granularity '", granularity, "'"));
  }
  auto hadamard = ParseHadamardBlock(reader, "online_hadamard");
  if (!hadamard.ok()) return hadamard.status();
  linear.online_hadamard_block = *hadamard;
  if (linear.online_hadamard_block > 0 && linear.k_padded % linear.online_hadamard_block != 0) {
    return MetadataError(reader.Path("online_hadamard"),
                         absl::StrCat("block ", linear.online_hadamard_block,
                                      " does not divide k_padded ", linear.k_padded));
  }
  if (reader.Has("outliers")) {
    FieldReader outliers_reader(entry["outliers"], reader.Path("outliers"));
    Apex4Outliers outliers;
    RETURN_IF_ERROR(outliers_reader.Read("channels", &outliers.channels));
    RETURN_IF_ERROR(outliers_reader.Read("qweight", &outliers.qweight));
    RETURN_IF_ERROR(outliers_reader.Read("scales", &outliers.scales));
    linear.outliers = std::move(outliers);
  }
  if (reader.Has("sensitivity")) {
    FieldReader sensitivity_reader(entry["sensitivity"], reader.Path("sensitivity"));
    Apex4Sensitivity sensitivity;
    RETURN_IF_ERROR(
        sensitivity_reader.Read("rel_err_per_channel", &sensitivity.rel_err_per_channel));
    RETURN_IF_ERROR(sensitivity_reader.Read("rel_err_g128", &sensitivity.rel_err_g128));
    RETURN_IF_ERROR(
        sensitivity_reader.Read("per_channel_over_g128", &sensitivity.per_channel_over_g128));
    linear.sensitivity = sensitivity;
  }
  return linear;
}

struct LinearShape {
  int64_t n = 0;
  int64_t k = 0;
};

// Output rows and input width of a Llama projection, from the model config.
absl::StatusOr<LinearShape> ExpectedLinearShape(const Apex4ModelConfig& model,
                                                const std::string& kind) {
  const int64_t q_width = model.num_heads * model.head_dim;
  const int64_t kv_width = model.num_kv_heads * model.head_dim;
  if (kind == "attn_q") return LinearShape{q_width, model.hidden_size};
  if (kind == "attn_k" || kind == "attn_v") return LinearShape{kv_width, model.hidden_size};
  if (kind == "attn_output") return LinearShape{model.hidden_size, q_width};
  if (kind == "ffn_gate" || kind == "ffn_up") {
    return LinearShape{model.intermediate_size, model.hidden_size};
  }
  if (kind == "ffn_down") return LinearShape{model.hidden_size, model.intermediate_size};
  return absl::InvalidArgumentError(absl::StrCat("unknown projection '", kind, "'"));
}

// Every block has each projection exactly once, with the shape the config implies.
absl::Status CheckLayersAgainstModel(const Apex4Metadata& metadata) {
  const Apex4ModelConfig& model = metadata.model;
  std::set<std::string> expected;
  for (int64_t block = 0; block < model.num_layers; ++block) {
    for (const char* kind : kLinearKinds) expected.insert(absl::StrCat("blk.", block, ".", kind));
  }
  std::set<std::string> seen;
  for (size_t i = 0; i < metadata.layers.size(); ++i) {
    const Apex4Linear& linear = metadata.layers[i];
    const std::string path = absl::StrCat("layers[", i, "] (", linear.name, ")");
    if (expected.count(linear.name) == 0) {
      return MetadataError(path, absl::StrCat("not a projection of a ", model.num_layers,
                                              "-block llama"));
    }
    if (!seen.insert(linear.name).second) return MetadataError(path, "listed twice");
    const std::string kind = linear.name.substr(linear.name.rfind('.') + 1);
    ASSIGN_OR_RETURN(const LinearShape expected_shape, ExpectedLinearShape(model, kind));
    if (linear.n != expected_shape.n || linear.k != expected_shape.k) {
      return MetadataError(path, absl::StrCat("model config implies n=", expected_shape.n,
                                              " k=", expected_shape.k, ", got n=", linear.n,
                                              " k=", linear.k));
    }
  }
  for (const std::string& name : expected) {
    if (seen.count(name) == 0) return MetadataError("layers", absl::StrCat("missing ", name));
  }
  return absl::OkStatus();
}

absl::StatusOr<Apex4Metadata> ParseMetadata(const Json& root_json) {
  FieldReader root(root_json, "");
  Apex4Metadata metadata;
  std::string format;
  RETURN_IF_ERROR(root.Read("format", &format));
  if (format != "apex4") {
    return MetadataError("format", absl::StrCat("expected 'apex4', got '", format, "'"));
  }
  int64_t version = 0;
  RETURN_IF_ERROR(root.Read("format_version", &version));
  if (version != kApex4FormatVersion) {
    return absl::UnimplementedError(absl::StrCat(
        kApex4MetadataFile, ": format_version ", version, " is not supported (this build reads ",
        kApex4FormatVersion, ")"));
  }
  metadata.format_version = static_cast<int>(version);
  RETURN_IF_ERROR(ParseSource(root, &metadata.source));
  RETURN_IF_ERROR(ParseModel(root, &metadata.model));
  RETURN_IF_ERROR(ParseQuantization(root, &metadata));
  auto layers = root.Field("layers", Json::value_t::array, "an array");
  if (!layers.ok()) return layers.status();
  for (size_t i = 0; i < (*layers)->size(); ++i) {
    auto linear = ParseLinear((**layers)[i], absl::StrCat("layers[", i, "]"));
    if (!linear.ok()) return linear.status();
    if (linear->outliers.has_value() && linear->online_hadamard_block > 0) {
      // The outlier channels would index the rotated input, which only the layer itself sees.
      return absl::UnimplementedError(absl::StrCat(
          kApex4MetadataFile, ": ", linear->name,
          " has both INT8 outlier channels and an online Hadamard, which no engine runs"));
    }
    metadata.layers.push_back(*std::move(linear));
  }
  RETURN_IF_ERROR(CheckLayersAgainstModel(metadata));
  return metadata;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream contents;
  contents << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return contents.str();
}

std::string HexDigest(const unsigned char* digest, unsigned int length) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 0xF]);
  }
  return hex;
}

std::string Sha256Hex(absl::Span<const uint8_t> bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr);
  return HexDigest(digest, length);
}

int64_t DtypeSize(const std::string& dtype) {
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "U8" || dtype == "I8") return 1;
  return 0;
}

absl::StatusOr<std::vector<int64_t>> ParseShape(const Json& json, const std::string& field,
                                                const std::string& file) {
  if (!json.is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", field, ": expected an array"));
  }
  std::vector<int64_t> shape;
  for (const Json& dim : json) {
    if (!dim.is_number_integer() || dim.get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": ", field, ": bad dimension ", dim.dump()));
    }
    shape.push_back(dim.get<int64_t>());
  }
  return shape;
}

// The tensors of model.safetensors (whose container SafetensorsReader checks), limited to the
// dtypes apex4 uses and aligned for their element type.
absl::StatusOr<std::map<std::string, Apex4TensorInfo>> CheckSafetensors(
    const SafetensorsReader& file) {
  const auto format = file.metadata().find("format");
  const auto version = file.metadata().find("format_version");
  if (format == file.metadata().end() || format->second != "apex4" ||
      version == file.metadata().end() ||
      version->second != std::to_string(kApex4FormatVersion)) {
    return absl::InvalidArgumentError(absl::StrCat(
        kApex4TensorFile, ": __metadata__ must say format apex4, format_version ",
        kApex4FormatVersion));
  }
  std::map<std::string, Apex4TensorInfo> tensors;
  for (const SafetensorsTensor& tensor : file.tensors()) {
    const int64_t element_bytes = DtypeSize(tensor.dtype);
    if (element_bytes == 0) {
      return absl::InvalidArgumentError(absl::StrCat(kApex4TensorFile, ": tensor ", tensor.name,
                                                     ": dtype ", tensor.dtype,
                                                     " is not used by apex4"));
    }
    if (reinterpret_cast<uintptr_t>(tensor.data) % element_bytes != 0) {
      return absl::InvalidArgumentError(absl::StrCat(kApex4TensorFile, ": tensor ", tensor.name,
                                                     " is not aligned to its dtype"));
    }
    tensors[tensor.name] = {tensor.dtype, tensor.shape, tensor.data,
                            static_cast<int64_t>(tensor.num_bytes)};
  }
  return tensors;
}

// apex4.json's tensor list names exactly the tensors of the file, with the same dtype and
// shape, and each tensor's bytes hash to the listed sha256.
absl::Status CheckTensorList(const Json& listed,
                             const std::map<std::string, Apex4TensorInfo>& stored) {
  if (!listed.is_object()) return MetadataError("tensors", "expected an object");
  for (const auto& [name, info] : stored) {
    if (!listed.contains(name)) {
      return MetadataError("tensors", absl::StrCat("does not list ", name, ", which ",
                                                   kApex4TensorFile, " holds"));
    }
  }
  for (const auto& [name, entry] : listed.items()) {
    const std::string field = "tensors." + name;
    auto it = stored.find(name);
    if (it == stored.end()) {
      return absl::DataLossError(absl::StrCat(kApex4MetadataFile, " lists tensor ", name,
                                              ", which ", kApex4TensorFile, " lacks"));
    }
    const Apex4TensorInfo& info = it->second;
    FieldReader reader(entry, field);
    std::string dtype, sha256;
    RETURN_IF_ERROR(reader.Read("dtype", &dtype));
    RETURN_IF_ERROR(reader.Read("sha256", &sha256));
    ASSIGN_OR_RETURN(auto shape, reader.Field("shape", Json::value_t::array, "an array"));
    ASSIGN_OR_RETURN(std::vector<int64_t> listed_shape,
                     ParseShape(*shape, field + ".shape", kApex4MetadataFile));
    if (dtype != info.dtype || listed_shape != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor ", name, ": ", kApex4MetadataFile, " says ", dtype, " ",
          ShapeString(listed_shape), ", ", kApex4TensorFile, " holds ", info.dtype, " ",
          ShapeString(info.shape)));
    }
    const std::string actual = Sha256Hex(absl::MakeConstSpan(info.data, info.size));
    if (actual != sha256) {
      return absl::DataLossError(absl::StrCat("tensor ", name, ": sha256 mismatch: ",
                                              kApex4MetadataFile, " expects ", sha256,
                                              ", the data hashes to ", actual,
                                              " (corrupt file)"));
    }
  }
  return absl::OkStatus();
}

absl::Status ExpectTensor(const std::map<std::string, Apex4TensorInfo>& tensors,
                          const std::string& name, const char* dtype,
                          const std::vector<int64_t>& shape, const std::string& why) {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat(why, ": tensor ", name, " is not in the checkpoint"));
  }
  if (it->second.dtype != dtype || it->second.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        why, ": tensor ", name, ": expected ", dtype, " ", ShapeString(shape), ", got ",
        it->second.dtype, " ", ShapeString(it->second.shape)));
  }
  return absl::OkStatus();
}

// Each tensor the model config and the layer list imply exists with the implied dtype and shape.
absl::Status CheckModelTensors(const Apex4Metadata& metadata,
                               const std::map<std::string, Apex4TensorInfo>& tensors) {
  const Apex4ModelConfig& model = metadata.model;
  const std::string config = "model config";
  for (const char* name : {"token_embd.weight", "output.weight"}) {
    RETURN_IF_ERROR(
        ExpectTensor(tensors, name, "F32", {model.vocab_size, model.hidden_size}, config));
  }
  RETURN_IF_ERROR(ExpectTensor(tensors, "output_norm.weight", "F32", {model.hidden_size}, config));
  for (int64_t block = 0; block < model.num_layers; ++block) {
    for (const char* norm : {"attn_norm", "ffn_norm"}) {
      RETURN_IF_ERROR(ExpectTensor(tensors, absl::StrCat("blk.", block, ".", norm, ".weight"),
                                   "F32", {model.hidden_size}, config));
    }
  }
  for (const Apex4Linear& linear : metadata.layers) {
    for (const auto& [granularity, variant] : linear.variants) {
      const std::string why = absl::StrCat(linear.name, " ", GranularityName(granularity));
      const int64_t groups = linear.k_padded / GroupSizeFor(granularity, linear.k_padded);
      RETURN_IF_ERROR(ExpectTensor(tensors, variant.qweight, "U8",
                                   {linear.n, PackedRowBytes(linear.k_padded)}, why));
      RETURN_IF_ERROR(ExpectTensor(tensors, variant.scales, "F32", {linear.n, groups}, why));
    }
    if (linear.outliers.has_value()) {
      const std::string why = linear.name + " outliers";
      auto channels = tensors.find(linear.outliers->channels);
      if (channels == tensors.end() || channels->second.shape.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            why, ": tensor ", linear.outliers->channels, " is not a vector in the checkpoint"));
      }
      const int64_t count = channels->second.shape[0];
      RETURN_IF_ERROR(ExpectTensor(tensors, linear.outliers->channels, "I32", {count}, why));
      RETURN_IF_ERROR(
          ExpectTensor(tensors, linear.outliers->qweight, "I8", {linear.n, count}, why));
      RETURN_IF_ERROR(ExpectTensor(tensors, linear.outliers->scales, "F32", {linear.n, 1}, why));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> Sha256OfFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                   &EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (file) {
    file.read(buffer.data(), buffer.size());
    EVP_DigestUpdate(context.get(), buffer.data(), file.gcount());
  }
  if (file.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  return HexDigest(digest, length);
}

}  // namespace

const char* GranularityName(Granularity granularity) {
  return granularity == Granularity::kPerChannel ? kGranularityPerChannelName
                                                 : kGranularityGroup128Name;
}

bool Apex4Checkpoint::IsCheckpointDirectory(const std::string& path) {
  struct stat info;
  return stat((path + "/" + kApex4MetadataFile).c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

absl::StatusOr<Apex4Checkpoint> Apex4Checkpoint::Open(const std::string& directory) {
  Apex4Checkpoint checkpoint;
  checkpoint.directory_ = directory;
  ASSIGN_OR_RETURN(const std::string metadata_text,
                   ReadFile(directory + "/" + kApex4MetadataFile));
  const Json metadata_json = Json::parse(metadata_text, nullptr, /*allow_exceptions=*/false);
  if (metadata_json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(kApex4MetadataFile, ": not valid JSON"));
  }
  ASSIGN_OR_RETURN(checkpoint.metadata_, ParseMetadata(metadata_json));
  if (!metadata_json.contains("tensors")) return MetadataError("tensors", "missing");

  ASSIGN_OR_RETURN(checkpoint.file_,
                   SafetensorsReader::Open(directory + "/" + kApex4TensorFile));
  ASSIGN_OR_RETURN(checkpoint.tensors_, CheckSafetensors(*checkpoint.file_));
  RETURN_IF_ERROR(CheckTensorList(metadata_json["tensors"], checkpoint.tensors_));
  RETURN_IF_ERROR(CheckModelTensors(checkpoint.metadata_, checkpoint.tensors_));
  return checkpoint;
}

absl::StatusOr<const uint8_t*> Apex4Checkpoint::Data(const std::string& name, const char* dtype,
                                                     const std::vector<int64_t>& shape) const {
  RETURN_IF_ERROR(ExpectTensor(tensors_, name, dtype, shape, directory_));
  return tensors_.at(name).data;
}

absl::StatusOr<absl::Span<const float>> Apex4Checkpoint::F32(
    const std::string& name, const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(const uint8_t* data, Data(name, "F32", shape));
  return absl::MakeConstSpan(reinterpret_cast<const float*>(data), tensors_.at(name).size / 4);
}

absl::StatusOr<absl::Span<const uint8_t>> Apex4Checkpoint::U8(
    const std::string& name, const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(const uint8_t* data, Data(name, "U8", shape));
  return absl::MakeConstSpan(data, tensors_.at(name).size);
}

absl::StatusOr<absl::Span<const int8_t>> Apex4Checkpoint::I8(
    const std::string& name, const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(const uint8_t* data, Data(name, "I8", shape));
  return absl::MakeConstSpan(reinterpret_cast<const int8_t*>(data), tensors_.at(name).size);
}

absl::StatusOr<absl::Span<const int32_t>> Apex4Checkpoint::I32(
    const std::string& name, const std::vector<int64_t>& shape) const {
  ASSIGN_OR_RETURN(const uint8_t* data, Data(name, "I32", shape));
  return absl::MakeConstSpan(reinterpret_cast<const int32_t*>(data), tensors_.at(name).size / 4);
}

absl::Status VerifyApex4Source(const Apex4Metadata& metadata, const std::string& source_path) {
  ASSIGN_OR_RETURN(const std::string actual, Sha256OfFile(source_path));
  if (actual != metadata.source.sha256) {
    return absl::FailedPreconditionError(absl::StrCat(
        "checkpoint was made from ", metadata.source.file, " with sha256 ",
        metadata.source.sha256, ", but ", source_path, " hashes to ", actual));
  }
  return absl::OkStatus();
}

}  // namespace apex4
