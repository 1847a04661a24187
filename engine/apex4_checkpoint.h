// Reader of apex4 W4A4 checkpoints (tools/quantizer/FORMAT.md, version 1): a directory holding
// apex4.json (metadata) and model.safetensors (tensors). Open() verifies everything before any
// weight is used: the format and its version, the model config, every linear layer's variants
// against the config, every tensor's dtype, shape, byte range and sha256 against the metadata,
// and that the safetensors file is not truncated. A checkpoint that fails any
// check is refused with a message naming the file, the tensor or field, and expected vs got.
#ifndef APEX4_ENGINE_APEX4_CHECKPOINT_H_
#define APEX4_ENGINE_APEX4_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/safetensors_reader.h"
#include "kernels/w4a4_format.h"

namespace apex4 {

inline constexpr int kApex4FormatVersion = 1;
inline constexpr char kApex4MetadataFile[] = "apex4.json";
inline constexpr char kApex4TensorFile[] = "model.safetensors";

struct Apex4Source {
  std::string kind;       // "gguf" or "safetensors"
  std::string file;       // base name of the full-precision checkpoint it was made from
  std::string sha256;     // of that file, 64 lowercase hex digits
  std::string tokenizer;  // where the tokenizer lives: "gguf" = the source file
};

struct Apex4ModelConfig {
  std::string architecture;  // "llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rope_theta = 0;
  std::string rope_style;  // "adjacent_pairs"
  double rms_norm_eps = 0;
  int64_t context_length = 0;
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
};

// One stored granularity of a linear layer; it fixes both operands' granularity.
struct Apex4Variant {
  std::string qweight;  // U8 [n, k_padded / 2]
  std::string scales;   // F32 [n, k_padded / group size]
  float act_clip_ratio = 1.0f;
};

// Atom-style INT8 outlier channels (FORMAT.md "Outlier channels").
struct Apex4Outliers {
  std::string channels;  // I32 [c]
  std::string qweight;   // I8 [n, c]
  std::string scales;    // F32 [n, 1]
};

struct Apex4Sensitivity {
  double rel_err_per_channel = 0;
  double rel_err_g128 = 0;
  double per_channel_over_g128 = 0;
};

struct Apex4Linear {
  std::string name;  // "blk.3.ffn_down"
  int64_t n = 0;
  int64_t k = 0;
  int64_t k_padded = 0;
  Granularity configured = Granularity::kGroup128;  // the quantizer's choice for this layer
  std::map<Granularity, Apex4Variant> variants;     // holds `configured`, maybe the other too
  int online_hadamard_block = 0;                    // 0: none
  std::optional<Apex4Outliers> outliers;
  std::optional<Apex4Sensitivity> sensitivity;
};

struct Apex4KvCache {
  int bits = 16;
  float key_clip_ratio = 1.0f;
  float value_clip_ratio = 1.0f;
  int key_online_hadamard_block = 0;  // 0: none
};

struct Apex4Metadata {
  int format_version = 0;
  Apex4Source source;
  Apex4ModelConfig model;
  std::string method;               // "rtn", "atom", "quarot_gptq", ... (for logs)
  std::string default_granularity;  // "per_channel", "g128" or "mixed"
  bool rotated = false;             // a residual rotation is folded into the weights
  Apex4KvCache kv_cache;
  std::vector<Apex4Linear> layers;  // in file order
};

inline constexpr char kGranularityPerChannelName[] = "per_channel";
inline constexpr char kGranularityGroup128Name[] = "g128";
const char* GranularityName(Granularity granularity);

// One tensor of model.safetensors, in the file's read-only mapping.
struct Apex4TensorInfo {
  std::string dtype;  // safetensors spelling: "F32", "U8", "I8", "I32"
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  int64_t size = 0;   // bytes
};

// A verified checkpoint held in memory. Immutable after Open(); thread-safe to read.
class Apex4Checkpoint {
 public:
  // Reads and verifies `directory`/apex4.json and `directory`/model.safetensors.
  static absl::StatusOr<Apex4Checkpoint> Open(const std::string& directory);

  // True when `path` is a directory holding apex4.json, so that a loader can dispatch on it.
  static bool IsCheckpointDirectory(const std::string& path);

  const std::string& directory() const { return directory_; }
  const Apex4Metadata& metadata() const { return metadata_; }
  const std::map<std::string, Apex4TensorInfo>& tensors() const { return tensors_; }

  // Typed views of verified tensors; the shape must be the one given (message otherwise).
  absl::StatusOr<absl::Span<const float>> F32(const std::string& name,
                                              const std::vector<int64_t>& shape) const;
  absl::StatusOr<absl::Span<const uint8_t>> U8(const std::string& name,
                                               const std::vector<int64_t>& shape) const;
  absl::StatusOr<absl::Span<const int8_t>> I8(const std::string& name,
                                              const std::vector<int64_t>& shape) const;
  absl::StatusOr<absl::Span<const int32_t>> I32(const std::string& name,
                                                const std::vector<int64_t>& shape) const;

 private:
  absl::StatusOr<const uint8_t*> Data(const std::string& name, const char* dtype,
                                      const std::vector<int64_t>& shape) const;

  std::string directory_;
  Apex4Metadata metadata_;
  std::map<std::string, Apex4TensorInfo> tensors_;
  std::unique_ptr<SafetensorsReader> file_;  // model.safetensors, mapped
};

// Checks that the checkpoint was made from the file at `source_path` (its sha256 against
// metadata.source.sha256). FAILED_PRECONDITION on a mismatch, naming both hashes.
absl::Status VerifyApex4Source(const Apex4Metadata& metadata, const std::string& source_path);

}  // namespace apex4

#endif  // APEX4_ENGINE_APEX4_CHECKPOINT_H_
