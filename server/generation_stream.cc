#include "server/generation_stream.h"

#include <utility>

namespace apex4 {

GenerationStream::Output GenerationStream::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto has_output = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !chunks_.empty() || (end_.has_value() && !end_taken_);
  };
  mu_.AwaitWithTimeout(absl::Condition(&has_output), timeout);
  Output output;
  output.chunks.swap(chunks_);
  if (end_.has_value() && !end_taken_) {
    output.end = std::move(end_);
    end_taken_ = true;
  }
  return output;
}

void GenerationStream::Emit(GenerationChunk chunk) {
  absl::MutexLock lock(&mu_);
  chunks_.push_back(std::move(chunk));
}

void GenerationStream::Finish(absl::StatusOr<GenerationSummary> result) {
  absl::MutexLock lock(&mu_);
  if (!end_.has_value() && !end_taken_) end_ = std::move(result);
}

}  // namespace apex4
