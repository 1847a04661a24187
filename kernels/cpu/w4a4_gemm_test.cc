#include "kernels/cpu/w4a4_gemm.h"

#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/w4a4_random_operand.h"
#include "kernels/cpu/w4a4_reference.h"

namespace apex4 {
namespace {

constexpr int kBlock = 128;

// The SIMD ISAs this machine can run; a CPU without them skips (the scalar path is the reference).
std::vector<CpuIsa> SimdIsas() {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : {CpuIsa::kAvx2, CpuIsa::kAvx512Vnni}) {
    if (CpuSupports(isa)) isas.push_back(isa);
  }
  return isas;
}

struct Shape {
  int64_t m, n, k;
  int x_group, w_group;  // 0 means K (per-token / per-channel)
};

// Random shapes: M = 1, M past the tile heights (2, 4), N off the 4-row tile, every pairing of
// per-token/per-channel and group-128.
std::vector<Shape> RandomShapes(std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> rows(1, 13), cols(1, 37), blocks(1, 6);
  std::vector<Shape> shapes = {{1, 4, 128, 0, 0}, {1, 1, 128, 128, 128}, {5, 9, 640, 128, 0}};
  for (int i = 0; i < 24; ++i) {
    shapes.push_back({i % 3 == 0 ? 1 : rows(rng), cols(rng), blocks(rng) * kBlock,
                      (i & 1) ? kBlock : 0, (i & 2) ? kBlock : 0});
  }
  return shapes;
}

int GroupOf(int group, int64_t k) { return group == 0 ? static_cast<int>(k) : group; }

TEST(W4A4GemmBlockSums, ExactAgainstInt32ReferenceOnRandomShapes) {
  std::mt19937 rng(42);
  ThreadPool pool(2);
  for (CpuIsa isa : SimdIsas()) {
    for (const Shape& s : RandomShapes(rng)) {
      RandomW4A4Operand x(s.m, s.k, GroupOf(s.x_group, s.k), rng);
      RandomW4A4Operand w(s.n, s.k, GroupOf(s.w_group, s.k), rng);
      const int64_t blocks = s.k / kBlock;
      std::vector<int32_t> expected(s.m * s.n * blocks), got(expected.size(), -1);
      ASSERT_TRUE(W4A4GemmInt32Reference(x.view, w.view, kBlock, expected.data()).ok());
      ASSERT_TRUE(W4A4GemmBlockSums(x.view, w.view, got.data(), {isa, &pool}).ok());
      ASSERT_EQ(got, expected) << CpuIsaName(isa) << " m=" << s.m << " n=" << s.n << " k=" << s.k;
    }
  }
}

// The corners of the int8 arithmetic: 7 · -8 is the largest biased product (15 · -8), -8 · -8
// the largest true one; a block of them must neither saturate int16 nor lose the bias.
TEST(W4A4GemmBlockSums, ExtremeNibblesDoNotSaturate) {
  const int64_t k = 256;
  for (CpuIsa isa : SimdIsas()) {
    for (auto [qx, qw] : {std::pair{-8, 7}, std::pair{-8, -8}, std::pair{7, 7}, std::pair{7, -8}}) {
      std::vector<uint8_t> xp(k / 2, PackInt4Pair(qx, qx)), wp(3 * k / 2, PackInt4Pair(qw, qw));
      std::vector<float> xs(1, 1.0f), ws(3, 1.0f);
      std::vector<int32_t> got(3 * 2);
      ASSERT_TRUE(W4A4GemmBlockSums({xp.data(), xs.data(), 1, k, static_cast<int>(k)},
                                    {wp.data(), ws.data(), 3, k, static_cast<int>(k)}, got.data(),
                                    {isa})
                      .ok());
      for (int32_t v : got) EXPECT_EQ(v, qx * qw * kBlock) << CpuIsaName(isa);
    }
  }
}

// Float output: the int32 block sums are exact, so the only difference from the reference's
// double accumulation is float rounding of the scaled terms and their sum. Bound it by
// (terms added + a few) · FLT_EPSILON · Σ_b |sx · sw| · Σ_{k in b} |qx · qw|.
TEST(W4A4Gemm, MatchesReferenceToFloatRounding) {
  std::mt19937 rng(7);
  ThreadPool pool(2);
  for (CpuIsa isa : SimdIsas()) {
    for (const Shape& s : RandomShapes(rng)) {
      RandomW4A4Operand x(s.m, s.k, GroupOf(s.x_group, s.k), rng);
      RandomW4A4Operand w(s.n, s.k, GroupOf(s.w_group, s.k), rng);
      std::vector<float> expected(s.m * s.n), got(s.m * s.n);
      ASSERT_TRUE(W4A4GemmReference(x.view, w.view, expected.data()).ok());
      ASSERT_TRUE(W4A4Gemm(x.view, w.view, got.data(), {isa, &pool}).ok());
      const int64_t blocks = s.k / kBlock;
      for (int64_t m = 0; m < s.m; ++m) {
        for (int64_t n = 0; n < s.n; ++n) {
          double magnitude = 0;
          for (int64_t b = 0; b < blocks; ++b) {
            double abs_dot = 0;
            for (int64_t k = b * kBlock; k < (b + 1) * kBlock; ++k) {
              abs_dot += std::abs(UnpackInt4(x.packed[m * s.k / 2 + k / 2], k & 1) *
                                  UnpackInt4(w.packed[n * s.k / 2 + k / 2], k & 1));
            }
            const double sx = x.scales[m * x.view.groups() + b * kBlock / x.view.group_size];
            const double sw = w.scales[n * w.view.groups() + b * kBlock / w.view.group_size];
            magnitude += sx * sw * abs_dot;
          }
          const double tolerance = (blocks + 8) * FLT_EPSILON * magnitude;
          ASSERT_NEAR(got[m * s.n + n], expected[m * s.n + n], tolerance)
              << CpuIsaName(isa) << " m=" << s.m << " n=" << s.n << " k=" << s.k << " at (" << m
              << ", " << n << ")";
        }
      }
    }
  }
}

// Each output is computed by one tile whatever the split over threads, so the pool must not
// change a single bit.
TEST(W4A4Gemm, ThreadsDoNotChangeTheResult) {
  std::mt19937 rng(3);
  ThreadPool pool(2);
  RandomW4A4Operand x(3, 512, 128, rng), w(203, 512, 512, rng);
  for (CpuIsa isa : SimdIsas()) {
    std::vector<float> one(3 * 203), two(3 * 203);
    ASSERT_TRUE(W4A4Gemm(x.view, w.view, one.data(), {isa}).ok());
    ASSERT_TRUE(W4A4Gemm(x.view, w.view, two.data(), {isa, &pool}).ok());
    EXPECT_EQ(one, two) << CpuIsaName(isa);
  }
}

TEST(W4A4Gemm, ScalarIsaIsTheReference) {
  std::mt19937 rng(5);
  RandomW4A4Operand x(2, 256, 128, rng), w(6, 256, 256, rng);
  std::vector<float> expected(12), got(12);
  ASSERT_TRUE(W4A4GemmReference(x.view, w.view, expected.data()).ok());
  ASSERT_TRUE(W4A4Gemm(x.view, w.view, got.data(), {CpuIsa::kScalar}).ok());
  EXPECT_EQ(got, expected);
}

TEST(W4A4Gemm, RejectsShapesOutsideTheFormat) {
  std::mt19937 rng(9);
  float y[8];
  // K not a multiple of 128.
  RandomW4A4Operand x64(1, 64, 64, rng), w64(2, 64, 64, rng);
  EXPECT_FALSE(W4A4Gemm(x64.view, w64.view, y).ok());
  // Group size 256 is neither 128 nor K.
  RandomW4A4Operand x(1, 512, 128, rng), w256(2, 512, 256, rng), w(2, 512, 128, rng);
  EXPECT_FALSE(W4A4Gemm(x.view, w256.view, y).ok());
  // K mismatch and null output.
  RandomW4A4Operand w640(2, 640, 128, rng);
  EXPECT_FALSE(W4A4Gemm(x.view, w640.view, y).ok());
  EXPECT_FALSE(W4A4Gemm(x.view, w.view, nullptr).ok());
  EXPECT_TRUE(W4A4Gemm(x.view, w.view, y).ok());
}

}  // namespace
}  // namespace apex4
