#include "kernels/cpu/hadamard_transform.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

std::vector<float> RandomRows(int64_t rows, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * k);
  for (float& v : x) v = normal(rng);
  return x;
}

// Sylvester entry: H[i][j] = (-1)^popcount(i & j).
double SylvesterEntry(int i, int j) { return __builtin_popcount(i & j) % 2 ? -1.0 : 1.0; }

TEST(HadamardTransform, FastPathBitExactAgainstReference) {
  std::mt19937 rng(21);
  for (int block : {8, 16, 64, 128, 256}) {
    for (int64_t rows : {1, 3}) {
      const int64_t k = block * (1 + static_cast<int64_t>(rng() % 5));
      std::vector<float> expected = RandomRows(rows, k, rng), got = expected;
      ASSERT_TRUE(HadamardTransformReference(expected.data(), rows, k, block).ok());
      ASSERT_TRUE(HadamardTransform(got.data(), rows, k, block).ok());
      ASSERT_EQ(got, expected) << "block=" << block << " k=" << k;
    }
  }
}

// Against the matrix definition, in double: y_b = H x_b / sqrt(block) for every block.
TEST(HadamardTransform, MatchesSylvesterMatrixProduct) {
  std::mt19937 rng(22);
  for (int block : {64, 128}) {
    const int64_t rows = 2, k = 3 * block;
    const std::vector<float> x = RandomRows(rows, k, rng);
    std::vector<float> y = x;
    ASSERT_TRUE(HadamardTransform(y.data(), rows, k, block).ok());
    for (int64_t b = 0; b < rows * k; b += block) {
      for (int i = 0; i < block; ++i) {
        double expected = 0;
        for (int j = 0; j < block; ++j) expected += SylvesterEntry(i, j) * x[b + j];
        expected /= std::sqrt(static_cast<double>(block));
        ASSERT_NEAR(y[b + i], expected, 1e-5 * std::sqrt(static_cast<double>(block)))
            << "block=" << block << " at " << b + i;
      }
    }
  }
}

TEST(HadamardTransform, IsItsOwnInverse) {
  std::mt19937 rng(23);
  const std::vector<float> x = RandomRows(4, 1536, rng);
  std::vector<float> y = x;
  ASSERT_TRUE(HadamardTransform(y.data(), 4, 1536, 128).ok());
  ASSERT_TRUE(HadamardTransform(y.data(), 4, 1536, 128).ok());
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-5) << i;
}

TEST(HadamardTransform, RejectsBadBlocks) {
  std::vector<float> x(256);
  EXPECT_FALSE(HadamardTransform(x.data(), 1, 256, 96).ok());   // not a power of two
  EXPECT_FALSE(HadamardTransform(x.data(), 1, 256, 4).ok());    // below one register
  EXPECT_FALSE(HadamardTransform(x.data(), 1, 192, 128).ok());  // does not divide k
  EXPECT_FALSE(HadamardTransform(nullptr, 1, 256, 128).ok());
  EXPECT_TRUE(HadamardTransform(x.data(), 2, 128, 128).ok());
}

}  // namespace
}  // namespace apex4
