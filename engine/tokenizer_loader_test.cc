#include "engine/tokenizer_loader.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "engine/gguf_reader.h"
#include "engine/python_reference.h"
#include "engine/test_files.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

// Writes `files` (name, contents) into a fresh folder and returns the tokenizer.json path.
std::string WriteModelFolder(const std::string& name,
                             const std::vector<std::pair<std::string, std::string>>& files) {
  const std::string dir = TestOutputDir() + "/" + name;
  std::filesystem::create_directories(dir);
  for (const auto& [file, contents] : files) std::ofstream(dir + "/" + file) << contents;
  return dir + "/tokenizer.json";
}

// A five-token byte-level BPE: "Ġ" is the byte-level form of a space.
std::string TinyTokenizerJson(const std::string& merges, const std::string& pre_tokenizer =
                                                             R"({"type": "ByteLevel",
      "add_prefix_space": false, "use_regex": true})") {
  return R"({"normalizer": null, "pre_tokenizer": )" + pre_tokenizer + R"(,
    "added_tokens": [{"id": 5, "content": "<|end|>", "special": true}],
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "Ġ": 2, "ab": 3, "Ġab": 4},
              "merges": )" +
         merges + "}}";
}

TEST(TokenizerLoaderTest, ReadsBothMergeForms) {
  for (const std::string& merges :
       {std::string(R"(["a b", "Ġ ab"])"), std::string(R"([["a", "b"], ["Ġ", "ab"]])")}) {
    const std::string path =
        WriteModelFolder("merges", {{"tokenizer.json", TinyTokenizerJson(merges)}});
    auto tokenizer = TokenizerFromJson(path);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    EXPECT_EQ(tokenizer->vocab_size(), 6);
    // "ab" merges once; " ab" merges a+b, then Ġ+ab; "ba" has no merge.
    EXPECT_EQ(*tokenizer->Encode("ab ab", false, false), (std::vector<int32_t>{3, 4}));
    EXPECT_EQ(*tokenizer->Encode("ba", false, false), (std::vector<int32_t>{1, 0}));
    EXPECT_EQ(*tokenizer->Encode("a<|end|>", false, true), (std::vector<int32_t>{0, 5}));
    EXPECT_EQ(tokenizer->token_type(5), TokenType::kControl);
    EXPECT_TRUE(tokenizer->IsEndOfGeneration(5));  // by its name, as in llama.cpp
  }
}

TEST(TokenizerLoaderTest, ReadsTokenizerConfig) {
  const std::string path = WriteModelFolder(
      "config",
      {{"tokenizer.json", TinyTokenizerJson(R"(["a b"])")},
       {"tokenizer_config.json", R"({"bos_token": {"content": "b"}, "eos_token": "<|end|>",
                    "add_bos_token": true, "chat_template": [
                      {"name": "tool_use", "template": "tools"},
                      {"name": "default", "template": "<|im_start|>{{ x }}<|im_end|>"}]})"}});
  auto tokenizer = TokenizerFromJson(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 5);
  EXPECT_TRUE(tokenizer->add_bos());
  EXPECT_EQ(tokenizer->chat_template(), "<|im_start|>{{ x }}<|im_end|>");
  EXPECT_EQ(*tokenizer->Encode("a", true, false), (std::vector<int32_t>{1, 0}));
}

TEST(TokenizerLoaderTest, ReadsChatTemplateJinjaBesideTheConfig) {
  const std::string path = WriteModelFolder(
      "jinja", {{"tokenizer.json", TinyTokenizerJson(R"(["a b"])")},
                {"tokenizer_config.json", R"({"eos_token": "<|end|>"})"},
                {"chat_template.jinja", "{{ '<|im_start|>' }}{{ '<|im_end|>' }}\n"}});
  auto tokenizer = TokenizerFromJson(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->chat_template(), "{{ '<|im_start|>' }}{{ '<|im_end|>' }}\n");
}

TEST(TokenizerLoaderTest, RefusesWhatItCannotRead) {
  const auto code_of = [](const std::string& name, const std::string& json) {
    return TokenizerFromJson(WriteModelFolder(name, {{"tokenizer.json", json}})).status().code();
  };
  EXPECT_EQ(TokenizerFromJson("/nonexistent/tokenizer.json").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(code_of("not_json", "{ vocab"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("array", "[1, 2]"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("wordpiece", R"({"model": {"type": "WordPiece"},
      "pre_tokenizer": {"type": "ByteLevel"}})"),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(code_of("metaspace", TinyTokenizerJson("[]", R"({"type": "Metaspace"})")),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(code_of("prefix_space", TinyTokenizerJson("[]", R"({"type": "ByteLevel",
      "add_prefix_space": true})")),
            absl::StatusCode::kUnimplemented);
  EXPECT_EQ(code_of("string_id", R"({"pre_tokenizer": {"type": "ByteLevel"},
      "model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}})"),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("unknown_merge", TinyTokenizerJson(R"(["a c"])")),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code_of("bad_merge", TinyTokenizerJson("[42]")), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerLoaderTest, ReadsTheDefaultModelsGgufMetadata) {
  auto gguf = GgufReader::Open(DefaultModelPath());
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto spec = TokenizerSpecFromGguf(**gguf);
  ASSERT_TRUE(spec.ok()) << spec.status();
  // Values as gguf-py's GGUFReader lists them for SmolLM2-135M-Instruct.Q4_1.gguf.
  EXPECT_EQ(spec->pre_tokenizer, "smollm");
  EXPECT_EQ(spec->tokens.size(), 49152u);
  EXPECT_EQ(spec->merges.size(), 48900u);
  EXPECT_EQ(spec->merges.front(), "Ġ t");
  EXPECT_EQ(spec->bos_id, 1);
  EXPECT_EQ(spec->eos_id, 2);
  EXPECT_EQ(spec->padding_id, 2);
  EXPECT_FALSE(spec->add_bos);
  int control = 0;
  for (TokenType type : spec->token_types) control += type == TokenType::kControl;
  EXPECT_EQ(control, 17);
}

}  // namespace
}  // namespace apex4
