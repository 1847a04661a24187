#include "kernels/cpu/w4a4_reference.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

TEST(QuantizeInt4Reference, HandComputedGroup) {
  // absmax 3.5 -> scale 0.5; values / 0.5 = {7, -2, 1, 0.5->0 (half to even), -7, 2.6->3, ...}
  const std::vector<float> x = {3.5f, -1.0f, 0.5f, 0.25f, -3.5f, 1.3f, 0.0f, -0.75f};
  std::vector<uint8_t> packed(4);
  std::vector<float> scales(1);
  ASSERT_TRUE(QuantizeInt4Reference(x.data(), 1, 8, 8, 1.0f, packed.data(), scales.data()).ok());
  EXPECT_FLOAT_EQ(scales[0], 0.5f);
  const int expected[8] = {7, -2, 1, 0, -7, 3, 0, -2};  // -1.5 rounds half to even -> -2
  for (int k = 0; k < 8; ++k) EXPECT_EQ(UnpackInt4(packed[k / 2], k & 1), expected[k]) << k;
}

TEST(QuantizeInt4Reference, ZeroGroupAndClipping) {
  std::vector<float> x(16, 0.0f);
  x[8] = 10.0f;
  x[9] = -1.0f;
  std::vector<uint8_t> packed(8);
  std::vector<float> scales(2);
  ASSERT_TRUE(QuantizeInt4Reference(x.data(), 1, 16, 8, 0.7f, packed.data(), scales.data()).ok());
  EXPECT_EQ(scales[0], 0.0f);
  EXPECT_FLOAT_EQ(scales[1], 1.0f);  // 0.7 * 10 / 7
  EXPECT_EQ(UnpackInt4(packed[4], false), 7);   // 10 clipped to 7
  EXPECT_EQ(UnpackInt4(packed[4], true), -1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(packed[i], 0);
}

TEST(QuantizeInt4Reference, RejectsBadShapes) {
  float x[4] = {1, 2, 3, 4};
  uint8_t p[2];
  float s[1];
  EXPECT_FALSE(QuantizeInt4Reference(x, 1, 4, 3, 1.0f, p, s).ok());
  EXPECT_FALSE(QuantizeInt4Reference(x, 1, 4, 4, 0.0f, p, s).ok());
  EXPECT_FALSE(QuantizeInt4Reference(x, 0, 4, 4, 1.0f, p, s).ok());
}

TEST(W4A4GemmReference, HandComputedProduct) {
  // x = [1, -2, 3, 4], w = [[2, 2, -1, 0], [-8, 7, 1, 1]], group 2 on w, per-token on x.
  const uint8_t xp[2] = {PackInt4Pair(1, -2), PackInt4Pair(3, 4)};
  const float xs[1] = {0.5f};
  const uint8_t wp[4] = {PackInt4Pair(2, 2), PackInt4Pair(-1, 0), PackInt4Pair(-8, 7),
                         PackInt4Pair(1, 1)};
  const float ws[4] = {1.0f, 2.0f, 0.25f, 4.0f};
  W4A4Operand x{xp, xs, 1, 4, 4};
  W4A4Operand w{wp, ws, 2, 4, 2};
  float y[2];
  ASSERT_TRUE(W4A4GemmReference(x, w, y).ok());
  // row 0: group0 = 1*2 + -2*2 = -2 (scale 1), group1 = 3*-1 + 0 = -3 (scale 2) -> 0.5*(-2-6)
  EXPECT_FLOAT_EQ(y[0], -4.0f);
  // row 1: group0 = -8 - 14 = -22 (0.25), group1 = 3 + 4 = 7 (4) -> 0.5*(-5.5+28)
  EXPECT_FLOAT_EQ(y[1], 11.25f);
}

TEST(W4A4GemmReference, ApproximatesFloatMatmul) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal;
  const int m = 3, n = 5, k = 256;
  std::vector<float> xf(m * k), wf(n * k);
  for (float& v : xf) v = normal(rng);
  for (float& v : wf) v = normal(rng);
  std::vector<uint8_t> xp(m * k / 2), wp(n * k / 2);
  std::vector<float> xs(m * 2), ws(n * 2);
  ASSERT_TRUE(QuantizeInt4Reference(xf.data(), m, k, 128, 1.0f, xp.data(), xs.data()).ok());
  ASSERT_TRUE(QuantizeInt4Reference(wf.data(), n, k, 128, 1.0f, wp.data(), ws.data()).ok());
  std::vector<float> y(m * n);
  ASSERT_TRUE(W4A4GemmReference({xp.data(), xs.data(), m, k, 128},
                                {wp.data(), ws.data(), n, k, 128}, y.data())
                  .ok());
  double err = 0, ref = 0;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double exact = 0;
      for (int kk = 0; kk < k; ++kk) exact += double(xf[i * k + kk]) * wf[j * k + kk];
      err += (y[i * n + j] - exact) * (y[i * n + j] - exact);
      ref += exact * exact;
    }
  }
  // INT4 with group-128 absmax scales on Gaussian data: roughly 10-20% relative error.
  EXPECT_LT(std::sqrt(err / ref), 0.35);
  EXPECT_GT(std::sqrt(err / ref), 0.01);  // it is quantized, not the float product
}

TEST(W4A4GemmReference, RejectsMismatchedK) {
  uint8_t p[64] = {};
  float s[2] = {1, 1};
  float y[1];
  EXPECT_FALSE(W4A4GemmReference({p, s, 1, 128, 128}, {p, s, 1, 64, 64}, y).ok());
}

}  // namespace
}  // namespace apex4
