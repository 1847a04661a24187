// The 4-bit KV cache of the CPU forward pass (LlamaConfig::kv_cache.bits 4) on the real model:
// what the cache holds, row by row, and how much it moves the logits. The CPU cache stays FP32;
// with 4 bits it holds the dequantized INT4 values (code · scale).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "engine/gguf_reader.h"
#include "engine/llama_model.h"
#include "engine/llama_ops.h"
#include "engine/test_files.h"
#include "engine/tokenizer_loader.h"
#include "gtest/gtest.h"
#include "kernels/cpu/hadamard_transform.h"

namespace apex4 {
namespace {

constexpr int kPromptTokens = 160;

// The default model three times over: a float cache, a 4-bit cache as --kv_cache_bits=4 gives a
// GGUF model (no rotation, no clipping), and one with rotated keys and clipping as a checkpoint
// may ask (the rotation is valid on any model: q·k is unchanged).
struct Models {
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<LlamaModel> float_cache, int4, int4_rotated;
  std::vector<int32_t> prompt;  // the first kPromptTokens tokens of Moby Dick
};

KvCacheQuantization Int4(bool rotated) {
  KvCacheQuantization kv;
  kv.bits = 4;
  if (rotated) {
    kv.key_hadamard = true;
    kv.key_clip_ratio = 0.9f;
    kv.value_clip_ratio = 0.95f;
  }
  return kv;
}

Models* LoadModels() {
  auto models = std::make_unique<Models>();
  auto gguf = GgufReader::Open(DefaultModelPath());
  EXPECT_TRUE(gguf.ok()) << gguf.status();
  auto config = LlamaConfigFromGguf(**gguf);
  EXPECT_TRUE(config.ok()) << config.status();
  models->pool = std::make_unique<ThreadPool>(2);
  auto load = [&](const KvCacheQuantization& kv) {
    LlamaConfig with_cache = *config;
    with_cache.kv_cache = kv;
    EXPECT_TRUE(with_cache.Validate().ok());
    auto weights = LoadLlamaWeightsFromGguf(**gguf, with_cache, models->pool.get());
    EXPECT_TRUE(weights.ok()) << weights.status();
    return std::make_unique<LlamaModel>(with_cache, std::move(*weights), models->pool.get());
  };
  models->float_cache = load(KvCacheQuantization{});
  models->int4 = load(Int4(/*rotated=*/false));
  models->int4_rotated = load(Int4(/*rotated=*/true));

  auto tokenizer = TokenizerFromGguf(**gguf);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::ifstream text_file(SharedDataPath("moby_dick.txt"));
  std::string text(4096, '\0');
  text_file.read(text.data(), text.size());
  text.resize(text_file.gcount());
  auto tokens = tokenizer->Encode(text, /*add_bos=*/false, /*parse_special=*/false);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_GE(tokens->size(), static_cast<size_t>(kPromptTokens));
  models->prompt.assign(tokens->begin(), tokens->begin() + kPromptTokens);
  return models.release();
}

std::unique_ptr<PagedKvCache> MakeCache(const LlamaConfig& config) {
  return *PagedKvCache::Create({config.num_layers, config.num_kv_heads, config.head_dim},
                               int64_t{64} << 20);
}

// Runs the prompt as one sequence (all logits) into a fresh cache.
struct PromptRun {
  std::unique_ptr<PagedKvCache> cache;
  int64_t sequence = 0;
  std::vector<float> logits;  // kPromptTokens rows of vocab_size
};

PromptRun RunPrompt(LlamaModel& model, const std::vector<int32_t>& prompt) {
  PromptRun run;
  run.cache = MakeCache(model.config());
  run.sequence = *run.cache->AddSequence(static_cast<int32_t>(prompt.size()));
  const ForwardEntry entry{run.sequence, prompt, /*all_logits=*/true};
  const absl::Status status = model.Forward({&entry, 1}, run.cache.get(), nullptr, &run.logits);
  EXPECT_TRUE(status.ok()) << status;
  return run;
}

// The key (or value) row of one token and KV head of one layer.
std::vector<float> CacheRow(const PromptRun& run, int layer, int kv_head, int32_t position,
                            bool key) {
  const PagedKvCache& cache = *run.cache;
  const int head_dim = cache.shape().head_dim;
  const int32_t block = cache.BlockTable(run.sequence)[position / PagedKvCache::kBlockTokens];
  const float* slab = key ? cache.keys(block, layer, kv_head) : cache.values(block, layer, kv_head);
  const float* row = slab + (position % PagedKvCache::kBlockTokens) * head_dim;
  return std::vector<float>(row, row + head_dim);
}

class LlamaModelKvCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { models_ = LoadModels(); }
  static void TearDownTestSuite() { delete models_; }
  static Models* models_;
};

Models* LlamaModelKvCacheTest::models_ = nullptr;

// Layer 0's keys and values depend on the token alone (embedding, norm, projection, RoPE), so the
// float run gives each row before rounding: the 4-bit caches must hold exactly the rounded rows,
// keys rotated after RoPE where asked, each with its own clip ratio.
TEST_F(LlamaModelKvCacheTest, LayerZeroHoldsTheRoundedRowsOfTheFloatCache) {
  const PromptRun exact = RunPrompt(*models_->float_cache, models_->prompt);
  const LlamaConfig& config = models_->float_cache->config();
  const int head_dim = config.head_dim;
  for (LlamaModel* model : {models_->int4.get(), models_->int4_rotated.get()}) {
    const KvCacheQuantization& kv = model->config().kv_cache;
    const PromptRun rounded = RunPrompt(*model, models_->prompt);
    for (int32_t position = 0; position < kPromptTokens; ++position) {
      for (int h = 0; h < config.num_kv_heads; ++h) {
        std::vector<float> key = CacheRow(exact, 0, h, position, /*key=*/true);
        std::vector<float> value = CacheRow(exact, 0, h, position, /*key=*/false);
        if (kv.key_hadamard) {
          ASSERT_TRUE(HadamardTransformReference(key.data(), 1, head_dim, head_dim).ok());
        }
        ASSERT_TRUE(QuantizeDequantizeInt4Rows(key.data(), 1, head_dim, kv.key_clip_ratio).ok());
        ASSERT_TRUE(
            QuantizeDequantizeInt4Rows(value.data(), 1, head_dim, kv.value_clip_ratio).ok());
        ASSERT_EQ(CacheRow(rounded, 0, h, position, /*key=*/true), key)
            << "rotated " << kv.key_hadamard << ", position " << position << ", head " << h;
        ASSERT_EQ(CacheRow(rounded, 0, h, position, /*key=*/false), value)
            << "rotated " << kv.key_hadamard << ", position " << position << ", head " << h;
      }
    }
  }
}

// Every row of every layer is code · scale with codes in [-7, 7], the largest |code| 7 (or 0
// for a row of zeros): at most 15 distinct values, symmetric around zero.
TEST_F(LlamaModelKvCacheTest, EveryLayerHoldsFourBitRows) {
  const PromptRun rounded = RunPrompt(*models_->int4_rotated, models_->prompt);
  const LlamaConfig& config = models_->int4_rotated->config();
  for (int layer = 0; layer < config.num_layers; ++layer) {
    for (int32_t position = 0; position < kPromptTokens; position += 7) {
      for (int h = 0; h < config.num_kv_heads; ++h) {
        for (bool key : {true, false}) {
          const std::vector<float> row = CacheRow(rounded, layer, h, position, key);
          float absmax = 0;
          for (float v : row) absmax = std::max(absmax, std::fabs(v));
          ASSERT_GT(absmax, 0);
          const float scale = absmax / 7;
          for (float v : row) {
            const float code = std::nearbyint(v / scale);
            ASSERT_LE(std::fabs(code), 7);
            ASSERT_NEAR(v, code * scale, 1e-6f * absmax)
                << "layer " << layer << ", position " << position << ", head " << h
                << (key ? ", key" : ", value");
          }
        }
      }
    }
  }
}

struct LogitError {
  double mean_relative = 0;   // L2 norm of the difference over that of the float row, averaged
  double worst_relative = 0;
  double argmax_agreement = 0;  // share of rows with the same most likely token
  double perplexity_ratio = 0;  // perplexity of the prompt's own next tokens, over the float one
};

LogitError Compare(const std::vector<float>& ours, const std::vector<float>& exact,
                   const std::vector<int32_t>& tokens, int32_t vocab) {
  LogitError error;
  double nll_ours = 0, nll_exact = 0;
  auto nll = [&](const float* row, int32_t next) {
    const float max_logit = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int32_t v = 0; v < vocab; ++v) sum += std::exp(double{row[v]} - max_logit);
    return std::log(sum) - (row[next] - max_logit);
  };
  const int rows = static_cast<int>(tokens.size());
  for (int r = 0; r < rows; ++r) {
    const float* a = &ours[int64_t{r} * vocab];
    const float* b = &exact[int64_t{r} * vocab];
    double diff = 0, norm = 0;
    for (int32_t v = 0; v < vocab; ++v) {
      diff += (double{a[v]} - b[v]) * (double{a[v]} - b[v]);
      norm += double{b[v]} * b[v];
    }
    const double relative = std::sqrt(diff / norm);
    error.mean_relative += relative / rows;
    error.worst_relative = std::max(error.worst_relative, relative);
    error.argmax_agreement += (std::max_element(a, a + vocab) - a ==
                               std::max_element(b, b + vocab) - b) / double(rows);
    if (r + 1 < rows) {
      nll_ours += nll(a, tokens[r + 1]);
      nll_exact += nll(b, tokens[r + 1]);
    }
  }
  error.perplexity_ratio = std::exp((nll_ours - nll_exact) / (rows - 1));
  return error;
}

// Rounding keys and values to 4 bits moves the logits by what the quantizer's numpy forward
// predicts. On the same 160 tokens it gives (tools/quantizer/model.py, kv_quant set as here):
// plain 4-bit cache, relative logit error 0.607 mean, argmax agreement 59%, perplexity x1.303;
// keys rotated and clipped: 0.213, 79%, x1.093. SmolLM2's keys have outlier channels, which
// a per-head scale without the rotation rounds the other channels of to zero.
TEST_F(LlamaModelKvCacheTest, FourBitCacheMovesTheLogitsAsTheQuantizerPredicts) {
  struct Expected {
    double max_mean_relative, min_argmax_agreement, min_perplexity_ratio, max_perplexity_ratio;
  };
  const int32_t vocab = models_->float_cache->config().vocab_size;
  const PromptRun exact = RunPrompt(*models_->float_cache, models_->prompt);
  double plain_perplexity_ratio = 0;
  for (LlamaModel* model : {models_->int4.get(), models_->int4_rotated.get()}) {
    const PromptRun rounded = RunPrompt(*model, models_->prompt);
    const LogitError error = Compare(rounded.logits, exact.logits, models_->prompt, vocab);
    const bool rotated = model->config().kv_cache.key_hadamard;
    std::printf("4-bit KV cache%s vs FP32 over %d tokens: relative logit error mean %.4f, worst "
                "%.4f; same argmax %.1f%%; perplexity x%.4f\n",
                rotated ? " (keys rotated, clipped)" : "", kPromptTokens, error.mean_relative,
                error.worst_relative, 100 * error.argmax_agreement, error.perplexity_ratio);
    // Measured here (2026-11-27): plain 0.607, 60.6%, x1.316; rotated 0.212, 80.0%, x1.075.
    // The bounds leave room for float rounding flips, not for a wrong cache.
    const Expected expected = rotated ? Expected{0.3, 0.7, 1.02, 1.15}
                                      : Expected{0.8, 0.45, 1.15, 1.5};
    EXPECT_LT(error.mean_relative, expected.max_mean_relative) << rotated;
    EXPECT_GT(error.argmax_agreement, expected.min_argmax_agreement) << rotated;
    EXPECT_GT(error.perplexity_ratio, expected.min_perplexity_ratio) << rotated;
    EXPECT_LT(error.perplexity_ratio, expected.max_perplexity_ratio) << rotated;
    if (!rotated) {
      plain_perplexity_ratio = error.perplexity_ratio;
    } else {
      EXPECT_LT(error.perplexity_ratio, plain_perplexity_ratio) << "the rotation must help";
    }
  }
}

}  // namespace
}  // namespace apex4
