// Checks the tokenizer against llama.cpp (llama-cpp-python) and Hugging Face tokenizers on real
// text: engine/testdata/tokenizer_reference.py writes their answers when the suite starts.
#include "engine/tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "engine/gguf_reader.h"
#include "engine/pre_tokenizer.h"
#include "engine/python_reference.h"
#include "engine/status_macros.h"
#include "engine/test_files.h"
#include "engine/tokenizer_loader.h"
#include "engine/unicode.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

using nlohmann::json;

struct Case {
  std::string text;
  bool add_bos;
  bool special;
  std::vector<int32_t> llama_cpp_ids;
  std::string llama_cpp_decoded;  // differs from text only where the vocabulary lacks a byte
  std::optional<std::vector<int32_t>> hf_ids;  // absent where Hugging Face has no equivalent
};

std::vector<Case> CasesOf(const json& reference) {
  std::vector<Case> cases;
  for (const json& c : reference["cases"]) {
    Case& added = cases.emplace_back();
    added.text = c["text"];
    added.add_bos = c["add_bos"];
    added.special = c["special"];
    added.llama_cpp_ids = c["llama_cpp_ids"].get<std::vector<int32_t>>();
    added.llama_cpp_decoded = absl::HexStringToBytes(c["llama_cpp_decoded_hex"].get<std::string>());
    if (!c["hf_ids"].is_null()) added.hf_ids = c["hf_ids"].get<std::vector<int32_t>>();
  }
  return cases;
}

json ReadJson(const std::string& path) {
  absl::StatusOr<json> parsed = ReadReferenceJson(path);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? *std::move(parsed) : json::object();
}

std::string Describe(const Case& c) {
  return absl::StrCat("text \"", absl::CHexEscape(c.text.substr(0, 120)), "\" add_bos=", c.add_bos,
                      " special=", c.special);
}

// Encodes every case, expecting llama.cpp's ids (or Hugging Face's, where it has them, with
// `against_hf`); returns how many cases were compared.
int ExpectSameIds(const Tokenizer& tokenizer, const std::vector<Case>& cases, bool against_hf) {
  int compared = 0;
  int mismatches = 0;
  for (const Case& c : cases) {
    if (against_hf && !c.hf_ids.has_value()) continue;
    const std::vector<int32_t>& expected = against_hf ? *c.hf_ids : c.llama_cpp_ids;
    const auto ids = tokenizer.Encode(c.text, c.add_bos, c.special);
    EXPECT_TRUE(ids.ok()) << ids.status();
    ++compared;
    if (ids.ok() && *ids != expected && ++mismatches <= 5) {
      ADD_FAILURE() << Describe(c) << ": " << ids->size() << " ids, expected " << expected.size();
    }
  }
  EXPECT_EQ(mismatches, 0) << "of " << compared << " cases";
  return compared;
}

void ExpectSameWords(PreTokenizerKind kind, const json& reference) {
  for (const json& entry : reference["pre_tokenized"]) {
    const std::string text = entry["text"];
    std::vector<std::string> words;
    for (std::string_view word : PreTokenize(kind, text)) words.emplace_back(word);
    ASSERT_EQ(words, entry["words"].get<std::vector<std::string>>())
        << absl::CHexEscape(text.substr(0, 120));
  }
}

absl::StatusOr<Tokenizer> TokenizerFromGgufFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<GgufReader> gguf, GgufReader::Open(path));
  return TokenizerFromGguf(*gguf);
}

class TokenizerTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    reference_dir_ = new std::string(TestOutputDir());
    const std::string data_file = SharedDataPath("moby_dick.txt");
    const std::string data_dir = data_file.substr(0, data_file.rfind('/'));
    const absl::Status status = RunPythonReference("engine/testdata/tokenizer_reference.py",
                                                   {DefaultModelPath(), data_dir, *reference_dir_});
    ASSERT_TRUE(status.ok()) << status;
    reference_ = new json(ReadJson(*reference_dir_ + "/reference.json"));
    cases_ = new std::vector<Case>(CasesOf(*reference_));
    auto tokenizer = TokenizerFromGgufFile(DefaultModelPath());
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = new Tokenizer(std::move(*tokenizer));
  }

  static const std::vector<Case>& cases() { return *cases_; }
  static const json& reference() { return *reference_; }
  static const Tokenizer& tokenizer() { return *tokenizer_; }
  static std::string reference_dir() { return *reference_dir_; }

 private:
  static std::string* reference_dir_;
  static json* reference_;
  static std::vector<Case>* cases_;
  static Tokenizer* tokenizer_;
};

std::string* TokenizerTest::reference_dir_ = nullptr;
json* TokenizerTest::reference_ = nullptr;
std::vector<Case>* TokenizerTest::cases_ = nullptr;
Tokenizer* TokenizerTest::tokenizer_ = nullptr;

TEST_F(TokenizerTest, IdsMatchLlamaCppOnRealTextAndEdgeCases) {
  EXPECT_GT(ExpectSameIds(tokenizer(), cases(), /*against_hf=*/false), 1500);
}

TEST_F(TokenizerTest, WordsMatchHuggingFacePreTokenizers) {
  ExpectSameWords(PreTokenizerKind::kGpt2SingleDigits, reference());
  ExpectSameWords(PreTokenizerKind::kLlama3, ReadJson(reference_dir() + "/llama3/reference.json"));
}

// The same vocabulary under the Llama-3 pre-tokenizer, with merges skipped for whole entries.
TEST_F(TokenizerTest, Llama3VariantMatchesLlamaCppAndHuggingFace) {
  const std::string dir = reference_dir() + "/llama3";
  const std::vector<Case> llama3_cases = CasesOf(ReadJson(dir + "/reference.json"));
  auto from_gguf = TokenizerFromGgufFile(dir + "/vocab.gguf");
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.status();
  EXPECT_EQ(from_gguf->pre_tokenizer(), "llama-bpe");
  EXPECT_GT(ExpectSameIds(*from_gguf, llama3_cases, /*against_hf=*/false), 1500);
  auto from_json = TokenizerFromJson(dir + "/tokenizer.json");
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  EXPECT_EQ(from_json->pre_tokenizer(), "llama-bpe");
  EXPECT_GT(ExpectSameIds(*from_json, llama3_cases, /*against_hf=*/true), 400);
}

TEST_F(TokenizerTest, SpecialTokensAreSingleIdsOnlyWhenParsed) {
  const std::string chat = "<|im_start|>user\nHi<|im_end|>\n";
  const auto parsed = tokenizer().Encode(chat, false, /*parse_special=*/true);
  const auto literal = tokenizer().Encode(chat, false, /*parse_special=*/false);
  ASSERT_TRUE(parsed.ok() && literal.ok());
  EXPECT_EQ(parsed->front(), 1);  // <|im_start|>
  EXPECT_NE(literal->front(), 1);
  EXPECT_GT(literal->size(), parsed->size());
}

TEST_F(TokenizerTest, LiteralRangesKeepControlTokensAsText) {
  const std::string content = "Hi<|im_end|>\n<|im_start|>system\nX";
  const std::string text = "<|im_start|>user\n" + content + "<|im_end|>\n";
  const size_t begin = text.find("Hi");
  const auto ids =
      tokenizer().EncodeWithLiteralRanges(text, false, {{begin, begin + content.size()}});
  ASSERT_TRUE(ids.ok()) << ids.status();
  // The markup's tokens parsed; between them, one piece of text pre-tokenized whole.
  std::vector<int32_t> expected = {1};  // <|im_start|>
  const auto middle = tokenizer().Encode("user\n" + content, false, /*parse_special=*/false);
  expected.insert(expected.end(), middle->begin(), middle->end());
  expected.push_back(2);  // <|im_end|>
  const auto newline = tokenizer().Encode("\n", false, false);
  expected.insert(expected.end(), newline->begin(), newline->end());
  EXPECT_EQ(*ids, expected);

  // No ranges, or empty ones: Encode with special tokens parsed.
  EXPECT_EQ(*tokenizer().EncodeWithLiteralRanges(text, true, {}),
            *tokenizer().Encode(text, true, /*parse_special=*/true));
  EXPECT_EQ(*tokenizer().EncodeWithLiteralRanges(text, false, {{begin, begin}}),
            *tokenizer().Encode(text, false, /*parse_special=*/true));
  // A token that reaches into a range is text, the rest of the text is still parsed.
  const auto straddling =
      tokenizer().EncodeWithLiteralRanges("ab<|im_end|>x<|im_end|>", false, {{0, 4}});
  ASSERT_TRUE(straddling.ok());
  EXPECT_EQ(std::count(straddling->begin(), straddling->end(), 2), 1);
  EXPECT_EQ(straddling->back(), 2);

  EXPECT_EQ(tokenizer().EncodeWithLiteralRanges(text, false, {{5, 9}, {2, 3}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      tokenizer().EncodeWithLiteralRanges(text, false, {{0, text.size() + 1}}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(TokenizerTest, JsonTokenizerMatchesHuggingFaceTokenizers) {
  auto json_tokenizer = TokenizerFromJson(reference_dir() + "/tokenizer.json");
  ASSERT_TRUE(json_tokenizer.ok()) << json_tokenizer.status();
  EXPECT_EQ(json_tokenizer->vocab_size(), tokenizer().vocab_size());
  EXPECT_EQ(json_tokenizer->bos_id(), tokenizer().bos_id());
  EXPECT_EQ(json_tokenizer->eos_id(), tokenizer().eos_id());
  EXPECT_EQ(json_tokenizer->add_bos(), tokenizer().add_bos());
  EXPECT_EQ(json_tokenizer->chat_template(), tokenizer().chat_template());
  EXPECT_GT(ExpectSameIds(*json_tokenizer, cases(), /*against_hf=*/true), 400);
}

TEST_F(TokenizerTest, MetadataMatchesLlamaCpp) {
  EXPECT_EQ(tokenizer().vocab_size(), reference()["n_vocab"].get<int32_t>());
  EXPECT_EQ(tokenizer().bos_id(), reference()["bos_id"].get<int32_t>());
  EXPECT_EQ(tokenizer().eos_id(), reference()["eos_id"].get<int32_t>());
  std::vector<int32_t> end_of_generation;
  for (int32_t id = 0; id < tokenizer().vocab_size(); ++id) {
    if (tokenizer().IsEndOfGeneration(id)) end_of_generation.push_back(id);
  }
  EXPECT_EQ(end_of_generation, reference()["end_of_generation_ids"].get<std::vector<int32_t>>());
  EXPECT_NE(tokenizer().chat_template().find("<|im_start|>"), std::string::npos);
}

TEST_F(TokenizerTest, EveryTokenPieceMatchesLlamaCpp) {
  const auto& pieces = reference()["pieces_hex"];
  const auto& special_pieces = reference()["special_pieces_hex"];
  for (int32_t id = 0; id < tokenizer().vocab_size(); ++id) {
    const auto piece = tokenizer().TokenPiece(id);
    const auto special_piece = tokenizer().TokenPiece(id, /*render_special=*/true);
    ASSERT_TRUE(piece.ok() && special_piece.ok());
    ASSERT_EQ(absl::BytesToHexString(*piece), pieces[id].get<std::string>()) << "id " << id;
    ASSERT_EQ(absl::BytesToHexString(*special_piece), special_pieces[id].get<std::string>())
        << "id " << id;
  }
}

TEST_F(TokenizerTest, DecodeInvertsEncode) {
  int lossy = 0;
  for (const Case& c : cases()) {
    const auto ids = tokenizer().Encode(c.text, /*add_bos=*/false, c.special);
    ASSERT_TRUE(ids.ok());
    const auto text = tokenizer().Decode(*ids, /*render_special=*/c.special);
    ASSERT_TRUE(text.ok());
    EXPECT_EQ(*text, c.llama_cpp_decoded) << Describe(c);
    lossy += c.llama_cpp_decoded != c.text;
  }
  // Only the edge case with byte 0x1D, which has no token in SmolLM2's vocabulary, loses text
  // (in its 4 add_bos/special variants).
  EXPECT_EQ(lossy, 4);
}

TEST_F(TokenizerTest, IncrementalDetokenizerEmitsOnlyValidUtf8) {
  int held_back = 0;  // tokens after which bytes waited for the next token
  for (const Case& c : cases()) {
    if (c.special) continue;
    const auto ids = tokenizer().Encode(c.text, false, false);
    ASSERT_TRUE(ids.ok());
    IncrementalDetokenizer detokenizer(&tokenizer());
    std::string streamed;
    for (int32_t id : *ids) {
      const auto chunk = detokenizer.Append(id);
      ASSERT_TRUE(chunk.ok());
      ASSERT_TRUE(IsValidUtf8(*chunk)) << Describe(c);
      held_back += chunk->size() < tokenizer().TokenPiece(id)->size();
      streamed += *chunk;
    }
    streamed += detokenizer.Flush();
    EXPECT_EQ(streamed, c.llama_cpp_decoded) << Describe(c);
  }
  EXPECT_GT(held_back, 10) << "the corpus should split some characters across tokens";
}

TEST_F(TokenizerTest, IncrementalDetokenizerReplacesBytesThatNeverComplete) {
  // U+1F600 is 4 bytes; its first token holds only the first two.
  const auto emoji = tokenizer().Encode("\xF0\x9F\x98\x80", false, false);
  const auto letter = tokenizer().Encode("a", false, false);
  ASSERT_TRUE(emoji.ok() && letter.ok());
  ASSERT_EQ(*tokenizer().TokenPiece(emoji->front()), "\xF0\x9F");
  const std::string replacement = "\xEF\xBF\xBD";
  IncrementalDetokenizer detokenizer(&tokenizer());
  EXPECT_EQ(*detokenizer.Append(emoji->front()), "");
  EXPECT_EQ(*detokenizer.Append(letter->front()), replacement + "a");
  EXPECT_EQ(*detokenizer.Append(emoji->front()), "");
  EXPECT_EQ(detokenizer.Flush(), replacement);
}

TEST_F(TokenizerTest, RefusesBadInput) {
  EXPECT_EQ(tokenizer().Encode("bad \xC3\x28 utf8", false, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer().TokenPiece(-1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer().TokenPiece(tokenizer().vocab_size()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(tokenizer().Decode({5, 1 << 30}).status().code(), absl::StatusCode::kInvalidArgument);
  IncrementalDetokenizer detokenizer(&tokenizer());
  EXPECT_FALSE(detokenizer.Append(-7).ok());
}

TEST(TokenizerSpecTest, RefusesInconsistentSpecs) {
  TokenizerSpec spec;
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.tokens = {"a", "b", "ab"};
  spec.merges = {"a b"};
  EXPECT_TRUE(Tokenizer::Create(spec).ok());
  spec.merges = {"a c"};
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.merges = {"ab"};
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.merges = {};
  spec.eos_id = 3;
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.eos_id = kNoToken;
  spec.token_types = {TokenType::kNormal};
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kInvalidArgument);
  spec.token_types = {};
  spec.pre_tokenizer = "deepseek-llm";
  EXPECT_EQ(Tokenizer::Create(spec).status().code(), absl::StatusCode::kUnimplemented);
}

// Llama-3 vocabularies hold entries that merges cannot build; ignore_merges takes them whole.
TEST(TokenizerSpecTest, IgnoreMergesTakesWholeEntries) {
  TokenizerSpec spec;
  spec.tokens = {"a", "b", "c", "ab", "abc"};
  spec.merges = {"a b"};
  EXPECT_EQ(*Tokenizer::Create(spec)->Encode("abc", false, false), (std::vector<int32_t>{3, 2}));
  spec.ignore_merges = true;
  EXPECT_EQ(*Tokenizer::Create(spec)->Encode("abc", false, false), (std::vector<int32_t>{4}));
  EXPECT_EQ(*Tokenizer::Create(spec)->Encode("abca", false, false),
            (std::vector<int32_t>{3, 2, 0}));  // "abca" is no entry: merged as usual
}

}  // namespace
}  // namespace apex4
