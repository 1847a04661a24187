// SampleRows (sample_rows.h) against the CPU's TokenPicker (engine/sampler.h) on fresh random
// logit rows (the seed is printed), every row with its own uniform draw:
//  - greedy rows and the cases with one answer (top_k = 1, a tiny top_p, a temperature whose
//    inverse overflows, +inf, NaN and -inf, nothing above -inf, ties): the same token exactly;
//  - sampled rows (temperature, top-k, top-p and their mixes, flat and peaked rows): the same token
//    as TokenPicker for the same uniform, except where the two rules may part by rounding: then
//    the GPU's token must be TokenPicker's for a uniform within 1e-6 of it, or weigh as much as
//    TokenPicker's to within 1e-6 (the GPU ranks by its own expf weights), or both must be far-tail tokens (below 2^-20 of the
//    best token's weight, where the fixed-point weights keep few bits: the uniforms 0 and 1 - 2^-53
//    of every case's first rows probe that end); and such partings stay rare (at most 2 + 5% of
//    the rows).
// Vocabularies staged in shared memory (49152, 32000 with a padded stride, 37) and one picked in
// place in global memory (128256); outputs poisoned; argument checks.
// Without a CUDA device: "no CUDA device: skipped".
#include "kernels/cuda/ops/sample_rows.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cuda/testing/gpu_test_util.h"

namespace apex4::cuda {
namespace {

using testing::DeviceBuffer;

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

void Report(bool ok, const char* line) { std::printf("%-90s %s\n", line, ok ? "ok" : "FAIL"); }

// The fixed-point weight sample_rows.h defines (with the host's exp: it may differ from the
// device's in the last bits, so the test compares weights only to accept ties).
uint32_t FixedWeight(float logit, float best, float temperature) {
  if (!(logit > -kInf)) return 0;
  return static_cast<uint32_t>(std::nearbyint(std::exp((logit - best) * (1.0f / temperature)) * 2147483648.0f));
}

struct Case {
  const char* name;
  SamplingRow settings;  // uniform filled per row
  bool exact;            // a single right answer whatever the rounding
};

// Rows of `cols` logits (stride ldx, padding of huge values that must not count) shaped by
// `shape`: 0 normal sigma 3 (LM-like), 1 normal sigma 0.3 (flat), 2 with NaN / -inf / ties of the
// maximum, 3 all equal, 4 with a +inf, 5 nothing above -inf.
std::vector<float> MakeRows(std::mt19937& rng, int64_t rows, int64_t cols, int64_t ldx, int shape) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int64_t> col(0, cols - 1);
  std::vector<float> x(rows * ldx, 1e30f);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &x[r * ldx];
    for (int64_t c = 0; c < cols; ++c) row[c] = (shape == 1 ? 0.3f : 3.0f) * normal(rng);
    switch (shape) {
      case 2: {
        for (int i = 0; i < 1 + static_cast<int>(cols / 64); ++i) row[col(rng)] = kNan;
        row[col(rng)] = -kInf;
        const float top = *std::max_element(row, row + cols, [](float a, float b) { return !(a >= b); }) + 1.0f;
        for (int i = 0; i < 3; ++i) row[col(rng)] = top;
        break;
      }
      case 3:
        std::fill(row, row + cols, 0.5f);
        break;
      case 4:
        row[col(rng)] = kInf;
        break;
      case 5:
        std::fill(row, row + cols, kNan);
        row[col(rng)] = -kInf;
        break;
      default:
        break;
    }
  }
  return x;
}

void TestCase(std::mt19937& rng, const Case& c, int shape, int64_t rows, int64_t cols, int64_t ldx) {
  std::vector<float> x = MakeRows(rng, rows, cols, ldx, shape);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<SamplingRow> params(rows, c.settings);
  for (SamplingRow& p : params) p.uniform = uniform(rng);
  params[0].uniform = 0.0;
  if (rows > 1) params[1].uniform = std::nextafter(1.0, 0.0);

  DeviceBuffer<float> dx(x);
  DeviceBuffer<SamplingRow> dparams(params);
  DeviceBuffer<int32_t> dout(rows);
  dout.Fill(0x7F);
  ASSERT_CUDA_OK(SampleRows(dx.get(), ldx, rows, cols, dparams.get(), dout.get(), nullptr));
  const std::vector<int32_t> out = dout.ToHost();

  TokenPicker picker;
  int64_t differ = 0, bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const absl::Span<const float> row(&x[r * ldx], cols);
    const SamplingRow& p = params[r];
    const TokenPick pick{p.temperature, p.top_k, p.top_p, p.uniform};
    const absl::StatusOr<int32_t> want = picker.Pick(pick, row);
    const int32_t cpu = want.ok() ? *want : -1;
    if (out[r] == cpu) continue;
    ++differ;
    bool explained = false;
    if (!c.exact && cpu >= 0 && out[r] >= 0 && out[r] < cols) {
      for (double shift : {-1e-6, 1e-6}) {
        TokenPick moved = pick;
        moved.uniform = std::clamp(p.uniform + shift, 0.0, std::nextafter(1.0, 0.0));
        explained = explained || *picker.Pick(moved, row) == out[r];
      }
      // The GPU ranks by its own weights (device expf, within 2 ulp of exp), the CPU by logit:
      // tokens whose weights are that close may swap places (and equal ones rank by id). At the
      // far tail (both below 2^-20 of the best token's weight: drawn about once in 10^6) weights
      // are rounded to few bits.
      const float best = row[GreedyToken(row)];
      const double gpu_weight = FixedWeight(row[out[r]], best, p.temperature);
      const double cpu_weight = FixedWeight(row[cpu], best, p.temperature);
      explained = explained || std::fabs(gpu_weight - cpu_weight) <= 1e-6 * std::max(gpu_weight, cpu_weight) + 1.0 ||
                  std::max(gpu_weight, cpu_weight) <= double{1u << 11};
    }
    if (!explained) {
      if (++bad <= 3) {
        std::printf("  row %lld: GPU %d, TokenPicker %d (uniform %.17g)\n", (long long)r, out[r], cpu, p.uniform);
      }
    }
  }
  const bool ok = bad == 0 && differ <= 2 + rows / 20;
  char line[200];
  std::snprintf(line, sizeof(line), "%s, shape %d, %lld rows x %lld (ldx %lld): %lld differ from TokenPicker, %lld unexplained",
                c.name, shape, (long long)rows, (long long)cols, (long long)ldx, (long long)differ, (long long)bad);
  EXPECT_TRUE_MSG(ok, "%s", line);
  Report(ok, line);
}

void ExpectInvalid(const CudaStatus& status, const char* what) {
  EXPECT_TRUE_MSG(status.code == cudaErrorInvalidValue, "%s: expected cudaErrorInvalidValue, got %s", what,
                  cudaGetErrorString(status.code));
}

void TestArgumentChecks() {
  const int failures_before = testing::g_failures;
  DeviceBuffer<float> x(256);
  DeviceBuffer<SamplingRow> params(4);
  DeviceBuffer<int32_t> out(4);
  ExpectInvalid(SampleRows(x.get(), 63, 4, 64, params.get(), out.get(), nullptr), "ldx < cols");
  ExpectInvalid(SampleRows(x.get(), 64, 4, 0, params.get(), out.get(), nullptr), "no columns");
  ExpectInvalid(SampleRows(x.get(), 64, -1, 64, params.get(), out.get(), nullptr), "negative rows");
  ExpectInvalid(SampleRows(x.get(), 64, 4, 64, nullptr, out.get(), nullptr), "null params");
  ExpectInvalid(SampleRows(x.get(), 64, 4, 64, params.get(), nullptr, nullptr), "null out");
  const bool ok = SampleRows(nullptr, 64, 0, 64, nullptr, nullptr, nullptr).ok();  // zero rows: nothing to do
  EXPECT_TRUE_MSG(ok, "zero rows must be a no-op");
  Report(ok && testing::g_failures == failures_before, "argument checks");
}

int Main() {
  if (!testing::HaveCudaDevice()) return 0;
  std::mt19937 rng = testing::DeviceAndSeededRng();

  const Case exact_cases[] = {
      {"greedy", {0.0f, 0, 1.0f}, true},
      {"greedy, top_k 5 ignored", {0.0f, 5, 0.5f}, true},
      {"T 1.5, top_k 1", {1.5f, 1, 1.0f}, true},
      {"T 1, top_p 1e-6", {1.0f, 0, 1e-6f}, true},
      {"T 1e-39 (inverse overflows)", {1e-39f, 0, 1.0f}, true},
  };
  const Case sampled_cases[] = {
      {"T 1", {1.0f, 0, 1.0f}, false},
      {"T 0.7, top_k 50", {0.7f, 50, 1.0f}, false},
      {"T 1, top_p 0.9", {1.0f, 0, 0.9f}, false},
      {"T 1.3, top_k 40, top_p 0.95", {1.3f, 40, 0.95f}, false},
      {"T 1, top_k 200000 (all)", {1.0f, 200000, 1.0f}, false},
      {"T 2, top_k 1000, top_p 0.5", {2.0f, 1000, 0.5f}, false},
  };
  struct Shape {
    int64_t rows, cols, ldx;
  };
  // SmolLM2's vocabulary, LLaMA-2's with a padded stride, fewer tokens than threads, and
  // LLaMA-3's (too large for shared memory: picked in place).
  const Shape shapes[] = {{128, 49152, 49152}, {128, 32000, 32003}, {64, 37, 40}, {64, 128256, 128256}};
  for (const Shape& s : shapes) {
    for (const Case& c : exact_cases) {
      for (int shape : {0, 2, 4, 5}) TestCase(rng, c, shape, s.rows, s.cols, s.ldx);
    }
    for (const Case& c : sampled_cases) {
      for (int shape : {0, 1, 2, 3, 4, 5}) TestCase(rng, c, shape, s.rows, s.cols, s.ldx);
    }
  }
  TestArgumentChecks();
  return testing::FinishTests();
}

}  // namespace
}  // namespace apex4::cuda

int main() { return apex4::cuda::Main(); }
