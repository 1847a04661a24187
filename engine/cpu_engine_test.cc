#include "engine/cpu_engine.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/test_files.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

// SmolLM2-135M's tokens for "The capital of France is", and llama.cpp's first greedy token
// after them (" Paris"), from llama-cpp-python on the same file.
const std::vector<int32_t> kCapitalPrompt = {504, 3575, 282, 4649, 314};
constexpr int32_t kParis = 7042;

// Sums what the engine reports, per kernel kind.
class SummingKernelTimer : public KernelTimer {
 public:
  void Record(KernelKind kind, double seconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    seconds_[kind] += seconds;
  }
  std::map<KernelKind, double> seconds() {
    std::lock_guard<std::mutex> lock(mu_);
    return seconds_;
  }

 private:
  std::mutex mu_;
  std::map<KernelKind, double> seconds_;
};

std::unique_ptr<InferenceEngine> LoadEngine(int64_t kv_cache_mb) {
  EngineOptions options;
  options.model_path = DefaultModelPath();
  options.kv_cache_mb = kv_cache_mb;
  auto engine = LoadCpuEngine(options);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

int32_t Argmax(const std::vector<float>& logits, int32_t row, int32_t vocab) {
  const float* begin = logits.data() + int64_t{row} * vocab;
  return static_cast<int32_t>(std::max_element(begin, begin + vocab) - begin);
}

class CpuEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { engine_ = LoadEngine(64).release(); }
  static void TearDownTestSuite() { delete engine_; }
  static InferenceEngine* engine_;
};

InferenceEngine* CpuEngineTest::engine_ = nullptr;

TEST_F(CpuEngineTest, DescribesTheModel) {
  ASSERT_NE(engine_, nullptr);
  const EngineInfo& info = engine_->info();
  EXPECT_EQ(info.name, "SmolLM2-135M-Instruct");
  EXPECT_EQ(info.architecture, "llama");
  EXPECT_EQ(info.format, "gguf");
  EXPECT_EQ(info.quantization, "fp32");
  EXPECT_EQ(info.backend, "cpu");
  EXPECT_EQ(info.vocab_size, 49152);
  EXPECT_EQ(info.context_length, 8192);
  EXPECT_EQ(info.num_layers, 30);
  EXPECT_EQ(info.hidden_size, 576);
  EXPECT_EQ(info.kv_cache_bits, 16);
  EXPECT_EQ(engine_->tokenizer().vocab_size(), 49152);
  EXPECT_EQ(*engine_->tokenizer().Encode("The capital of France is", false, true),
            kCapitalPrompt);
}

TEST_F(CpuEngineTest, PredictsParisAndCountsKvBlocks) {
  const int32_t vocab = engine_->info().vocab_size;
  const KvCacheUsage before = engine_->kv_usage();
  auto id = engine_->StartSequence(40);
  ASSERT_TRUE(id.ok()) << id.status();
  std::vector<float> logits;
  ASSERT_TRUE(engine_->Step({{*id, kCapitalPrompt}}, &logits).ok());
  ASSERT_EQ(logits.size(), static_cast<size_t>(vocab));
  EXPECT_EQ(Argmax(logits, 0, vocab), kParis);
  EXPECT_EQ(engine_->kv_usage().blocks_in_use, before.blocks_in_use + 1);  // 5 of 16 slots

  const std::vector<int32_t> twelve(12, kParis);
  ASSERT_TRUE(engine_->Step({{*id, twelve}}, &logits).ok());
  const KvCacheUsage usage = engine_->kv_usage();
  EXPECT_EQ(usage.blocks_in_use, before.blocks_in_use + 2);  // 17 tokens
  EXPECT_EQ(usage.bytes_in_use, usage.blocks_in_use * (usage.bytes_in_use / usage.blocks_in_use));
  engine_->EndSequence(*id);
  EXPECT_EQ(engine_->kv_usage().blocks_in_use, before.blocks_in_use);
  engine_->EndSequence(*id);  // already gone: ignored
}

TEST_F(CpuEngineTest, ChunkedPrefillAndAllLogitsMatchOneStep) {
  const int32_t vocab = engine_->info().vocab_size;
  auto whole = *engine_->StartSequence(16);
  auto chunked = *engine_->StartSequence(16);
  auto scored = *engine_->StartSequence(16);
  std::vector<float> whole_logits, chunk_logits, all_logits;
  ASSERT_TRUE(engine_->Step({{whole, kCapitalPrompt}}, &whole_logits).ok());
  const absl::Span<const int32_t> prompt(kCapitalPrompt);
  ASSERT_TRUE(engine_->Step({{chunked, prompt.subspan(0, 2)}}, &chunk_logits).ok());
  ASSERT_TRUE(engine_->Step({{chunked, prompt.subspan(2, 1)}}, &chunk_logits).ok());
  ASSERT_TRUE(engine_->Step({{chunked, prompt.subspan(3)}}, &chunk_logits).ok());
  EXPECT_EQ(chunk_logits, whole_logits);

  ASSERT_TRUE(engine_->StepAllLogits({scored, kCapitalPrompt}, &all_logits).ok());
  ASSERT_EQ(all_logits.size(), kCapitalPrompt.size() * vocab);
  EXPECT_TRUE(std::equal(whole_logits.begin(), whole_logits.end(),
                         all_logits.end() - vocab));
  for (int64_t id : {whole, chunked, scored}) engine_->EndSequence(id);
}

TEST_F(CpuEngineTest, PicksAreTokenPickersOnStepsLogits) {
  const size_t vocab = engine_->info().vocab_size;
  const std::vector<int32_t> other = {1, 504, 3};
  const int64_t a = *engine_->StartSequence(16), b = *engine_->StartSequence(16);
  std::vector<float> logits;
  ASSERT_TRUE(engine_->Step({{a, kCapitalPrompt}, {b, other}}, &logits).ok());
  const int64_t c = *engine_->StartSequence(16), d = *engine_->StartSequence(16);
  std::vector<int32_t> tokens;
  const TokenPick picks[] = {{0.0f, 0, 1.0f, 0.0}, {1.0f, 40, 0.9f, 0.625}};
  ASSERT_TRUE(engine_->StepAndPick({{c, kCapitalPrompt}, {d, other}}, picks, &tokens).ok());
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0], GreedyToken(absl::MakeConstSpan(logits.data(), vocab)));
  TokenPicker picker;
  EXPECT_EQ(tokens[1], *picker.Pick(picks[1], absl::MakeConstSpan(logits.data() + vocab, vocab)));
  const TokenPick one_pick[] = {{}};
  EXPECT_EQ(engine_->StepAndPick({{a, kCapitalPrompt}, {b, other}}, one_pick, &tokens).code(),
            absl::StatusCode::kInvalidArgument);
  const TokenPick bad_uniform[] = {{1.0f, 0, 1.0f, 1.0}, {}};
  EXPECT_EQ(engine_->StepAndPick({{a, kCapitalPrompt}, {b, other}}, bad_uniform, &tokens).code(),
            absl::StatusCode::kInvalidArgument);
  for (int64_t id : {a, b, c, d}) engine_->EndSequence(id);
}

TEST_F(CpuEngineTest, RefusesBadRequestsAndLeavesTheCacheAlone) {
  EXPECT_EQ(engine_->StartSequence(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->StartSequence(8193).status().code(), absl::StatusCode::kInvalidArgument);
  // 64 MiB hold 91 blocks of 16 tokens (737,280 bytes each): 1,456 tokens.
  EXPECT_EQ(engine_->kv_usage().blocks_total, 91);
  EXPECT_EQ(engine_->StartSequence(8192).status().code(),
            absl::StatusCode::kResourceExhausted);

  auto id = *engine_->StartSequence(8);
  std::vector<float> logits;
  EXPECT_EQ(engine_->Step({{id, kCapitalPrompt}, {id + 1000, kCapitalPrompt}}, &logits).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->kv_usage().blocks_in_use, 0);
  engine_->EndSequence(id);
}

TEST_F(CpuEngineTest, ReportsKernelTimes) {
  SummingKernelTimer timer;
  engine_->set_kernel_timer(&timer);
  auto id = *engine_->StartSequence(8);
  std::vector<float> logits;
  ASSERT_TRUE(engine_->Step({{id, kCapitalPrompt}}, &logits).ok());
  engine_->set_kernel_timer(nullptr);
  engine_->EndSequence(id);
  const std::map<KernelKind, double> seconds = timer.seconds();
  for (KernelKind kind : {KernelKind::kGemmFp32, KernelKind::kAttention, KernelKind::kNorm,
                          KernelKind::kLmHead}) {
    ASSERT_TRUE(seconds.count(kind)) << KernelKindName(kind);
    EXPECT_GT(seconds.at(kind), 0) << KernelKindName(kind);
  }
  EXPECT_FALSE(seconds.count(KernelKind::kGemmW4A4));
}

// A Hugging Face directory exported from the default GGUF (FP32 safetensors by
// tools/gguf_export.py, tokenizer.json by the tokenizer test's writer) serves the same model.
TEST_F(CpuEngineTest, ServesAHuggingFaceDirectoryLikeTheGguf) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string directory = std::string(tmp != nullptr ? tmp : "/tmp") + "/SmolLM2-hf";
  const std::string command = HfExportCommand(DefaultModelPath(), directory);
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  EngineOptions options;
  options.model_path = directory;
  options.kv_cache_mb = 16;
  auto hf_engine = LoadCpuEngine(options);
  ASSERT_TRUE(hf_engine.ok()) << hf_engine.status();
  const EngineInfo& info = (*hf_engine)->info();
  EXPECT_EQ(info.name, "SmolLM2-hf");
  EXPECT_EQ(info.format, "safetensors");
  EXPECT_EQ(info.quantization, "fp32");
  EXPECT_EQ(info.context_length, 8192);
  EXPECT_EQ(*(*hf_engine)->tokenizer().Encode("The capital of France is", false, true),
            kCapitalPrompt);

  std::vector<float> gguf_logits, hf_logits;
  const int64_t gguf_id = *engine_->StartSequence(8);
  const int64_t hf_id = *(*hf_engine)->StartSequence(8);
  ASSERT_TRUE(engine_->Step({{gguf_id, kCapitalPrompt}}, &gguf_logits).ok());
  ASSERT_TRUE((*hf_engine)->Step({{hf_id, kCapitalPrompt}}, &hf_logits).ok());
  EXPECT_EQ(hf_logits, gguf_logits);
  engine_->EndSequence(gguf_id);

  // kv_cache_bits 4 gives both formats the same 4-bit cache (llama_model_kv_cache_test checks
  // its numbers): the logits move, identically, and " Paris" stays the answer.
  std::vector<float> int4_logits[2];
  int index = 0;
  for (const std::string& path : {DefaultModelPath(), directory}) {
    options.model_path = path;
    options.kv_cache_bits = 4;
    auto engine = LoadCpuEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    EXPECT_EQ((*engine)->info().kv_cache_bits, 4) << path;
    const int64_t id = *(*engine)->StartSequence(8);
    ASSERT_TRUE((*engine)->Step({{id, kCapitalPrompt}}, &int4_logits[index]).ok());
    EXPECT_EQ(Argmax(int4_logits[index], 0, info.vocab_size), kParis) << path;
    ++index;
  }
  EXPECT_EQ(int4_logits[0], int4_logits[1]);
  EXPECT_NE(int4_logits[0], gguf_logits);
}

TEST(CpuEngineLoadTest, RefusesMissingModelsAndBadOptions) {
  EngineOptions options;
  options.model_path = "/nonexistent/model.gguf";
  EXPECT_EQ(LoadCpuEngine(options).status().code(), absl::StatusCode::kNotFound);
  options.model_path = DefaultModelPath();
  options.threads = 0;
  EXPECT_EQ(LoadCpuEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.threads = 2;
  options.kv_cache_mb = 0;
  EXPECT_EQ(LoadCpuEngine(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.kv_cache_mb = 16;
  options.kv_cache_bits = 8;
  const absl::Status bits = LoadCpuEngine(options).status();
  EXPECT_EQ(bits.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bits.message().find("kv_cache_bits"), std::string::npos) << bits;
}

}  // namespace
}  // namespace apex4
