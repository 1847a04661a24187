// HellaSwag accuracy by length-normalised log-likelihood, as llama.cpp's `--hellaswag` scores
// it: each ending is appended to the context with one space, the tokens after the part common to
// all four tokenized candidates are scored given everything before them, and the ending with the
// highest mean log-probability per token is the model's choice.
#ifndef APEX4_TOOLS_EVAL_HELLASWAG_H_
#define APEX4_TOOLS_EVAL_HELLASWAG_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/tokenizer.h"
#include "tools/eval/hellaswag_tasks.h"
#include "tools/eval/sequence_scorer.h"

namespace apex4 {

struct HellaswagResult {
  int64_t tasks = 0;
  int64_t correct = 0;
  double accuracy_percent = 0.0;
};

// Scores the first `max_tasks` tasks (all when <= 0).
absl::StatusOr<HellaswagResult> EvaluateHellaswag(SequenceScorer& scorer,
                                                  const Tokenizer& tokenizer,
                                                  absl::Span<const HellaswagTask> tasks,
                                                  int64_t max_tasks);

}  // namespace apex4

#endif  // APEX4_TOOLS_EVAL_HELLASWAG_H_
