#include "engine/llama_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/hadamard_transform.h"

namespace apex4 {
namespace {

TEST(RmsNormTest, ScalesEachRowByItsRootMeanSquare) {
  // Row 0: mean of squares (9 + 16) / 2 = 12.5; row 1: (1 + 1) / 2 = 1.
  const std::vector<float> x = {3, 4, 1, -1};
  const std::vector<float> weight = {1, 2};
  std::vector<float> y(4);
  RmsNorm(x.data(), weight.data(), 2, 2, 0.0f, y.data());
  EXPECT_NEAR(y[0], 3 / std::sqrt(12.5f), 1e-6);
  EXPECT_NEAR(y[1], 2 * 4 / std::sqrt(12.5f), 1e-6);
  EXPECT_NEAR(y[2], 1.0f, 1e-6);
  EXPECT_NEAR(y[3], -2.0f, 1e-6);
  RmsNorm(x.data(), weight.data(), 1, 2, 12.5f, y.data());  // eps adds to mean(x²)
  EXPECT_NEAR(y[0], 3 / std::sqrt(25.0f), 1e-6);
}

TEST(ApplyRopeTest, RotatesAdjacentPairsByPositionTimesFrequency) {
  // head_dim 4, theta 100: pair 0 turns by pos, pair 1 by pos / 100^(2/4) = pos / 10.
  std::vector<float> x = {1, 0, 0, 1, /*head 1*/ 2, 0, 0, 2};
  ApplyRope(x.data(), 2, 4, 3, 100.0f);
  for (int h = 0; h < 2; ++h) {
    const float s = h + 1.0f;
    EXPECT_NEAR(x[h * 4 + 0], s * std::cos(3.0), 1e-6);
    EXPECT_NEAR(x[h * 4 + 1], s * std::sin(3.0), 1e-6);
    EXPECT_NEAR(x[h * 4 + 2], -s * std::sin(0.3), 1e-6);
    EXPECT_NEAR(x[h * 4 + 3], s * std::cos(0.3), 1e-6);
  }
  std::vector<float> unchanged = {0.5f, -1.5f};
  ApplyRope(unchanged.data(), 1, 2, 0, 10000.0f);  // position 0: no rotation
  EXPECT_EQ(unchanged, (std::vector<float>{0.5f, -1.5f}));
}

TEST(SiluMulTest, GatesWithSigmoidWeightedInput) {
  std::vector<float> gate = {0.0f, 2.0f, -1.0f};
  const std::vector<float> up = {5.0f, 3.0f, -2.0f};
  SiluMul(gate.data(), up.data(), 3);
  EXPECT_EQ(gate[0], 0.0f);
  EXPECT_NEAR(gate[1], 2.0 / (1 + std::exp(-2.0)) * 3.0, 1e-6);
  EXPECT_NEAR(gate[2], -1.0 / (1 + std::exp(1.0)) * -2.0, 1e-6);
}

TEST(AddInPlaceTest, AddsElementwise) {
  std::vector<float> x = {1, 2};
  const std::vector<float> y = {0.5f, -2};
  AddInPlace(x.data(), y.data(), 2);
  EXPECT_EQ(x, (std::vector<float>{1.5f, 0}));
}

std::vector<float> RandomRow(std::mt19937& rng, int n, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> row(n);
  for (float& v : row) v = normal(rng);
  return row;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += double{a[i]} * b[i];
  return sum;
}

TEST(QuantizeDequantizeInt4RowsTest, EachRowBecomesCodeTimesItsOwnScale) {
  constexpr int kDim = 64;
  std::mt19937 rng(7);
  std::vector<float> x;
  for (float stddev : {1.0f, 0.01f, 30.0f}) {
    const std::vector<float> row = RandomRow(rng, kDim, stddev);
    x.insert(x.end(), row.begin(), row.end());
  }
  x[kDim + 5] = -0.5f;  // an outlier in row 1: its scale follows it
  x.insert(x.end(), kDim, 0.0f);  // an all-zero row stays zero
  const int rows = static_cast<int>(x.size()) / kDim;
  for (float clip : {1.0f, 0.6f}) {
    std::vector<float> y = x;
    ASSERT_TRUE(QuantizeDequantizeInt4Rows(y.data(), rows, kDim, clip).ok());
    for (int r = 0; r < rows; ++r) {
      float absmax = 0;
      for (int i = 0; i < kDim; ++i) absmax = std::max(absmax, std::fabs(x[r * kDim + i]));
      const float scale = clip * absmax / 7;
      int largest_code = 0;
      for (int i = 0; i < kDim; ++i) {
        const float in = x[r * kDim + i];
        const float out = y[r * kDim + i];
        if (absmax == 0) {
          EXPECT_EQ(out, 0.0f);
          continue;
        }
        const float code = std::nearbyint(out / scale);
        ASSERT_GE(code, -7) << r << "," << i;
        ASSERT_LE(code, 7) << r << "," << i;
        EXPECT_EQ(out, code * scale) << "row " << r << ", element " << i;
        // Rounding to the nearest step inside the clipped range; beyond it, the end code.
        const float expected =
            std::clamp(std::nearbyint(in * (7 / (clip * absmax))), -7.0f, 7.0f);
        EXPECT_EQ(code, expected) << "row " << r << ", element " << i << ": " << in;
        if (std::fabs(in) <= clip * absmax) {
          EXPECT_LE(std::fabs(out - in), scale / 2 * (1 + 1e-5f)) << r << "," << i;
        }
        largest_code = std::max(largest_code, static_cast<int>(std::fabs(code)));
      }
      if (absmax > 0) {
        EXPECT_EQ(largest_code, 7) << "row " << r << ": absmax maps to 7";
      }
    }
  }
  EXPECT_FALSE(QuantizeDequantizeInt4Rows(x.data(), 1, 63, 1.0f).ok());  // odd
  EXPECT_FALSE(QuantizeDequantizeInt4Rows(x.data(), 1, kDim, 0.0f).ok());
  EXPECT_FALSE(QuantizeDequantizeInt4Rows(x.data(), 1, kDim, 1.5f).ok());
}

// The key rotation of the 4-bit cache: q and k both turn by the same orthonormal H, so q·k is
// unchanged, and a key's outlier channel is spread over the head before it is rounded.
TEST(QuantizeDequantizeInt4RowsTest, HadamardRotationKeepsDotProductsAndHelpsOutliers) {
  constexpr int kHeadDim = 64;
  std::mt19937 rng(3);
  double plain_error = 0, rotated_error = 0;
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> q = RandomRow(rng, kHeadDim, 1.0f);
    std::vector<float> k = RandomRow(rng, kHeadDim, 1.0f);
    k[trial % kHeadDim] += 25.0f;  // an outlier channel, as keys have
    const double exact = Dot(q, k);
    std::vector<float> q_rotated = q, k_rotated = k;
    ASSERT_TRUE(HadamardTransform(q_rotated.data(), 1, kHeadDim, kHeadDim).ok());
    ASSERT_TRUE(HadamardTransform(k_rotated.data(), 1, kHeadDim, kHeadDim).ok());
    EXPECT_NE(k_rotated, k);
    EXPECT_NEAR(Dot(q_rotated, k_rotated), exact, 1e-4 * (1 + std::fabs(exact)));

    std::vector<float> k_plain = k;
    ASSERT_TRUE(QuantizeDequantizeInt4Rows(k_plain.data(), 1, kHeadDim, 1.0f).ok());
    ASSERT_TRUE(QuantizeDequantizeInt4Rows(k_rotated.data(), 1, kHeadDim, 1.0f).ok());
    plain_error += std::fabs(Dot(q, k_plain) - exact);
    rotated_error += std::fabs(Dot(q_rotated, k_rotated) - exact);
  }
  std::printf("mean |q.k error| of a 4-bit key with an outlier: %.3f plain, %.3f rotated\n",
              plain_error / 20, rotated_error / 20);
  // Measured with this seed: 6.5 plain, 1.5 rotated.
  EXPECT_LT(rotated_error, plain_error / 2) << plain_error << " vs " << rotated_error;
}

}  // namespace
}  // namespace apex4
