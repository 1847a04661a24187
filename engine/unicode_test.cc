#include "engine/unicode.h"

#include <initializer_list>
#include <string>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

uint32_t DecodeOne(const std::string& text) {
  size_t offset = 0;
  uint32_t codepoint = 0;
  EXPECT_TRUE(DecodeUtf8(text, &offset, &codepoint)) << text;
  EXPECT_EQ(offset, text.size());
  return codepoint;
}

TEST(UnicodeTest, DecodesEachSequenceLength) {
  EXPECT_EQ(DecodeOne("A"), 0x41u);
  EXPECT_EQ(DecodeOne("\xC3\xA9"), 0xE9u);             // é
  EXPECT_EQ(DecodeOne("\xE2\x82\xAC"), 0x20ACu);       // €
  EXPECT_EQ(DecodeOne("\xF0\x9F\x98\x80"), 0x1F600u);  // 😀
  EXPECT_EQ(DecodeOne("\xF4\x8F\xBF\xBF"), 0x10FFFFu);
}

TEST(UnicodeTest, RefusesInvalidSequences) {
  for (const std::string& bad :
       {std::string("\xC0\x80"),          // overlong NUL
        std::string("\xE0\x80\xAF"),      // overlong '/'
        std::string("\xED\xA0\x80"),      // surrogate U+D800
        std::string("\xF4\x90\x80\x80"),  // past U+10FFFF
        std::string("\xE2\x82"),          // truncated
        std::string("\x80"), std::string("\xFF"), std::string("\xC3\x28")}) {
    size_t offset = 0;
    uint32_t codepoint;
    EXPECT_FALSE(DecodeUtf8(bad, &offset, &codepoint)) << bad;
    EXPECT_EQ(offset, 0u);
    EXPECT_FALSE(IsValidUtf8("ok " + bad));
  }
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("naïve 日本 😀"));
}

TEST(UnicodeTest, AppendUtf8RoundTrips) {
  for (uint32_t codepoint :
       {0x0u, 0x7Fu, 0x80u, 0x7FFu, 0x800u, 0xD7FFu, 0xE000u, 0xFFFFu, 0x10000u, 0x10FFFFu}) {
    std::string text;
    AppendUtf8(codepoint, &text);
    EXPECT_EQ(DecodeOne(text), codepoint);
  }
}

TEST(UnicodeTest, FindsIncompleteSuffixes) {
  EXPECT_EQ(IncompleteUtf8SuffixLength(""), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE2\x82"), 2u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0"), 1u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE2\x28"), 0u);  // broken, not incomplete
  EXPECT_EQ(IncompleteUtf8SuffixLength("\xED\xA0"), 0u);   // would be a surrogate
  EXPECT_EQ(IncompleteUtf8SuffixLength("\x80\x80"), 0u);
}

// Expected as Python's bytes.decode("utf-8", errors="replace") gives them.
TEST(UnicodeTest, SanitizeReplacesEachMaximalInvalidSubpart) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a" + r + "b");
  EXPECT_EQ(SanitizeUtf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(SanitizeUtf8("\xE2\x82"), r);
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F"
                         "a"),
            r + "a");
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\xF0\x9F"), r + r);
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), r + r + r);
  EXPECT_EQ(SanitizeUtf8("\xC0\x80"), r + r);
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), r + r + r + r);
}

TEST(UnicodeTest, ClassifiesLettersNumbersAndWhitespace) {
  for (uint32_t letter :
       std::initializer_list<uint32_t>{'a', 'Z', 0xE9u /* é */, 0x65E5u /* 日 */, 0x3042u /* あ */,
                                       0x1D518u /* 𝔘 */, 0x2B0u /* ʰ, Lm */}) {
    EXPECT_EQ(CodepointClasses(letter), kLetter) << std::hex << letter;
  }
  for (uint32_t number :
       std::initializer_list<uint32_t>{'0', '9', 0x663u /* ٣ */, 0xBDu /* ½ */, 0x216Bu /* Ⅻ */,
                                       0xB2u /* ² */, 0x1D7D9u /* 𝟙 */}) {
    EXPECT_EQ(CodepointClasses(number), kNumber) << std::hex << number;
  }
  for (uint32_t space : std::initializer_list<uint32_t>{' ', '\t', '\n', '\r', 0x0Bu, 0x0Cu, 0x85u,
                                                        0xA0u, 0x2003u, 0x2028u, 0x3000u}) {
    EXPECT_EQ(CodepointClasses(space), kWhitespace) << std::hex << space;
  }
  for (uint32_t other : std::initializer_list<uint32_t>{
           '!', '\'', '$', 0x1Cu, 0x200Bu /* zero width space */, 0x301u /* combining acute */,
           0x1F600u /* 😀 */, 0xE000u, 0x10FFFFu}) {
    EXPECT_EQ(CodepointClasses(other), 0) << std::hex << other;
  }
}

}  // namespace
}  // namespace apex4
