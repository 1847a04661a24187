// The hand-off between the scheduler thread, which produces one request's tokens, and the RPC
// thread, which writes them to the client. The RPC side also signals cancellation through it.
#ifndef APEX4_SERVER_GENERATION_STREAM_H_
#define APEX4_SERVER_GENERATION_STREAM_H_

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace apex4 {

// Text and ids of newly generated tokens. `text` is complete UTF-8; it may be empty while bytes
// of a character or a possible stop string are held back.
struct GenerationChunk {
  std::string text;
  std::vector<int32_t> token_ids;
};

enum class FinishReason {
  kLength,       // max_tokens reached
  kStop,         // end-of-generation token or stop string
  kContextFull,  // the model's context window is full
};

struct GenerationSummary {
  FinishReason finish_reason = FinishReason::kLength;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;  // tokens streamed; an end-of-generation token that ended it is
                                  // not one
  double time_to_first_token_seconds = 0;
  double total_seconds = 0;
};

// Thread-safe. The scheduler calls Emit() any number of times, then Finish() once.
class GenerationStream {
 public:
  struct Output {
    std::vector<GenerationChunk> chunks;  // in generation order
    // Set once, after the last chunk: the summary, or why the request failed.
    std::optional<absl::StatusOr<GenerationSummary>> end;
  };

  // RPC side: waits until there is output or `timeout` passes, and takes what has accumulated.
  Output Next(absl::Duration timeout);
  // RPC side: the client went away or its deadline passed; the scheduler drops the request at
  // the next step boundary.
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }

  // Scheduler side.
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }
  void Emit(GenerationChunk chunk);
  void Finish(absl::StatusOr<GenerationSummary> result);

 private:
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  std::vector<GenerationChunk> chunks_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::StatusOr<GenerationSummary>> end_ ABSL_GUARDED_BY(mu_);
  bool end_taken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace apex4

#endif  // APEX4_SERVER_GENERATION_STREAM_H_
