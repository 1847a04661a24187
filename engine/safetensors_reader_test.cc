#include "engine/safetensors_reader.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string TempDir() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr ? tmp : "/tmp";
}

std::string WriteTempFile(const std::string& name, const std::string& bytes) {
  const std::string path = TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size());
  return path;
}

// A file laid out by hand from the format description: length, JSON header, data.
std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  const uint64_t length = header.size();
  return std::string(reinterpret_cast<const char*>(&length), sizeof(length)) + header + data;
}

void ExpectRefused(const std::string& bytes, const std::string& expected) {
  auto reader = SafetensorsReader::Open(WriteTempFile("bad.safetensors", bytes));
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(reader.status().message()), HasSubstr(expected));
}

class PythonWrittenFileTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string command =
        absl::StrCat("python3 engine/testdata/safetensors_fixture.py '", TempDir(), "'");
    ASSERT_EQ(std::system(command.c_str()), 0)
        << command << " failed (needs numpy and safetensors: "
        << "python3 -m pip install -r tools/requirements.txt)";
  }
  static std::string Path() { return TempDir() + "/small.safetensors"; }
};

TEST_F(PythonWrittenFileTest, ReadsTensorsAndMetadata) {
  auto reader = SafetensorsReader::Open(Path());
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->metadata().at("format"), "np");
  EXPECT_EQ((*reader)->metadata().at("writer"), "apex4-test");
  ASSERT_EQ((*reader)->tensors().size(), 3u);

  auto a = (*reader)->FindTensor("a");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->dtype, "F32");
  EXPECT_THAT((*a)->shape, ElementsAre(2, 3));
  EXPECT_THAT(*SafetensorsToFloat(**a), ElementsAre(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f));

  auto b = (*reader)->FindTensor("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->dtype, "F16");
  EXPECT_THAT(*SafetensorsToFloat(**b), ElementsAre(1.0f, -2.0f, 0.5f, 65504.0f));

  auto i = (*reader)->FindTensor("i");
  ASSERT_TRUE(i.ok());
  EXPECT_EQ((*i)->dtype, "I64");
  EXPECT_EQ((*i)->num_bytes, 24u);
  int64_t ints[3];
  std::memcpy(ints, (*i)->data, sizeof(ints));
  EXPECT_THAT(ints, ElementsAre(1, 2, 3));
  EXPECT_EQ(SafetensorsToFloat(**i).status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ((*reader)->FindTensor("missing").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PythonWrittenFileTest, RefusesTruncatedCopies) {
  std::ifstream in(Path(), std::ios::binary);
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  ExpectRefused(bytes.substr(0, bytes.size() - 1), "(truncated?)");
  ExpectRefused(bytes.substr(0, 20), "truncated: header of");
  ExpectRefused(bytes.substr(0, 5), "no 8-byte header length");
}

TEST(SafetensorsReaderTest, ReadsBFloat16) {
  // 1.0 and -123.5 in bfloat16 are 0x3F80 and 0xC2F7.
  const std::string data("\x80\x3F\xF7\xC2", 4);
  const std::string path = WriteTempFile(
      "bf16.safetensors",
      SafetensorsBytes(R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", data));
  auto reader = SafetensorsReader::Open(path);
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_THAT(*SafetensorsToFloat((*reader)->tensors()[0]), ElementsAre(1.0f, -123.5f));
}

// The safetensors package puts an empty tensor at the offset of the next one; that was refused
// as an overlap when the names sorted the other way, and converting it passed a null pointer to
// memcpy (found by engine/fuzz/safetensors_reader_fuzzer).
TEST(SafetensorsReaderTest, ReadsEmptyTensorSharingAnOffset) {
  auto reader = SafetensorsReader::Open(WriteTempFile(
      "empty.safetensors",
      SafetensorsBytes(R"({"u":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})",
                       std::string(4, '\1'))));
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto empty = (*reader)->FindTensor("z");
  ASSERT_TRUE(empty.ok());
  auto values = SafetensorsToFloat(**empty);
  ASSERT_TRUE(values.ok()) << values.status();
  EXPECT_TRUE(values->empty());
}

TEST(SafetensorsReaderTest, RefusesMalformedHeadersNamingTheField) {
  const std::string eight_bytes(8, '\0');
  ExpectRefused(SafetensorsBytes("[1, 2]", ""), "header is not a JSON object");
  ExpectRefused(SafetensorsBytes("{\"w\": ", ""), "header is not a JSON object");
  ExpectRefused(SafetensorsBytes(R"({"w":{"dtype":"F24","shape":[2],"data_offsets":[0,6]}})",
                                 std::string(6, '\0')),
                "tensor 'w' has unknown dtype 'F24'");
  ExpectRefused(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                                 eight_bytes),
                "tensor 'w' holds 8 bytes, its F32 shape needs 12");
  ExpectRefused(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                                 eight_bytes),
                "non-integer or negative dimension");
  // 2^62 F32 elements are 2^64 bytes, which wrapped to 0 and matched an empty byte range
  // (regression input in engine/fuzz/testdata/safetensors_reader).
  ExpectRefused(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                                 R"("data_offsets":[0,0]}})",
                                 ""),
                "tensor 'w' shape overflows its byte size");
  ExpectRefused(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[2]}})", eight_bytes),
                "tensor 'w' has no 'data_offsets'");
  ExpectRefused(
      SafetensorsBytes(R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       eight_bytes),
      "tensors 'v' and 'w' overlap");
  ExpectRefused(SafetensorsBytes(R"({"__metadata__":{"n":1}})", ""),
                "__metadata__ value 'n' is not a string");
  std::string huge = SafetensorsBytes("{}", "");
  huge[6] = 1;  // a header length of 2^48
  ExpectRefused(huge, "exceeds the 100 MB limit");
  EXPECT_EQ(SafetensorsReader::Open("/nonexistent.safetensors").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace apex4
