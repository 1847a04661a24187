// Expected words follow from applying the regexes of pre_tokenizer.h by hand; the tokenizer test
// checks the whole pipeline against llama.cpp on real text.
#include "engine/pre_tokenizer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

std::vector<std::string> Words(PreTokenizerKind kind, const std::string& text) {
  std::vector<std::string> words;
  std::string joined;
  for (std::string_view word : PreTokenize(kind, text)) {
    EXPECT_FALSE(word.empty()) << text;
    words.emplace_back(word);
    joined += word;
  }
  EXPECT_EQ(joined, text);
  return words;
}

using Expected = std::vector<std::string>;

TEST(PreTokenizerTest, Gpt2Expression) {
  const auto kind = PreTokenizerKind::kGpt2;
  EXPECT_EQ(Words(kind, ""), Expected{});
  EXPECT_EQ(Words(kind, "Hello world"), (Expected{"Hello", " world"}));
  EXPECT_EQ(Words(kind, "it's we'll they've"),
            (Expected{"it", "'s", " we", "'ll", " they", "'ve"}));
  // Contractions are case-sensitive: "'LL" is punctuation, then letters.
  EXPECT_EQ(Words(kind, "I'LL"), (Expected{"I", "'", "LL"}));
  EXPECT_EQ(Words(kind, "abc123 456"), (Expected{"abc", "123", " 456"}));
  // A whitespace run gives its last space to the next word...
  EXPECT_EQ(Words(kind, "a   b"), (Expected{"a", "  ", " b"}));
  EXPECT_EQ(Words(kind, "a \n b"), (Expected{"a", " \n", " b"}));
  // ...unless only a non-space whitespace is left, or the text ends.
  EXPECT_EQ(Words(kind, "a\n\nb"), (Expected{"a", "\n", "\n", "b"}));
  EXPECT_EQ(Words(kind, "end  "), (Expected{"end", "  "}));
  EXPECT_EQ(Words(kind, "  ...!"), (Expected{" ", " ...!"}));
  EXPECT_EQ(Words(kind, "\xC2\xA1Hola!"), (Expected{"\xC2\xA1", "Hola", "!"}));  // ¡Hola!
  EXPECT_EQ(Words(kind, "hello\xC2\xA0world"), (Expected{"hello", "\xC2\xA0", "world"}));  // NBSP
  EXPECT_EQ(Words(kind, "\xE6\x97\xA5\xE6\x9C\xAC go"),
            (Expected{"\xE6\x97\xA5\xE6\x9C\xAC", " go"}));
}

TEST(PreTokenizerTest, SingleDigitsComeFirst) {
  const auto kind = PreTokenizerKind::kGpt2SingleDigits;
  EXPECT_EQ(Words(kind, "abc123"), (Expected{"abc", "1", "2", "3"}));
  // The space before a number no longer joins it: the GPT-2 expression sees " " alone.
  EXPECT_EQ(Words(kind, "in 2024"), (Expected{"in", " ", "2", "0", "2", "4"}));
  EXPECT_EQ(Words(kind, "x\xC2\xB2+1"), (Expected{"x", "\xC2\xB2", "+", "1"}));  // x²+1
  EXPECT_EQ(Words(kind, "Hello world"), (Expected{"Hello", " world"}));
  // (?!\S) looks only within the piece between digits.
  EXPECT_EQ(Words(kind, "a  1"), (Expected{"a", "  ", "1"}));
}

TEST(PreTokenizerTest, Llama3Expression) {
  const auto kind = PreTokenizerKind::kLlama3;
  EXPECT_EQ(Words(kind, "Hello world"), (Expected{"Hello", " world"}));
  // Contractions in any case; numbers in groups of up to three.
  EXPECT_EQ(Words(kind, "I'LL it's"), (Expected{"I", "'LL", " it", "'s"}));
  EXPECT_EQ(Words(kind, "1234567 x"), (Expected{"123", "456", "7", " x"}));
  // Any one non-letter, non-digit, non-newline codepoint may lead a run of letters.
  EXPECT_EQ(Words(kind, "(abc\tdef"), (Expected{"(abc", "\tdef"}));
  // Punctuation takes the newlines after it; whitespace ending in newlines is one word.
  EXPECT_EQ(Words(kind, "end.\n\nNext"), (Expected{"end", ".\n\n", "Next"}));
  EXPECT_EQ(Words(kind, "a  \n  b"), (Expected{"a", "  \n", " ", " b"}));
  EXPECT_EQ(Words(kind, "x   "), (Expected{"x", "   "}));
}

TEST(PreTokenizerTest, NamesFollowLlamaCpp) {
  EXPECT_EQ(*PreTokenizerFromName("gpt2"), PreTokenizerKind::kGpt2);
  EXPECT_EQ(*PreTokenizerFromName("smollm"), PreTokenizerKind::kGpt2SingleDigits);
  EXPECT_EQ(*PreTokenizerFromName("starcoder"), PreTokenizerKind::kGpt2SingleDigits);
  EXPECT_EQ(*PreTokenizerFromName("llama-bpe"), PreTokenizerKind::kLlama3);
  const auto deepseek = PreTokenizerFromName("deepseek-llm");
  EXPECT_EQ(deepseek.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(deepseek.status().message().find("deepseek-llm"), std::string::npos);
}

}  // namespace
}  // namespace apex4
