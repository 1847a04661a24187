// HellaSwag tasks in llama.cpp's `--hellaswag` text format: six lines per task (context, index of
// the right ending, four endings), as in ../shared/data/hellaswag_val_dev1000.txt.
#ifndef APEX4_TOOLS_EVAL_HELLASWAG_TASKS_H_
#define APEX4_TOOLS_EVAL_HELLASWAG_TASKS_H_

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace apex4 {

inline constexpr int kHellaswagEndings = 4;

struct HellaswagTask {
  std::string context;
  int gold_ending = 0;  // 0..3
  std::array<std::string, kHellaswagEndings> endings;
};

// Parses the whole text; the error names the 1-based line that is wrong.
absl::StatusOr<std::vector<HellaswagTask>> ParseHellaswagTasks(absl::string_view text);

// Reads and parses a file.
absl::StatusOr<std::vector<HellaswagTask>> ReadHellaswagTasks(const std::string& path);

}  // namespace apex4

#endif  // APEX4_TOOLS_EVAL_HELLASWAG_TASKS_H_
