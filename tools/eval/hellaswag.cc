#include "tools/eval/hellaswag.h"

#include <algorithm>
#include <array>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

// Length of the token prefix shared by all candidates; kept short of the shortest candidate so
// that each has at least one token to score.
int64_t CommonPrefixLength(const std::array<std::vector<int32_t>, kHellaswagEndings>& candidates) {
  int64_t shortest = static_cast<int64_t>(candidates[0].size());
  for (const auto& c : candidates) shortest = std::min<int64_t>(shortest, c.size());
  int64_t prefix = 0;
  while (prefix < shortest - 1 &&
         std::all_of(candidates.begin(), candidates.end(), [&](const std::vector<int32_t>& c) {
           return c[prefix] == candidates[0][prefix];
         })) {
    ++prefix;
  }
  return prefix;
}

absl::StatusOr<int> ChooseEnding(SequenceScorer& scorer, const Tokenizer& tokenizer,
                                 const HellaswagTask& task) {
  std::array<std::vector<int32_t>, kHellaswagEndings> candidates;
  for (int e = 0; e < kHellaswagEndings; ++e) {
    absl::StatusOr<std::vector<int32_t>> tokens =
        tokenizer.Encode(absl::StrCat(task.context, " ", task.endings[e]), tokenizer.add_bos(),
                         /*parse_special=*/false);
    if (!tokens.ok()) return tokens.status();
    candidates[e] = *std::move(tokens);
  }
  // The first token needs a context to be scored: the shared prefix is at least one token.
  const int64_t prefix = std::max<int64_t>(1, CommonPrefixLength(candidates));
  int best = -1;
  double best_score = 0.0;
  for (int e = 0; e < kHellaswagEndings; ++e) {
    absl::StatusOr<std::vector<double>> log_probs = scorer.TokenLogProbs(candidates[e], prefix);
    if (!log_probs.ok()) return log_probs.status();
    double sum = 0.0;
    for (double log_prob : *log_probs) sum += log_prob;
    const double score = sum / static_cast<double>(log_probs->size());
    if (best < 0 || score > best_score) {
      best = e;
      best_score = score;
    }
  }
  return best;
}

}  // namespace

absl::StatusOr<HellaswagResult> EvaluateHellaswag(SequenceScorer& scorer,
                                                  const Tokenizer& tokenizer,
                                                  absl::Span<const HellaswagTask> tasks,
                                                  int64_t max_tasks) {
  const int64_t count = max_tasks > 0 ? std::min<int64_t>(max_tasks, tasks.size()) : tasks.size();
  if (count == 0) return absl::InvalidArgumentError("hellaswag: no tasks to score");
  HellaswagResult result;
  for (int64_t t = 0; t < count; ++t) {
    absl::StatusOr<int> choice = ChooseEnding(scorer, tokenizer, tasks[t]);
    if (!choice.ok()) {
      return absl::Status(choice.status().code(),
                          absl::StrCat("hellaswag task ", t, ": ", choice.status().message()));
    }
    if (*choice == tasks[t].gold_ending) ++result.correct;
  }
  result.tasks = count;
  result.accuracy_percent = 100.0 * static_cast<double>(result.correct) / count;
  return result;
}

}  // namespace apex4
