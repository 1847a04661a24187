// Continuous batching: one thread owns the engine and advances every running sequence by one
// forward step at a time. Requests wait in a bounded queue, join the running batch at a step
// boundary when there is room (batch slot and KV cache), and leave it the step they finish, are
// cancelled or pass their deadline, which frees their KV cache at once. Long prompts are
// prefilled in chunks so that one arrival does not stall the tokens of everyone else.
#ifndef APEX4_SERVER_SCHEDULER_H_
#define APEX4_SERVER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/inference_engine.h"
#include "engine/sampler.h"
#include "server/generation_stream.h"
#include "server/metrics.h"

namespace apex4 {

struct SchedulerOptions {
  int max_batch_size = 8;
  int max_queue_size = 64;
  // Prompt tokens one sequence feeds per step; bounds the stall a long prompt causes the others.
  int prefill_chunk_tokens = 256;
  // Tokens of one step, all sequences together (the engine's limit, e.g. the CUDA engine's
  // max_step_tokens); 0: no cap beyond max_batch_size · prefill_chunk_tokens. Must be at least
  // max_batch_size, so that every decoding sequence advances in every step.
  int64_t max_step_tokens = 0;
};

// Tokens each running sequence feeds in the next step, given the prompt tokens it has left
// (0: it is decoding): one per decoding sequence, then the prefilling ones in arrival order get
// their next chunk (at most `prefill_chunk_tokens`) from what is left of `max_step_tokens`
// (0: no cap); a prefilling sequence that gets 0 waits for a later step.
std::vector<size_t> StepTokenCounts(absl::Span<const size_t> prompt_left,
                                    int prefill_chunk_tokens, int64_t max_step_tokens);

// One request as the scheduler sees it: already tokenized and validated.
struct GenerationOptions {
  std::vector<int32_t> prompt;
  SamplerConfig sampling;
  int32_t max_tokens = 0;  // > 0
  std::vector<std::string> stop;
  bool stop_at_end_of_generation = true;
  absl::Time deadline = absl::InfiniteFuture();
};

class Scheduler {
 public:
  // Starts the scheduler thread. From here on only that thread calls the engine's mutating
  // methods; `engine` and `metrics` must outlive the scheduler.
  Scheduler(InferenceEngine* engine, ServerMetrics* metrics, SchedulerOptions options);
  // Stop()s.
  ~Scheduler();

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. RESOURCE_EXHAUSTED when the queue is full, OUT_OF_RANGE when the prompt
  // leaves no room in the context window, UNAVAILABLE once stopping. The stream then carries the
  // tokens and the end.
  absl::StatusOr<std::shared_ptr<GenerationStream>> Submit(GenerationOptions options);

  // Ends every queued and running request with UNAVAILABLE and joins the thread. Callers that
  // want in-flight requests to finish wait for their streams first.
  void Stop();

 private:
  struct Pending {
    std::shared_ptr<GenerationStream> stream;
    GenerationOptions options;
    absl::Time arrival;
  };
  struct Running;  // scheduler-thread state of one sequence (scheduler.cc)

  void Loop();
  // Drops cancelled and expired requests from the queue, then moves requests into the batch
  // while there is room.
  void AdmitFromQueue();
  // Ends running sequences that were cancelled or passed their deadline.
  void RetireAbandoned();
  // One forward step of the whole batch, then sampling and streaming for each sequence.
  void StepBatch();
  // Consumes one sequence's step result after a step that fed it `fed_tokens` tokens: the token
  // picked for it (-1: its logits held nothing above -inf).
  void Advance(Running& sequence, size_t fed_tokens, int32_t token_id);
  // Ends a sequence (frees its KV cache) and delivers `result` to its stream.
  void Finish(Running& sequence, absl::StatusOr<GenerationSummary> result);
  void RemoveFinished();
  void PublishGauges();

  InferenceEngine* const engine_;
  ServerMetrics* const metrics_;
  const SchedulerOptions options_;

  absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;

  // Scheduler thread only.
  std::vector<std::unique_ptr<Running>> running_;
  std::vector<int32_t> tokens_;  // the last step's picks
  std::thread thread_;
};

}  // namespace apex4

#endif  // APEX4_SERVER_SCHEDULER_H_
