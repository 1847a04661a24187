#include "server/scheduler.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "server/stop_matcher.h"

namespace apex4 {

struct Scheduler::Running {
  Running(Pending pending, int64_t id, const Tokenizer* tokenizer)
      : stream(std::move(pending.stream)),
        options(std::move(pending.options)),
        arrival(pending.arrival),
        sequence_id(id),
        sampler(options.sampling),
        detokenizer(tokenizer),
        stop_matcher(options.stop) {}

  std::shared_ptr<GenerationStream> stream;
  GenerationOptions options;
  absl::Time arrival;
  int64_t sequence_id;
  Sampler sampler;
  IncrementalDetokenizer detokenizer;
  StopMatcher stop_matcher;
  size_t prompt_fed = 0;          // prompt tokens already in the KV cache
  int32_t last_token = kNoToken;  // sampled, fed at the next step
  int32_t sampled_tokens = 0;     // an end-of-generation token that stops the stream included
  int32_t completion_tokens = 0;  // the tokens streamed to the client
  absl::Time first_token_time;    // of the first sampled token
  bool finished = false;
};

Scheduler::Scheduler(InferenceEngine* engine, ServerMetrics* metrics, SchedulerOptions options)
    : engine_(engine), metrics_(metrics), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<std::shared_ptr<GenerationStream>> Scheduler::Submit(GenerationOptions options) {
  const int32_t context_length = engine_->info().context_length;
  if (options.prompt.empty()) return absl::InvalidArgumentError("prompt: no tokens");
  if (static_cast<int64_t>(options.prompt.size()) >= context_length) {
    return absl::OutOfRangeError(absl::StrCat("prompt: ", options.prompt.size(),
                                              " tokens leave no room in the context window of ",
                                              context_length, " tokens"));
  }
  auto stream = std::make_shared<GenerationStream>();
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the server is shutting down");
  if (static_cast<int>(queue_.size()) >= options_.max_queue_size) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue is full (", queue_.size(), " requests waiting); retry later"));
  }
  queue_.push_back(Pending{stream, std::move(options), absl::Now()});
  metrics_->SetQueueDepth(queue_.size());
  return stream;
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      if (running_.empty()) mu_.Await(absl::Condition(&has_work));
      if (stopping_) break;
    }
    AdmitFromQueue();
    RetireAbandoned();
    PublishGauges();
    if (running_.empty()) continue;
    StepBatch();
    PublishGauges();  // sequences that finished in this step are gone
  }
  const absl::Status shutting_down = absl::UnavailableError("the server is shutting down");
  for (auto& sequence : running_) Finish(*sequence, shutting_down);
  running_.clear();
  {
    absl::MutexLock lock(&mu_);
    for (Pending& pending : queue_) pending.stream->Finish(shutting_down);
    queue_.clear();
  }
  PublishGauges();
}

void Scheduler::AdmitFromQueue() {
  const absl::Time now = absl::Now();
  std::vector<std::pair<Pending, absl::Status>> dropped;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->stream->cancelled()) {
        dropped.emplace_back(std::move(*it), absl::CancelledError("cancelled while queued"));
      } else if (now >= it->options.deadline) {
        dropped.emplace_back(std::move(*it),
                             absl::DeadlineExceededError("deadline passed while queued"));
      } else {
        ++it;
        continue;
      }
      it = queue_.erase(it);
    }
  }
  for (auto& [pending, status] : dropped) pending.stream->Finish(status);

  const int32_t context_length = engine_->info().context_length;
  while (static_cast<int>(running_.size()) < options_.max_batch_size) {
    Pending next;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) break;
      next = std::move(queue_.front());
      queue_.pop_front();
    }
    const int64_t wanted =
        static_cast<int64_t>(next.options.prompt.size()) + next.options.max_tokens;
    const int32_t reserve = static_cast<int32_t>(std::min<int64_t>(wanted, context_length));
    absl::StatusOr<int64_t> sequence_id = engine_->StartSequence(reserve);
    if (sequence_id.ok()) {
      running_.push_back(
          std::make_unique<Running>(std::move(next), *sequence_id, &engine_->tokenizer()));
      continue;
    }
    if (absl::IsResourceExhausted(sequence_id.status()) && !running_.empty()) {
      // The KV cache fills up; wait at the head of the queue until running sequences finish.
      absl::MutexLock lock(&mu_);
      queue_.push_front(std::move(next));
      break;
    }
    next.stream->Finish(absl::Status(sequence_id.status().code(),
                                     absl::StrCat("cannot start a sequence of ", reserve,
                                                  " tokens: ", sequence_id.status().message())));
  }
}

void Scheduler::RetireAbandoned() {
  const absl::Time now = absl::Now();
  for (auto& sequence : running_) {
    if (sequence->stream->cancelled()) {
      Finish(*sequence, absl::CancelledError("cancelled by the client"));
    } else if (now >= sequence->options.deadline) {
      Finish(*sequence, absl::DeadlineExceededError(absl::StrCat(
                            "deadline passed after ", sequence->completion_tokens, " tokens")));
    }
  }
  RemoveFinished();
}

std::vector<size_t> StepTokenCounts(absl::Span<const size_t> prompt_left,
                                    int prefill_chunk_tokens, int64_t max_step_tokens) {
  std::vector<size_t> counts(prompt_left.size(), 0);
  int64_t budget = max_step_tokens > 0 ? max_step_tokens : std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < prompt_left.size(); ++i) {
    if (prompt_left[i] == 0) {
      counts[i] = 1;
      --budget;
    }
  }
  for (size_t i = 0; i < prompt_left.size(); ++i) {
    if (prompt_left[i] == 0 || budget <= 0) continue;
    counts[i] = static_cast<size_t>(std::min<int64_t>(
        {static_cast<int64_t>(prompt_left[i]), int64_t{prefill_chunk_tokens}, budget}));
    budget -= static_cast<int64_t>(counts[i]);
  }
  return counts;
}

void Scheduler::StepBatch() {
  std::vector<size_t> prompt_left;
  prompt_left.reserve(running_.size());
  for (const auto& sequence : running_) {
    prompt_left.push_back(sequence->options.prompt.size() - sequence->prompt_fed);
  }
  const std::vector<size_t> counts =
      StepTokenCounts(prompt_left, options_.prefill_chunk_tokens, options_.max_step_tokens);
  // Every entry's next token is picked where the logits are. A sequence's pick (and its random
  // draw) is taken once per step, so the retries below draw nothing new. Prompt chunks before the
  // last one have no token to pick: they ask for the cheapest, greedy.
  std::vector<SequenceStep> batch;
  std::vector<TokenPick> picks;
  std::vector<Running*> stepped;  // stepped[i] feeds batch[i]
  batch.reserve(running_.size());
  for (size_t i = 0; i < running_.size(); ++i) {
    Running& sequence = *running_[i];
    if (counts[i] == 0) continue;  // a prompt chunk that did not fit this step's tokens
    TokenPick pick;
    if (prompt_left[i] <= counts[i]) {
      absl::StatusOr<TokenPick> next = sequence.sampler.NextPick();
      if (!next.ok()) {  // refused at admission in practice (request_validation)
        Finish(sequence, next.status());
        continue;
      }
      pick = *next;
    }
    const std::vector<int32_t>& prompt = sequence.options.prompt;
    if (prompt_left[i] > 0) {
      batch.push_back({sequence.sequence_id,
                       absl::MakeConstSpan(prompt.data() + sequence.prompt_fed, counts[i])});
    } else {
      batch.push_back({sequence.sequence_id, absl::MakeConstSpan(&sequence.last_token, 1)});
    }
    picks.push_back(pick);
    stepped.push_back(&sequence);
  }
  if (batch.empty()) {
    RemoveFinished();
    return;
  }
  absl::Status status = engine_->StepAndPick(batch, picks, &tokens_);
  if (status.ok()) {
    for (size_t i = 0; i < batch.size(); ++i) Advance(*stepped[i], batch[i].tokens.size(), tokens_[i]);
  } else if (batch.size() == 1) {
    Finish(*stepped[0], status);
  } else {
    // A failed step changes no cache, so each sequence can be retried alone: only the ones that
    // fail by themselves are ended, everyone else keeps going.
    for (size_t i = 0; i < batch.size(); ++i) {
      absl::Status alone =
          engine_->StepAndPick(absl::MakeConstSpan(&batch[i], 1), absl::MakeConstSpan(&picks[i], 1), &tokens_);
      if (alone.ok()) {
        Advance(*stepped[i], batch[i].tokens.size(), tokens_[0]);
      } else {
        Finish(*stepped[i], alone);
      }
    }
  }
  RemoveFinished();
}

void Scheduler::Advance(Running& sequence, size_t fed_tokens, int32_t token_id) {
  const GenerationOptions& options = sequence.options;
  if (sequence.prompt_fed < options.prompt.size()) {
    sequence.prompt_fed += fed_tokens;
    if (sequence.prompt_fed < options.prompt.size()) return;  // more prompt chunks to come
    metrics_->AddPromptTokens(options.prompt.size());
  }
  if (token_id < 0) return Finish(sequence, NoTokenError());
  ++sequence.sampled_tokens;
  metrics_->AddGeneratedTokens(1);  // the engine's work, a final end-of-generation token included
  const absl::Time now = absl::Now();
  if (sequence.sampled_tokens == 1) {
    sequence.first_token_time = now;
    metrics_->ObserveTimeToFirstToken(absl::ToDoubleSeconds(now - sequence.arrival));
  }

  GenerationChunk chunk;
  std::optional<FinishReason> finish;
  bool stop_string_found = false;
  // The end-of-generation token only ends the stream: the client gets neither its id nor a chunk
  // of its own, and usage does not count it (with ignore_eos it is an ordinary token).
  if (options.stop_at_end_of_generation && engine_->tokenizer().IsEndOfGeneration(token_id)) {
    finish = FinishReason::kStop;
  } else {
    ++sequence.completion_tokens;
    chunk.token_ids.push_back(token_id);
    absl::StatusOr<std::string> text = sequence.detokenizer.Append(token_id);
    if (!text.ok()) return Finish(sequence, text.status());
    StopMatcher::Output output = sequence.stop_matcher.Append(*text);
    chunk.text = std::move(output.text);
    stop_string_found = output.stopped;
  }
  if (stop_string_found) {
    finish = FinishReason::kStop;
  } else if (!finish.has_value()) {
    if (sequence.completion_tokens >= options.max_tokens) {
      finish = FinishReason::kLength;
    } else if (static_cast<int64_t>(options.prompt.size()) + sequence.sampled_tokens >=
               engine_->info().context_length) {
      finish = FinishReason::kContextFull;
    }
  }
  if (!finish.has_value()) {
    sequence.last_token = token_id;
    sequence.stream->Emit(std::move(chunk));
    return;
  }
  if (!stop_string_found) {
    // Release what was held back: a split character's bytes, a possible stop string's start.
    StopMatcher::Output rest = sequence.stop_matcher.Append(sequence.detokenizer.Flush());
    chunk.text += rest.text;
    if (rest.stopped) {
      finish = FinishReason::kStop;
    } else {
      chunk.text += sequence.stop_matcher.Flush();
    }
  }
  // Held-back text may remain to be sent where the last token brought none of its own.
  if (!chunk.token_ids.empty() || !chunk.text.empty()) sequence.stream->Emit(std::move(chunk));
  GenerationSummary summary;
  summary.finish_reason = *finish;
  summary.prompt_tokens = static_cast<int32_t>(options.prompt.size());
  summary.completion_tokens = sequence.completion_tokens;
  summary.time_to_first_token_seconds =
      absl::ToDoubleSeconds(sequence.first_token_time - sequence.arrival);
  summary.total_seconds = absl::ToDoubleSeconds(now - sequence.arrival);
  if (sequence.sampled_tokens > 1) {
    metrics_->ObserveTimePerOutputToken(absl::ToDoubleSeconds(now - sequence.first_token_time) /
                                        (sequence.sampled_tokens - 1));
  }
  Finish(sequence, summary);
}

void Scheduler::Finish(Running& sequence, absl::StatusOr<GenerationSummary> result) {
  engine_->EndSequence(sequence.sequence_id);
  sequence.finished = true;
  sequence.stream->Finish(std::move(result));
}

void Scheduler::RemoveFinished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& sequence) { return sequence->finished; }),
                 running_.end());
}

void Scheduler::PublishGauges() {
  {
    absl::MutexLock lock(&mu_);
    metrics_->SetQueueDepth(queue_.size());
  }
  metrics_->SetBatchSize(running_.size());
  metrics_->SetKvCacheBlocksInUse(engine_->kv_usage().blocks_in_use);
}

}  // namespace apex4
