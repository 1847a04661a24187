#include "kernels/cpu/fp32_gemm.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

std::vector<float> RandomVector(int64_t size, std::mt19937* rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& e : v) e = dist(*rng);
  return v;
}

// Y = X · W^T in double, straight from the definition.
std::vector<double> ReferenceGemm(const std::vector<float>& x, int64_t m,
                                  const std::vector<float>& w, int64_t n, int64_t k) {
  std::vector<double> y(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double sum = 0;
      for (int64_t kk = 0; kk < k; ++kk) sum += double{x[i * k + kk]} * w[j * k + kk];
      y[i * n + j] = sum;
    }
  }
  return y;
}

struct Shape {
  int64_t m, n, k;
};

class Fp32GemmTest : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(Fp32GemmTest, MatchesDoubleReferenceOverShapes) {
  ThreadPool pool(2);
  std::mt19937 rng(7);
  // Row counts around the 4-row pass, K with and without an 8-float tail, N across grains;
  // the last shapes are SmolLM2's projections at decode and prefill.
  const Shape shapes[] = {{1, 1, 1},     {1, 5, 7},      {3, 33, 8},    {4, 17, 9},
                          {5, 64, 64},   {9, 130, 100},  {1, 192, 576}, {8, 576, 1536},
                          {37, 1536, 576}};
  for (const Shape& s : shapes) {
    SCOPED_TRACE(testing::Message() << "m=" << s.m << " n=" << s.n << " k=" << s.k);
    const std::vector<float> x = RandomVector(s.m * s.k, &rng);
    const std::vector<float> w = RandomVector(s.n * s.k, &rng);
    const std::vector<double> expected = ReferenceGemm(x, s.m, w, s.n, s.k);
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
      std::vector<float> y(s.m * s.n, NAN);
      Fp32Gemm(x.data(), s.m, w.data(), s.n, s.k, y.data(), {GetParam(), p});
      // Float accumulation of K products of magnitude <= 1: error grows like sqrt(K) ulps.
      const double tolerance = 2e-6 * std::sqrt(static_cast<double>(s.k));
      for (int64_t i = 0; i < s.m * s.n; ++i) {
        ASSERT_NEAR(y[i], expected[i], tolerance + 1e-6 * std::abs(expected[i])) << "at " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isas, Fp32GemmTest, ::testing::Values(CpuIsa::kScalar, CpuIsa::kAvx2),
                         [](const auto& info) { return std::string(CpuIsaName(info.param)); });

}  // namespace
}  // namespace apex4
