#include "engine/llama_ops.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace apex4
