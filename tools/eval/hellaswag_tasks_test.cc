#include "tools/eval/hellaswag_tasks.h"

#include "gtest/gtest.h"

namespace apex4 {
namespace {

constexpr char kDevFile[] = "../shared_data/hellaswag_val_dev1000.txt";

TEST(ReadHellaswagTasks, ReadsTheDevFile) {
  auto tasks = ReadHellaswagTasks(kDevFile);
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  ASSERT_EQ(tasks->size(), 1000u);
  const HellaswagTask& first = (*tasks)[0];
  EXPECT_EQ(first.context, "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(first.gold_ending, 3);
  EXPECT_EQ(first.endings[0], "is using wrap to wrap a pair of skis.");
  EXPECT_EQ(first.endings[3], "starts pulling up roofing on a roof.");
  EXPECT_EQ((*tasks)[1].endings[3], "stands and lifts the weight over her head.");
}

TEST(ParseHellaswagTasks, RejectsTruncatedText) {
  auto tasks = ParseHellaswagTasks("context\n1\na\nb\nc\n");
  ASSERT_FALSE(tasks.ok());
  EXPECT_NE(tasks.status().message().find("not a multiple of 6"), std::string::npos)
      << tasks.status();
}

TEST(ParseHellaswagTasks, RejectsBadGoldIndexNamingTheLine) {
  auto tasks = ParseHellaswagTasks("c\n0\na\nb\nc\nd\nc2\n4\na\nb\nc\nd\n");
  ASSERT_FALSE(tasks.ok());
  EXPECT_NE(tasks.status().message().find("line 8"), std::string::npos) << tasks.status();
}

TEST(ReadHellaswagTasks, MissingFileIsNotFound) {
  EXPECT_EQ(ReadHellaswagTasks("/nonexistent/hellaswag.txt").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace apex4
