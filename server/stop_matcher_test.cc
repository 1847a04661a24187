#include "server/stop_matcher.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

// Feeds `pieces` one by one and returns everything released, plus whether it stopped.
std::pair<std::string, bool> Stream(StopMatcher& matcher, const std::vector<std::string>& pieces) {
  std::string released;
  for (const std::string& piece : pieces) {
    StopMatcher::Output output = matcher.Append(piece);
    released += output.text;
    if (output.stopped) return {released, true};
  }
  return {released + matcher.Flush(), false};
}

TEST(StopMatcherTest, WithoutStopsReleasesEverythingAtOnce) {
  StopMatcher matcher({});
  EXPECT_EQ(matcher.Append("Hello").text, "Hello");
  EXPECT_EQ(matcher.Append(" world").text, " world");
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopMatcherTest, StopsBeforeAStopStringSplitAcrossPieces) {
  StopMatcher matcher({"\nUser:"});
  EXPECT_EQ(matcher.Append("Sure.").text, "Sure.");
  StopMatcher::Output held = matcher.Append("\nUs");
  EXPECT_EQ(held.text, "");  // could be the stop string: wait
  EXPECT_FALSE(held.stopped);
  StopMatcher::Output stopped = matcher.Append("er: next");
  EXPECT_TRUE(stopped.stopped);
  EXPECT_EQ(stopped.text, "");
  EXPECT_EQ(matcher.Append("more").text, "");
}

TEST(StopMatcherTest, ReleasesHeldTextThatTurnsOutNotToStop) {
  StopMatcher matcher({"END"});
  auto [text, stopped] = Stream(matcher, {"the E", "N", "D", "ING"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "the ");

  StopMatcher other({"END"});
  auto [other_text, other_stopped] = Stream(other, {"the E", "N", "d", " EN"});
  EXPECT_FALSE(other_stopped);
  EXPECT_EQ(other_text, "the ENd EN");
}

TEST(StopMatcherTest, EarliestOfSeveralStopsWins) {
  StopMatcher matcher({"world", "lo w", ""});
  auto [text, stopped] = Stream(matcher, {"Hello world"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "Hel");
}

TEST(StopMatcherTest, HoldsOnlyTheLongestPossiblePrefix) {
  StopMatcher matcher({"abc"});
  // "xab": only "ab" could start the stop string; "x" goes out now.
  EXPECT_EQ(matcher.Append("xab").text, "x");
  EXPECT_EQ(matcher.Flush(), "ab");
}

TEST(StopMatcherTest, MultiByteStopStrings) {
  StopMatcher matcher({"\xE2\x80\x94"});  // em dash, 3 bytes
  auto [text, stopped] = Stream(matcher, {"caf\xC3\xA9 \xE2\x80", "\x94 tail"});
  EXPECT_TRUE(stopped);
  EXPECT_EQ(text, "caf\xC3\xA9 ");
}

}  // namespace
}  // namespace apex4
