#include "engine/gguf_reader.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/test_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using ::testing::HasSubstr;

// Expected values below were read from the same file with the gguf Python package (gguf-py).
constexpr int kSmolLmKeys = 33;
constexpr int kSmolLmTensors = 272;
constexpr int kSmolLmVocab = 49152;
constexpr int kSmolLmMerges = 48900;
constexpr uint64_t kSmolLmFileBytes = 98362432;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string WriteTempFile(const std::string& name, const std::string& bytes) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// Little-endian GGUF bytes, written by hand from the specification.
class GgufBytes {
 public:
  GgufBytes(uint32_t version, uint64_t tensors, uint64_t kvs) {
    bytes_ = "GGUF";
    Put<uint32_t>(version);
    Put<uint64_t>(tensors);
    Put<uint64_t>(kvs);
  }
  template <typename T>
  GgufBytes& Put(T value) {
    bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
    return *this;
  }
  GgufBytes& String(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_ += s;
    return *this;
  }
  GgufBytes& Key(const std::string& key, GgufValueType type) {
    String(key);
    return Put<uint32_t>(static_cast<uint32_t>(type));
  }
  GgufBytes& PadTo(size_t alignment) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

class SmolLmGgufTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = DefaultModelPath();
    ASSERT_FALSE(path_.empty()) << "default model not found (run tools/setup.sh)";
    auto reader = GgufReader::Open(path_);
    ASSERT_TRUE(reader.ok()) << reader.status();
    reader_ = std::move(*reader);
  }
  std::string path_;
  std::unique_ptr<GgufReader> reader_;
};

TEST_F(SmolLmGgufTest, ReadsHeaderAndMetadata) {
  EXPECT_EQ(reader_->version(), 3u);
  EXPECT_EQ(reader_->alignment(), 32u);
  EXPECT_EQ(reader_->keys().size(), kSmolLmKeys);
  EXPECT_EQ(reader_->keys().front(), "general.architecture");
  EXPECT_EQ(*reader_->GetString("general.architecture"), "llama");
  EXPECT_EQ(*reader_->GetString("tokenizer.ggml.pre"), "smollm");
  EXPECT_EQ(*reader_->GetInt("llama.block_count"), 30);
  EXPECT_EQ(*reader_->GetInt("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(*reader_->GetInt("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(*reader_->GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(*reader_->GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(*reader_->GetBool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_THAT(*reader_->GetString("tokenizer.chat_template"),
              ::testing::StartsWith("{% for message in messages %}"));
}

TEST_F(SmolLmGgufTest, ReadsTokenizerArrays) {
  auto tokens = reader_->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_EQ(tokens->size(), kSmolLmVocab);
  EXPECT_EQ((*tokens)[0], "<|endoftext|>");
  EXPECT_EQ((*tokens)[1], "<|im_start|>");
  EXPECT_EQ(tokens->back(), "ectable");

  auto merges = reader_->GetStringArray("tokenizer.ggml.merges");
  ASSERT_TRUE(merges.ok()) << merges.status();
  ASSERT_EQ(merges->size(), kSmolLmMerges);
  EXPECT_EQ((*merges)[0], "\xC4\xA0 t");  // "Ġ t"
  EXPECT_EQ((*merges)[2], "i n");

  auto types = reader_->GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(types.ok()) << types.status();
  ASSERT_EQ(types->size(), kSmolLmVocab);
  EXPECT_EQ((*types)[0], 3);   // control
  EXPECT_EQ((*types)[16], 3);
  EXPECT_EQ((*types)[17], 1);  // normal
  EXPECT_EQ(*reader_->GetArrayType("tokenizer.ggml.token_type"), GgufValueType::kInt32);
  EXPECT_EQ(*reader_->GetArrayLength("tokenizer.ggml.merges"), kSmolLmMerges);
}

TEST_F(SmolLmGgufTest, ReadsTensorInfosAndData) {
  ASSERT_EQ(reader_->tensors().size(), kSmolLmTensors);
  auto embedding = reader_->FindTensor("token_embd.weight");
  ASSERT_TRUE(embedding.ok()) << embedding.status();
  EXPECT_EQ((*embedding)->dims, (std::vector<int64_t>{576, kSmolLmVocab}));
  EXPECT_EQ((*embedding)->ggml_type(), GgmlType::kQ8_0);
  EXPECT_EQ((*embedding)->num_bytes, 576u * kSmolLmVocab / 32 * 34);

  auto k_proj = reader_->FindTensor("blk.0.attn_k.weight");
  ASSERT_TRUE(k_proj.ok());
  EXPECT_EQ((*k_proj)->dims, (std::vector<int64_t>{576, 192}));
  EXPECT_EQ((*k_proj)->ggml_type(), GgmlType::kQ4_1);

  auto norm = reader_->FindTensor("blk.0.attn_norm.weight");
  ASSERT_TRUE(norm.ok());
  ASSERT_EQ((*norm)->ggml_type(), GgmlType::kF32);
  float first[4];
  std::memcpy(first, (*norm)->data, sizeof(first));
  EXPECT_FLOAT_EQ(first[0], 0.01397705f);
  EXPECT_FLOAT_EQ(first[1], 0.02380371f);
  EXPECT_FLOAT_EQ(first[2], -0.01977539f);
  EXPECT_FLOAT_EQ(first[3], -0.03027344f);
}

TEST_F(SmolLmGgufTest, GettersNameKeyAndTypesOnMismatch) {
  auto as_string = reader_->GetString("llama.block_count");
  EXPECT_EQ(as_string.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(as_string.status().message()),
              AllOf(HasSubstr("llama.block_count"), HasSubstr("uint32")));

  auto as_strings = reader_->GetStringArray("tokenizer.ggml.token_type");
  EXPECT_THAT(std::string(as_strings.status().message()), HasSubstr("array of int32"));

  auto missing = reader_->GetInt("llama.no_such_key");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("llama.no_such_key"));

  EXPECT_EQ(reader_->FindTensor("blk.99.attn_q.weight").status().code(),
            absl::StatusCode::kNotFound);
}

// Opens a modified copy of the real model and expects a refusal mentioning `expected`.
class CorruptGgufTest : public SmolLmGgufTest {
 protected:
  void ExpectRefused(const std::string& bytes, const std::string& expected) {
    const std::string path = WriteTempFile("corrupt.gguf", bytes);
    auto reader = GgufReader::Open(path);
    ASSERT_FALSE(reader.ok());
    EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(reader.status().message()), HasSubstr(expected));
  }
  std::string Original() {
    std::string bytes = ReadFile(path_);
    EXPECT_EQ(bytes.size(), kSmolLmFileBytes);
    return bytes;
  }
};

TEST_F(CorruptGgufTest, RefusesTruncatedCopies) {
  const std::string original = Original();
  ExpectRefused(original.substr(0, 10), "truncated: tensor count");
  // Too short for even the length prefixes of the 49152 token strings: refused up front.
  ExpectRefused(original.substr(0, 200000),
                "string array 'tokenizer.ggml.tokens' of 49152 entries runs past the end");
  // Inside the token strings: the message names the entry and the array.
  ExpectRefused(original.substr(0, 600000), "of 'tokenizer.ggml.tokens' needs");
  // One byte short: the last tensor's data runs past the end.
  ExpectRefused(original.substr(0, original.size() - 1), "data of tensor 'output_norm.weight'");
}

TEST_F(CorruptGgufTest, RefusesBadHeaderFields) {
  const std::string original = Original();
  std::string bad_magic = original;
  bad_magic[0] = 'X';
  ExpectRefused(bad_magic, "is not a GGUF file");

  std::string version_one = original;
  version_one[4] = 1;
  ExpectRefused(version_one, "GGUF version 1");

  std::string big_endian = original;
  std::memcpy(&big_endian[4], "\0\0\0\3", 4);
  ExpectRefused(big_endian, "big-endian");

  std::string huge_kv_count = original;
  huge_kv_count[16 + 7] = 0x10;
  ExpectRefused(huge_kv_count, "metadata key/value count");

  // First key: 8-byte length at 24, "general.architecture" (20 bytes), then its value type.
  std::string bad_value_type = original;
  bad_value_type[24 + 8 + 20] = 77;
  ExpectRefused(bad_value_type, "'general.architecture' has unknown value type 77");
}

TEST(GgufReaderTest, RefusesMissingAndEmptyFiles) {
  auto missing = GgufReader::Open("/nonexistent/model.gguf");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  auto empty = GgufReader::Open(WriteTempFile("empty.gguf", ""));
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("is empty"));
}

TEST(GgufReaderTest, ReadsEveryValueTypeOfAVersion2File) {
  GgufBytes file(/*version=*/2, /*tensors=*/1, /*kvs=*/10);
  file.Key("u8", GgufValueType::kUint8).Put<uint8_t>(200);
  file.Key("i16", GgufValueType::kInt16).Put<int16_t>(-300);
  file.Key("u64", GgufValueType::kUint64).Put<uint64_t>(1ull << 40);
  file.Key("too_big", GgufValueType::kUint64).Put<uint64_t>(~0ull);
  file.Key("f64", GgufValueType::kFloat64).Put<double>(0.125);
  file.Key("yes", GgufValueType::kBool).Put<uint8_t>(1);
  file.Key("name", GgufValueType::kString).String("tiny");
  file.Key("ints", GgufValueType::kArray)
      .Put<uint32_t>(static_cast<uint32_t>(GgufValueType::kInt8))
      .Put<uint64_t>(3)
      .Put<int8_t>(-1).Put<int8_t>(0).Put<int8_t>(7);
  file.Key("floats", GgufValueType::kArray)
      .Put<uint32_t>(static_cast<uint32_t>(GgufValueType::kFloat32))
      .Put<uint64_t>(2)
      .Put<float>(1.5f).Put<float>(-2.0f);
  file.Key("words", GgufValueType::kArray)
      .Put<uint32_t>(static_cast<uint32_t>(GgufValueType::kString))
      .Put<uint64_t>(2)
      .String("a b").String("");
  // One F32 tensor of shape [2] at data offset 0.
  file.String("t").Put<uint32_t>(1).Put<uint64_t>(2).Put<uint32_t>(0).Put<uint64_t>(0);
  file.PadTo(32).Put<float>(3.0f).Put<float>(4.0f);

  auto reader = GgufReader::Open(WriteTempFile("tiny.gguf", file.bytes()));
  ASSERT_TRUE(reader.ok()) << reader.status();
  const GgufReader& r = **reader;
  EXPECT_EQ(r.version(), 2u);
  EXPECT_EQ(*r.GetInt("u8"), 200);
  EXPECT_EQ(*r.GetInt("i16"), -300);
  EXPECT_EQ(*r.GetInt("u64"), 1ll << 40);
  EXPECT_EQ(r.GetInt("too_big").status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*r.GetFloat("f64"), 0.125);
  EXPECT_TRUE(*r.GetBool("yes"));
  EXPECT_EQ(*r.GetString("name"), "tiny");
  EXPECT_EQ(*r.GetIntArray("ints"), (std::vector<int64_t>{-1, 0, 7}));
  EXPECT_EQ(*r.GetFloatArray("floats"), (std::vector<double>{1.5, -2.0}));
  EXPECT_EQ(*r.GetStringArray("words"), (std::vector<std::string>{"a b", ""}));
  ASSERT_EQ(r.tensors().size(), 1u);
  float values[2];
  std::memcpy(values, r.tensors()[0].data, sizeof(values));
  EXPECT_EQ(values[0], 3.0f);
  EXPECT_EQ(values[1], 4.0f);
}

TEST(GgufReaderTest, RefusesNestedArraysAndMisalignedTensors) {
  GgufBytes nested(3, 0, 1);
  nested.Key("nested", GgufValueType::kArray)
      .Put<uint32_t>(static_cast<uint32_t>(GgufValueType::kArray))
      .Put<uint64_t>(0);
  auto reader = GgufReader::Open(WriteTempFile("nested.gguf", nested.bytes()));
  EXPECT_THAT(std::string(reader.status().message()), HasSubstr("'nested' nests arrays"));

  GgufBytes misaligned(3, 1, 0);
  misaligned.String("t").Put<uint32_t>(1).Put<uint64_t>(2).Put<uint32_t>(0).Put<uint64_t>(4);
  misaligned.PadTo(32).Put<uint64_t>(0).Put<uint64_t>(0);
  reader = GgufReader::Open(WriteTempFile("misaligned.gguf", misaligned.bytes()));
  EXPECT_THAT(std::string(reader.status().message()),
              HasSubstr("data offset 4 is not a multiple of the alignment 32"));

  GgufBytes partial_block(3, 1, 0);
  partial_block.String("q").Put<uint32_t>(1).Put<uint64_t>(33).Put<uint32_t>(2).Put<uint64_t>(0);
  reader = GgufReader::Open(WriteTempFile("partial.gguf", partial_block.bytes()));
  EXPECT_THAT(std::string(reader.status().message()),
              HasSubstr("not a whole number of q4_0 blocks"));
}

// 2^62 F32 elements are 2^64 bytes, which wrapped to a byte size of 0 and passed the range
// check (regression input in engine/fuzz/testdata/gguf_reader).
TEST(GgufReaderTest, RefusesTensorWhoseByteSizeOverflows) {
  GgufBytes file(3, 1, 0);
  file.String("t").Put<uint32_t>(1).Put<uint64_t>(1ull << 62).Put<uint32_t>(0).Put<uint64_t>(0);
  file.PadTo(32).Put<uint64_t>(0);
  auto reader = GgufReader::Open(WriteTempFile("overflow.gguf", file.bytes()));
  EXPECT_THAT(std::string(reader.status().message()),
              HasSubstr("tensor 't' of 4611686018427387904 f32 elements has a byte size that "
                        "overflows"));
}

}  // namespace
}  // namespace apex4
