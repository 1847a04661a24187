#include "engine/apex4_checkpoint.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "engine/apex4_test_checkpoint.h"
#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace apex4 {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class Apex4CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tiny = GetTinyApex4Checkpoint();
    ASSERT_TRUE(tiny.ok()) << tiny.status();
    source_ = (*tiny)->directory;
  }

  // A fresh copy of the checkpoint that a test may damage.
  std::string Copy(const std::string& name) {
    const std::string copy = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
    fs::remove_all(copy);
    fs::copy(source_, copy);
    return copy;
  }

  static nlohmann::json ReadMetadata(const std::string& dir) {
    std::ifstream file(dir + "/apex4.json");
    return nlohmann::json::parse(file);
  }
  static void WriteMetadata(const std::string& dir, const nlohmann::json& metadata) {
    std::ofstream(dir + "/apex4.json") << metadata.dump(1);
  }

  std::string source_;
};

TEST_F(Apex4CheckpointTest, OpensTheQuantizersCheckpoint) {
  auto checkpoint = Apex4Checkpoint::Open(source_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const Apex4Metadata& metadata = checkpoint->metadata();
  EXPECT_EQ(metadata.format_version, 1);
  EXPECT_EQ(metadata.method, "quarot_gptq");
  EXPECT_EQ(metadata.default_granularity, "mixed");
  EXPECT_TRUE(metadata.rotated);
  EXPECT_EQ(metadata.model.hidden_size, 192);
  EXPECT_EQ(metadata.model.vocab_size, 49152);
  ASSERT_EQ(metadata.layers.size(), 2u * 7u);
  bool configured_per_channel = false, configured_g128 = false;
  for (const Apex4Linear& layer : metadata.layers) {
    EXPECT_EQ(layer.variants.size(), 2u) << layer.name;
    EXPECT_EQ(layer.k_padded % 128, 0) << layer.name;
    const bool is_down = layer.name.find("ffn_down") != std::string::npos;
    EXPECT_EQ(layer.online_hadamard_block, is_down ? 128 : 0) << layer.name;
    ASSERT_TRUE(layer.sensitivity.has_value()) << layer.name;
    configured_per_channel |= layer.configured == Granularity::kPerChannel;
    configured_g128 |= layer.configured == Granularity::kGroup128;
  }
  EXPECT_TRUE(configured_per_channel && configured_g128) << "a mixed checkpoint mixes";

  // The format promises symmetric codes and zero padding columns; check them in the data.
  const Apex4Linear& q = metadata.layers[0];
  ASSERT_EQ(q.name, "blk.0.attn_q");
  EXPECT_EQ(q.k, 192);
  EXPECT_EQ(q.k_padded, 256);
  auto packed = checkpoint->U8(q.variants.at(Granularity::kGroup128).qweight,
                               {q.n, q.k_padded / 2});
  ASSERT_TRUE(packed.ok()) << packed.status();
  for (int64_t row = 0; row < q.n; ++row) {
    for (int64_t k = 0; k < q.k_padded; ++k) {
      const int code = UnpackInt4((*packed)[row * q.k_padded / 2 + k / 2], k & 1);
      ASSERT_GE(code, -7);
      if (k >= q.k) {
        ASSERT_EQ(code, 0) << "padding column " << k;
      }
    }
  }
  auto wrong_shape = checkpoint->F32("token_embd.weight", {49152, 576});
  EXPECT_THAT(wrong_shape.status().message(), HasSubstr("expected F32 [49152, 576]"));
}

TEST_F(Apex4CheckpointTest, FlippedByteIsASha256Mismatch) {
  const std::string dir = Copy("flipped");
  const std::string path = dir + "/model.safetensors";
  {
    // Where the tensor's bytes are, from the safetensors header: 8-byte length, JSON, data.
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    uint64_t header_bytes = 0;
    file.read(reinterpret_cast<char*>(&header_bytes), sizeof(header_bytes));
    std::string header(header_bytes, '\0');
    file.read(header.data(), header_bytes);
    const auto offsets =
        nlohmann::json::parse(header)["blk.1.ffn_up.qweight.g128"]["data_offsets"];
    const int64_t middle =
        8 + header_bytes + (offsets[0].get<int64_t>() + offsets[1].get<int64_t>()) / 2;
    file.seekg(middle);
    const char byte = static_cast<char>(file.peek() ^ 0x10);
    file.seekp(middle);
    file.put(byte);
  }
  auto checkpoint = Apex4Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(checkpoint.status().message(),
              HasSubstr("tensor blk.1.ffn_up.qweight.g128: sha256 mismatch"));
}

TEST_F(Apex4CheckpointTest, TruncatedFileIsRefused) {
  const std::string dir = Copy("truncated");
  const std::string path = dir + "/model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 1000);
  auto checkpoint = Apex4Checkpoint::Open(dir);
  ASSERT_FALSE(checkpoint.ok());
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("(truncated?)"));

  fs::resize_file(path, 4);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("truncated: no 8-byte header length"));
}

TEST_F(Apex4CheckpointTest, UnknownFormatVersionIsRefused) {
  const std::string dir = Copy("version");
  nlohmann::json metadata = ReadMetadata(dir);
  metadata["format_version"] = 2;
  WriteMetadata(dir, metadata);
  auto checkpoint = Apex4Checkpoint::Open(dir);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(checkpoint.status().message(),
              HasSubstr("format_version 2 is not supported (this build reads 1)"));
}

TEST_F(Apex4CheckpointTest, ListedShapeDifferingFromTheFileIsRefused) {
  const std::string dir = Copy("shape");
  nlohmann::json metadata = ReadMetadata(dir);
  metadata["tensors"]["output_norm.weight"]["shape"] = {193};
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("tensor output_norm.weight: apex4.json says F32 [193], "
                        "model.safetensors holds F32 [192]"));
}

TEST_F(Apex4CheckpointTest, ConfigDisagreeingWithTheLayersIsRefused) {
  const std::string dir = Copy("config");
  nlohmann::json metadata = ReadMetadata(dir);
  metadata["model"]["intermediate_size"] = 512;
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("(blk.0.ffn_gate): model config implies n=512 k=192, got n=384 k=192"));
}

TEST_F(Apex4CheckpointTest, TensorMissingFromTheListIsRefused) {
  const std::string dir = Copy("unlisted");
  nlohmann::json metadata = ReadMetadata(dir);
  metadata["tensors"].erase("blk.0.ffn_down.scales.pc");
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("tensors: does not list blk.0.ffn_down.scales.pc"));
}

TEST_F(Apex4CheckpointTest, BadFieldIsNamed) {
  const std::string dir = Copy("field");
  nlohmann::json metadata = ReadMetadata(dir);
  metadata["layers"][3]["variants"]["g128"]["act_clip_ratio"] = 1.5;
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("layers[3].variants.g128.act_clip_ratio: clip ratio 1.5 outside (0, 1]"));
}

// Sizes beyond any model's are refused before they are used: k = 2^63 - 1 overflowed when
// rounded up to k_padded, num_heads * head_dim overflowed, and num_layers = 10^12 made the layer
// check run out of time and memory (regression inputs in engine/fuzz/testdata/apex4_checkpoint).
TEST_F(Apex4CheckpointTest, OversizedSizesAreRefused) {
  const std::string dir = Copy("oversized");
  const nlohmann::json original = ReadMetadata(dir);
  nlohmann::json metadata = original;
  metadata["layers"][0]["k"] = INT64_MAX;
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("layers[0].k: 9223372036854775807 exceeds the limit of 16777216"));
  metadata = original;
  metadata["model"]["num_heads"] = int64_t{1} << 62;
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("model.num_heads: 4611686018427387904 exceeds the limit of 16777216"));
  metadata = original;
  metadata["model"]["num_layers"] = int64_t{1000000000000};
  WriteMetadata(dir, metadata);
  EXPECT_THAT(Apex4Checkpoint::Open(dir).status().message(),
              HasSubstr("model.num_layers: 1000000000000 exceeds the limit of 4096"));
}

TEST_F(Apex4CheckpointTest, SourceHashIsChecked) {
  auto checkpoint = Apex4Checkpoint::Open(source_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_TRUE(VerifyApex4Source(checkpoint->metadata(), DefaultModelPath()).ok());
  const absl::Status other =
      VerifyApex4Source(checkpoint->metadata(), SharedDataPath("moby_dick.txt"));
  EXPECT_EQ(other.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.message(), HasSubstr("checkpoint was made from SmolLM2-135M-Instruct"));
}

TEST(Apex4Checkpoint, MissingDirectoryIsNotFound) {
  EXPECT_FALSE(Apex4Checkpoint::IsCheckpointDirectory("/nonexistent"));
  EXPECT_EQ(Apex4Checkpoint::Open("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace apex4
