#include "kernels/cpu/int4_quantize.h"

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/w4a4_reference.h"

namespace apex4 {
namespace {

struct Quantized {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
};

Quantized Run(const std::vector<float>& x, int64_t rows, int64_t k, int group, float clip,
              bool reference) {
  Quantized q{std::vector<uint8_t>(rows * k / 2, 0xAB), std::vector<float>(rows * k / group, -1)};
  const absl::Status s =
      reference
          ? QuantizeInt4Reference(x.data(), rows, k, group, clip, q.packed.data(), q.scales.data())
          : QuantizeInt4(x.data(), rows, k, group, clip, q.packed.data(), q.scales.data());
  EXPECT_TRUE(s.ok()) << s;
  return q;
}

void ExpectBitExact(const std::vector<float>& x, int64_t rows, int64_t k, int group, float clip) {
  const Quantized expected = Run(x, rows, k, group, clip, true);
  const Quantized got = Run(x, rows, k, group, clip, false);
  ASSERT_EQ(got.packed, expected.packed) << "rows=" << rows << " k=" << k << " group=" << group;
  for (size_t i = 0; i < expected.scales.size(); ++i) {
    // Bitwise, so that a -0.0 or a different rounding of the scale would show.
    ASSERT_EQ(std::signbit(got.scales[i]), std::signbit(expected.scales[i]));
    ASSERT_EQ(got.scales[i], expected.scales[i]) << i;
  }
}

// Random rows and widths, per token and group-128, with clip ratios, on data with outliers
// and many values exactly halfway between two levels (where rounding to even matters).
TEST(QuantizeInt4, BitExactAgainstReference) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::uniform_int_distribution<int64_t> rows_dist(1, 9), blocks_dist(1, 12);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t rows = trial % 4 == 0 ? 1 : rows_dist(rng);
    const int64_t k = blocks_dist(rng) * 128;
    std::vector<float> x(rows * k);
    for (float& v : x) v = normal(rng);
    for (int i = 0; i < 5; ++i) x[rng() % x.size()] *= 50.0f;  // outlier channels
    if (trial % 3 == 0) {
      // absmax 7 makes the unclipped step 1, so the halves -3.5 .. 3.5 all round to even.
      for (size_t i = 0; i < x.size(); ++i) {
        x[i] = i % 128 == 0 ? 7.0f : 0.5f * static_cast<float>(static_cast<int>(i % 15) - 7);
      }
    }
    for (float clip : {1.0f, 0.9f, 0.55f}) {
      ExpectBitExact(x, rows, k, 128, clip);
      ExpectBitExact(x, rows, k, static_cast<int>(k), clip);
    }
  }
}

TEST(QuantizeInt4, ZerosInfinitiesAndNansMatchTheReference) {
  const int64_t k = 256;
  std::vector<float> x(2 * k, 0.0f);  // row 0 all zero: scale 0, q 0
  for (int64_t i = 0; i < k; ++i) x[k + i] = (i % 2 ? -1.0f : 1.0f) * static_cast<float>(i);
  x[k + 5] = std::numeric_limits<float>::quiet_NaN();  // skipped by absmax
  ExpectBitExact(x, 2, k, 128, 1.0f);
  ExpectBitExact(x, 2, k, static_cast<int>(k), 0.8f);
}

TEST(QuantizeInt4, OddGroupSizesTakeTheReferencePath) {
  std::vector<float> x(48);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i));
  ExpectBitExact(x, 2, 24, 6, 1.0f);
}

TEST(QuantizeInt4, RejectsWhatTheReferenceRejects) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> p(128);
  std::vector<float> s(2);
  EXPECT_FALSE(QuantizeInt4(x.data(), 1, 256, 96, 1.0f, p.data(), s.data()).ok());
  EXPECT_FALSE(QuantizeInt4(x.data(), 1, 256, 128, 0.0f, p.data(), s.data()).ok());
  EXPECT_FALSE(QuantizeInt4(x.data(), 1, 256, 128, 1.5f, p.data(), s.data()).ok());
  EXPECT_FALSE(QuantizeInt4(x.data(), 0, 256, 128, 1.0f, p.data(), s.data()).ok());
  EXPECT_FALSE(QuantizeInt4(nullptr, 1, 256, 128, 1.0f, p.data(), s.data()).ok());
  EXPECT_TRUE(QuantizeInt4(x.data(), 1, 256, 128, 1.0f, p.data(), s.data()).ok());
}

}  // namespace
}  // namespace apex4
