#include "tools/eval/sequence_scorer.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

// log softmax(row)[target], in double so that long sums of it stay exact enough.
double LogProbOf(absl::Span<const float> row, int32_t target) {
  const float max_logit = *std::max_element(row.begin(), row.end());
  double sum = 0.0;
  for (float logit : row) sum += std::exp(static_cast<double>(logit) - max_logit);
  return static_cast<double>(row[target]) - max_logit - std::log(sum);
}

}  // namespace

SequenceScorer::SequenceScorer(InferenceEngine* engine, int32_t max_chunk_tokens)
    : engine_(engine), max_chunk_tokens_(max_chunk_tokens) {}

absl::StatusOr<std::vector<double>> SequenceScorer::TokenLogProbs(
    absl::Span<const int32_t> tokens, int64_t first_scored) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (first_scored < 1 || first_scored >= n) {
    return absl::InvalidArgumentError(absl::StrCat("score positions [", first_scored, ", ", n,
                                                   ") of a ", n, "-token sequence: empty"));
  }
  const int32_t vocab = engine_->info().vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("token ", i, " is ", tokens[i], ", outside the vocabulary of ", vocab));
    }
  }
  absl::StatusOr<int64_t> sequence = engine_->StartSequence(static_cast<int32_t>(n));
  if (!sequence.ok()) return sequence.status();

  std::vector<double> log_probs;
  log_probs.reserve(n - first_scored);
  absl::Status status;
  // The logits at position p predict token p + 1; the last token's predict nothing scored.
  for (int64_t begin = 0; begin < n - 1 && status.ok(); begin += max_chunk_tokens_) {
    const int64_t end = std::min(n - 1, begin + max_chunk_tokens_);
    status = engine_->StepAllLogits({*sequence, tokens.subspan(begin, end - begin)}, &logits_);
    if (status.ok() && static_cast<int64_t>(logits_.size()) != (end - begin) * vocab) {
      status = absl::InternalError(absl::StrCat("engine returned ", logits_.size(),
                                                " logits for ", end - begin, " tokens"));
    }
    for (int64_t p = begin; status.ok() && p < end; ++p) {
      if (p + 1 < first_scored) continue;
      const absl::Span<const float> row(logits_.data() + (p - begin) * vocab, vocab);
      log_probs.push_back(LogProbOf(row, tokens[p + 1]));
    }
  }
  engine_->EndSequence(*sequence);
  if (!status.ok()) return status;
  return log_probs;
}

}  // namespace apex4
