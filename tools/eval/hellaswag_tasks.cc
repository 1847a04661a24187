#include "tools/eval/hellaswag_tasks.h"

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace apex4 {
namespace {

constexpr int kLinesPerTask = 2 + kHellaswagEndings;

}  // namespace

absl::StatusOr<std::vector<HellaswagTask>> ParseHellaswagTasks(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  // A final newline leaves one empty piece that is not a line.
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return absl::InvalidArgumentError("hellaswag: no tasks");
  if (lines.size() % kLinesPerTask != 0) {
    return absl::InvalidArgumentError(absl::StrCat("hellaswag: ", lines.size(),
                                                   " lines is not a multiple of ", kLinesPerTask,
                                                   " (truncated file?)"));
  }
  std::vector<HellaswagTask> tasks(lines.size() / kLinesPerTask);
  for (size_t t = 0; t < tasks.size(); ++t) {
    const size_t first = t * kLinesPerTask;
    HellaswagTask& task = tasks[t];
    task.context = std::string(absl::StripSuffix(lines[first], "\r"));
    const absl::string_view gold = absl::StripSuffix(lines[first + 1], "\r");
    if (!absl::SimpleAtoi(gold, &task.gold_ending) || task.gold_ending < 0 ||
        task.gold_ending >= kHellaswagEndings) {
      return absl::InvalidArgumentError(absl::StrCat("hellaswag line ", first + 2,
                                                     ": expected an ending index 0..3, got '",
                                                     gold, "'"));
    }
    for (int e = 0; e < kHellaswagEndings; ++e) {
      task.endings[e] = std::string(absl::StripSuffix(lines[first + 2 + e], "\r"));
    }
  }
  return tasks;
}

absl::StatusOr<std::vector<HellaswagTask>> ReadHellaswagTasks(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream text;
  text << file.rdbuf();
  auto tasks = ParseHellaswagTasks(text.str());
  if (!tasks.ok()) {
    return absl::Status(tasks.status().code(), absl::StrCat(path, ": ", tasks.status().message()));
  }
  return tasks;
}

}  // namespace apex4
