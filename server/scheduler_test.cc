// The scheduler with the real CPU engine on the real SmolLM2 model (small max_tokens).
#include "server/scheduler.h"

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "engine/chat_template.h"
#include "engine/cpu_engine.h"
#include "engine/test_files.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

struct Completion {
  absl::StatusOr<GenerationSummary> end = absl::UnknownError("no end");
  std::vector<int32_t> ids;
  std::string text;
  int chunks = 0;
  int empty_chunks = 0;  // neither text nor token ids
};

// Reads a stream to its end (bounded: a test must not hang).
Completion Drain(GenerationStream& stream) {
  Completion completion;
  const absl::Time deadline = absl::Now() + absl::Minutes(3);
  while (absl::Now() < deadline) {
    GenerationStream::Output output = stream.Next(absl::Milliseconds(100));
    for (GenerationChunk& chunk : output.chunks) {
      ++completion.chunks;
      if (chunk.text.empty() && chunk.token_ids.empty()) ++completion.empty_chunks;
      completion.text += chunk.text;
      completion.ids.insert(completion.ids.end(), chunk.token_ids.begin(), chunk.token_ids.end());
    }
    if (output.end.has_value()) {
      completion.end = std::move(*output.end);
      return completion;
    }
  }
  return completion;
}

// Waits for the first chunk of a stream, keeping what it read.
bool AwaitFirstChunk(GenerationStream& stream) {
  const absl::Time deadline = absl::Now() + absl::Minutes(1);
  while (absl::Now() < deadline) {
    if (!stream.Next(absl::Milliseconds(50)).chunks.empty()) return true;
  }
  return false;
}

class SchedulerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions options;
    options.model_path = DefaultModelPath();
    options.threads = 2;
    options.kv_cache_mb = 256;  // ~5k tokens of SmolLM2-135M
    absl::StatusOr<std::unique_ptr<InferenceEngine>> engine = LoadCpuEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = engine->release();
  }
  static void TearDownTestSuite() { delete engine_; }

  std::vector<int32_t> Encode(const std::string& text) {
    return *engine_->tokenizer().Encode(text, engine_->tokenizer().add_bos(), true);
  }

  GenerationOptions Greedy(const std::string& prompt, int max_tokens) {
    GenerationOptions options;
    options.prompt = Encode(prompt);
    options.max_tokens = max_tokens;
    options.stop_at_end_of_generation = false;
    return options;
  }

  // A one-message conversation in the model's chat template, stopping at its end of turn.
  GenerationOptions Chat(const std::string& question, int max_tokens) {
    absl::StatusOr<ChatTemplate> chat_template = ChatTemplate::FromJinja(
        engine_->tokenizer().chat_template(),
        *engine_->tokenizer().TokenPiece(engine_->tokenizer().bos_id(), true));
    GenerationOptions options;
    options.max_tokens = max_tokens;
    if (!chat_template.ok()) {
      ADD_FAILURE() << chat_template.status();
      return options;  // no prompt: Submit refuses it
    }
    absl::StatusOr<std::vector<int32_t>> prompt =
        chat_template->Encode({{"user", question}}, true, engine_->tokenizer());
    EXPECT_TRUE(prompt.ok()) << prompt.status();
    options.prompt = prompt.value_or(std::vector<int32_t>());
    return options;
  }

  // Four prompts of different lengths, submitted together to a scheduler with `batched`, get
  // the greedy tokens each gets alone (max_batch_size 1).
  void ExpectGreedyTokensAsAlone(const SchedulerOptions& batched, int max_tokens) {
    const std::vector<std::string> prompts = {
        "Once upon a time, in a small village by the sea, there lived an old fisherman who",
        "List three primary colors:", "def fibonacci(n):", "The quick brown fox"};
    std::vector<std::vector<int32_t>> alone;
    {
      Scheduler scheduler(engine_, &metrics_, SchedulerOptions{.max_batch_size = 1});
      for (const std::string& prompt : prompts)
        alone.push_back(Run(scheduler, Greedy(prompt, max_tokens)).ids);
    }
    Scheduler scheduler(engine_, &metrics_, batched);
    std::vector<std::shared_ptr<GenerationStream>> streams;
    for (const std::string& prompt : prompts) {
      streams.push_back(*scheduler.Submit(Greedy(prompt, max_tokens)));
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      Completion together = Drain(*streams[i]);
      ASSERT_TRUE(together.end.ok()) << together.end.status();
      EXPECT_EQ(together.ids, alone[i]) << prompts[i];
    }
  }

  Completion Run(Scheduler& scheduler, GenerationOptions options) {
    absl::StatusOr<std::shared_ptr<GenerationStream>> stream = scheduler.Submit(std::move(options));
    if (!stream.ok()) {
      Completion failed;
      failed.end = stream.status();
      return failed;
    }
    return Drain(**stream);
  }

  static InferenceEngine* engine_;
  ServerMetrics metrics_;
};

InferenceEngine* SchedulerTest::engine_ = nullptr;

TEST_F(SchedulerTest, StreamsOneChunkPerTokenUpToMaxTokens) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  Completion completion = Run(scheduler, Greedy("The capital of France is", 6));
  ASSERT_TRUE(completion.end.ok()) << completion.end.status();
  EXPECT_EQ(completion.end->finish_reason, FinishReason::kLength);
  EXPECT_EQ(completion.end->completion_tokens, 6);
  EXPECT_EQ(completion.ids.size(), 6u);
  EXPECT_EQ(completion.chunks, 6);
  EXPECT_EQ(completion.end->prompt_tokens,
            static_cast<int>(Encode("The capital of France is").size()));
  EXPECT_EQ(completion.text, *engine_->tokenizer().Decode(completion.ids));
  EXPECT_GT(completion.end->total_seconds, completion.end->time_to_first_token_seconds);
}

TEST_F(SchedulerTest, ChunkedPrefillAndBatchingDoNotChangeGreedyTokens) {
  // Four at once, prompts fed 3 tokens per step: joins and leaves happen mid-prefill.
  ExpectGreedyTokensAsAlone(SchedulerOptions{.max_batch_size = 4, .prefill_chunk_tokens = 3}, 8);
}

TEST(StepTokenCounts, DecodersFirstThenPromptChunksInArrivalOrderWithinTheCap) {
  // No cap: every prefilling sequence gets a full chunk (or what its prompt has left).
  EXPECT_EQ(StepTokenCounts({0, 300, 5, 0}, 256, 0), (std::vector<size_t>{1, 256, 5, 1}));
  // Cap 300: the two decoders take 2, the first prompt its chunk of 256, the next what is left.
  EXPECT_EQ(StepTokenCounts({0, 300, 100, 0}, 256, 300), (std::vector<size_t>{1, 256, 42, 1}));
  // Nothing left for the last prompt: it waits (0) while the others advance.
  EXPECT_EQ(StepTokenCounts({300, 0, 100}, 256, 257), (std::vector<size_t>{256, 1, 0}));
  // The cap at max_batch_size still moves the first prompt while everyone else decodes.
  EXPECT_EQ(StepTokenCounts({0, 0, 0, 9}, 256, 4), (std::vector<size_t>{1, 1, 1, 1}));
  for (int64_t cap : {4, 5, 17, 64, 300, 2048}) {
    const std::vector<size_t> counts = StepTokenCounts({700, 0, 3, 0, 2000, 1}, 256, cap);
    size_t total = 0;
    for (size_t c : counts) total += c;
    EXPECT_LE(total, static_cast<size_t>(cap)) << cap;
    EXPECT_GT(counts[0], 0u) << "the oldest prompt always advances, cap " << cap;
  }
}

TEST_F(SchedulerTest, StepTokenCapDoesNotChangeGreedyTokens) {
  // Four sequences, chunks of 8, at most 6 tokens a step: prompts wait for room and are split
  // at other places than the chunk size.
  ExpectGreedyTokensAsAlone(
      SchedulerOptions{.max_batch_size = 4, .prefill_chunk_tokens = 8, .max_step_tokens = 6}, 6);
}

TEST_F(SchedulerTest, StopStringEndsBeforeIt) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  Completion full = Run(scheduler, Greedy("1, 2, 3, 4,", 8));
  ASSERT_TRUE(full.end.ok());
  const size_t comma = full.text.find(',');
  ASSERT_NE(comma, std::string::npos) << full.text;
  GenerationOptions options = Greedy("1, 2, 3, 4,", 8);
  options.stop = {","};
  Completion stopped = Run(scheduler, options);
  ASSERT_TRUE(stopped.end.ok());
  EXPECT_EQ(stopped.end->finish_reason, FinishReason::kStop);
  EXPECT_EQ(stopped.text, full.text.substr(0, comma));
}

TEST_F(SchedulerTest, EndOfGenerationTokenEndsTheStreamUnseen) {
  GenerationOptions options = Chat("What is the capital of France?", 64);
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  Completion stopped = Run(scheduler, options);
  ASSERT_TRUE(stopped.end.ok()) << stopped.end.status();
  ASSERT_EQ(stopped.end->finish_reason, FinishReason::kStop) << stopped.text;  // the model's EOS
  ASSERT_FALSE(stopped.ids.empty());
  for (int32_t id : stopped.ids) EXPECT_FALSE(engine_->tokenizer().IsEndOfGeneration(id)) << id;
  EXPECT_EQ(stopped.empty_chunks, 0);
  EXPECT_EQ(stopped.chunks, static_cast<int>(stopped.ids.size()));
  EXPECT_EQ(stopped.end->completion_tokens, static_cast<int>(stopped.ids.size()));
  EXPECT_EQ(stopped.text, *engine_->tokenizer().Decode(stopped.ids));

  // Not stopping there, the same token is an ordinary one, streamed and counted.
  options.stop_at_end_of_generation = false;
  options.max_tokens = static_cast<int32_t>(stopped.ids.size()) + 1;
  Completion going_on = Run(scheduler, options);
  ASSERT_TRUE(going_on.end.ok()) << going_on.end.status();
  EXPECT_EQ(going_on.end->finish_reason, FinishReason::kLength);
  ASSERT_EQ(going_on.ids.size(), stopped.ids.size() + 1);
  EXPECT_TRUE(std::equal(stopped.ids.begin(), stopped.ids.end(), going_on.ids.begin()));
  EXPECT_TRUE(engine_->tokenizer().IsEndOfGeneration(going_on.ids.back()));
  EXPECT_EQ(going_on.end->completion_tokens, static_cast<int>(going_on.ids.size()));
}

TEST_F(SchedulerTest, TextHeldForAStopStringIsReleasedAtEndOfGeneration) {
  GenerationOptions options = Chat("What is the capital of France?", 64);
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  Completion plain = Run(scheduler, options);
  ASSERT_TRUE(plain.end.ok()) << plain.end.status();
  ASSERT_EQ(plain.end->finish_reason, FinishReason::kStop) << plain.text;  // the model's EOS
  ASSERT_GE(plain.text.size(), 4u);
  // A stop string that starts with the answer's last characters but never completes: they are
  // held back until the end of generation shows they are not a stop string.
  options.stop = {plain.text.substr(plain.text.size() - 4) + "@@"};
  Completion held = Run(scheduler, options);
  ASSERT_TRUE(held.end.ok()) << held.end.status();
  EXPECT_EQ(held.end->finish_reason, FinishReason::kStop);
  EXPECT_EQ(held.text, plain.text);
}

TEST_F(SchedulerTest, FullQueueIsResourceExhausted) {
  Scheduler scheduler(engine_, &metrics_,
                      SchedulerOptions{.max_batch_size = 1, .max_queue_size = 1});
  std::shared_ptr<GenerationStream> running = *scheduler.Submit(Greedy("Hello", 500));
  ASSERT_TRUE(AwaitFirstChunk(*running));  // it holds the only batch slot
  std::shared_ptr<GenerationStream> queued = *scheduler.Submit(Greedy("Hello", 500));
  absl::StatusOr<std::shared_ptr<GenerationStream>> rejected = scheduler.Submit(Greedy("Hi", 1));
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kResourceExhausted);
  running->Cancel();
  queued->Cancel();
  EXPECT_EQ(Drain(*running).end.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(Drain(*queued).end.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(SchedulerTest, CancellationFreesTheKvCacheAndSparesOthers) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{.max_batch_size = 2});
  std::shared_ptr<GenerationStream> cancelled = *scheduler.Submit(Greedy("Hello", 500));
  std::shared_ptr<GenerationStream> survivor = *scheduler.Submit(Greedy("The sky is", 12));
  ASSERT_TRUE(AwaitFirstChunk(*cancelled));
  cancelled->Cancel();
  EXPECT_EQ(Drain(*cancelled).end.status().code(), absl::StatusCode::kCancelled);
  Completion completion = Drain(*survivor);
  ASSERT_TRUE(completion.end.ok()) << completion.end.status();
  EXPECT_EQ(completion.end->completion_tokens, 12);
  // Everything ended: the scheduler thread publishes an empty cache at its next iteration.
  scheduler.Stop();
  EXPECT_EQ(engine_->kv_usage().blocks_in_use, 0);
}

TEST_F(SchedulerTest, AFailingSequenceDoesNotStopTheOthers) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{.max_batch_size = 1});
  const std::vector<int32_t> alone = Run(scheduler, Greedy("The sky is", 6)).ids;

  // A token id the engine rejects (the service's validation would have caught it) makes the
  // batched step fail; only its own sequence may end.
  Scheduler batched(engine_, &metrics_, SchedulerOptions{.max_batch_size = 2});
  GenerationOptions poisoned = Greedy("Hello", 6);
  poisoned.prompt.push_back(engine_->info().vocab_size);
  std::shared_ptr<GenerationStream> healthy = *batched.Submit(Greedy("The sky is", 6));
  std::shared_ptr<GenerationStream> failing = *batched.Submit(std::move(poisoned));
  EXPECT_EQ(Drain(*failing).end.status().code(), absl::StatusCode::kInvalidArgument);
  Completion completion = Drain(*healthy);
  ASSERT_TRUE(completion.end.ok()) << completion.end.status();
  EXPECT_EQ(completion.ids, alone);
}

TEST_F(SchedulerTest, DeadlineEndsARunningSequence) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  GenerationOptions options = Greedy("Hello", 1000);
  options.deadline = absl::Now() + absl::Milliseconds(300);
  Completion completion = Run(scheduler, options);
  EXPECT_EQ(completion.end.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(completion.ids.size(), 1000u);
}

TEST_F(SchedulerTest, StopEndsEverythingWithUnavailable) {
  auto scheduler = std::make_unique<Scheduler>(engine_, &metrics_, SchedulerOptions{});
  std::shared_ptr<GenerationStream> stream = *scheduler->Submit(Greedy("Hello", 1000));
  ASSERT_TRUE(AwaitFirstChunk(*stream));
  scheduler->Stop();
  EXPECT_EQ(Drain(*stream).end.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(scheduler->Submit(Greedy("Hi", 1)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(SchedulerTest, PromptFillingTheContextIsOutOfRange) {
  Scheduler scheduler(engine_, &metrics_, SchedulerOptions{});
  GenerationOptions options = Greedy("Hi", 1);
  options.prompt.assign(engine_->info().context_length, options.prompt.back());
  EXPECT_EQ(scheduler.Submit(options).status().code(), absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace apex4
