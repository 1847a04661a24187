#include "engine/w4a4_linear.h"

#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/hadamard_transform.h"
#include "kernels/cpu/w4a4_gemm.h"
#include "kernels/cpu/w4a4_random_operand.h"
#include "kernels/cpu/w4a4_reference.h"

namespace apex4 {
namespace {

constexpr Granularity kPerChannel = Granularity::kPerChannel;
constexpr Granularity kGroup128 = Granularity::kGroup128;

std::vector<float> Gaussian(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> v(count);
  for (float& f : v) f = normal(rng);
  return v;
}

// The layer's definition spelled out with the reference kernels: pad, rotate, quantize.
W4A4Operand QuantizeLikeTheFormat(const W4A4LinearConfig& c, const std::vector<float>& x, int64_t m,
                                  std::vector<uint8_t>* packed, std::vector<float>* scales) {
  const int64_t k = c.packed_k;
  std::vector<float> padded(m * k, 0.0f);
  for (int64_t i = 0; i < m; ++i) {
    std::memcpy(&padded[i * k], &x[i * c.in_features], c.in_features * sizeof(float));
  }
  if (c.online_hadamard_block != 0) {
    EXPECT_TRUE(HadamardTransformReference(padded.data(), m, k, c.online_hadamard_block).ok());
  }
  const int group = GroupSizeFor(c.activation_granularity, k);
  packed->resize(m * k / 2);
  scales->resize(m * (k / group));
  EXPECT_TRUE(QuantizeInt4Reference(padded.data(), m, k, group, c.activation_clip_ratio,
                                    packed->data(), scales->data())
                  .ok());
  return {packed->data(), scales->data(), m, k, group};
}

// Every granularity pairing, padded and unpadded K, with and without the online Hadamard and
// clipping, M = 1 and ragged M: Forward (threaded) equals reference quantization followed by
// the single-threaded GEMM bit for bit, and the all-reference chain to float rounding.
TEST(W4A4Linear, ForwardIsPadRotateQuantizeGemm) {
  std::mt19937 rng(31);
  ThreadPool pool(2);
  struct Case {
    int64_t in, n;
    Granularity w, x;
    float clip;
    int hadamard;
  };
  const Case cases[] = {
      {576, 192, kGroup128, kGroup128, 1.0f, 0},      {576, 576, kPerChannel, kPerChannel, 0.9f, 0},
      {576, 100, kGroup128, kPerChannel, 0.95f, 128}, {1536, 64, kPerChannel, kGroup128, 1.0f, 128},
      {256, 33, kGroup128, kGroup128, 0.8f, 64},
  };
  for (const Case& t : cases) {
    W4A4LinearConfig c;
    c.in_features = t.in;
    c.out_features = t.n;
    c.packed_k = (t.in + 127) / 128 * 128;
    c.weight_granularity = t.w;
    c.activation_granularity = t.x;
    c.activation_clip_ratio = t.clip;
    c.online_hadamard_block = t.hadamard;
    RandomW4A4Operand w(t.n, c.packed_k, GroupSizeFor(t.w, c.packed_k), rng);
    auto layer = W4A4Linear::Create(c, w.packed, w.scales, &pool);
    ASSERT_TRUE(layer.ok()) << layer.status();
    for (int64_t m : {1, 7, 300}) {
      const std::vector<float> x = Gaussian(m * t.in, rng);
      std::vector<float> got(m * t.n), expected(m * t.n), reference(m * t.n);
      (*layer)->Forward(x.data(), m, got.data());
      std::vector<uint8_t> xp;
      std::vector<float> xs;
      const W4A4Operand xq = QuantizeLikeTheFormat(c, x, m, &xp, &xs);
      ASSERT_TRUE(W4A4Gemm(xq, w.view, expected.data()).ok());
      ASSERT_EQ(got, expected) << "in=" << t.in << " n=" << t.n << " m=" << m;
      ASSERT_TRUE(W4A4GemmReference(xq, w.view, reference.data()).ok());
      double max_abs = 0;
      for (float v : reference) max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
      for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], reference[i], 1e-5 * max_abs);
    }
  }
}

// The rotation as the quantizer folds it: weights W·H (H symmetric orthonormal), activations
// rotated online, so the layer approximates x · W^T. Without the online rotation the product
// would be x · (W H)^T, nowhere near.
TEST(W4A4Linear, OnlineHadamardUndoesTheRotationFoldedIntoTheWeights) {
  std::mt19937 rng(32);
  const int64_t k = 384, n = 48, m = 4;
  const std::vector<float> w = Gaussian(n * k, rng), x = Gaussian(m * k, rng);
  std::vector<float> w_rotated = w;
  ASSERT_TRUE(HadamardTransformReference(w_rotated.data(), n, k, 128).ok());
  std::vector<uint8_t> wp(n * k / 2);
  std::vector<float> ws(n * k / 128);
  ASSERT_TRUE(QuantizeInt4Reference(w_rotated.data(), n, k, 128, 1.0f, wp.data(), ws.data()).ok());
  for (int hadamard : {128, 0}) {
    W4A4LinearConfig c{k, n, k, kGroup128, kGroup128, 1.0f, hadamard};
    auto layer = W4A4Linear::Create(c, wp, ws, nullptr);
    ASSERT_TRUE(layer.ok()) << layer.status();
    std::vector<float> y(m * n);
    (*layer)->Forward(x.data(), m, y.data());
    double err = 0, norm = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0;
        for (int64_t kk = 0; kk < k; ++kk) exact += double(x[i * k + kk]) * w[j * k + kk];
        err += (y[i * n + j] - exact) * (y[i * n + j] - exact);
        norm += exact * exact;
      }
    }
    if (hadamard) {
      EXPECT_LT(std::sqrt(err / norm), 0.3);  // W4A4 group-128 noise on Gaussian data
    } else {
      EXPECT_GT(std::sqrt(err / norm), 0.8);
    }
  }
}

class RecordingTimer : public KernelTimer {
 public:
  void Record(KernelKind kind, double seconds) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_[kind]++;
    EXPECT_GE(seconds, 0.0);
  }
  int calls(KernelKind kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_[kind];
  }

 private:
  std::mutex mu_;
  std::map<KernelKind, int> calls_;
};

TEST(W4A4Linear, RecordsQuantizationAndGemmWhenTimed) {
  std::mt19937 rng(33);
  RandomW4A4Operand w(8, 128, 128, rng);
  auto layer = W4A4Linear::Create({100, 8, 128}, w.packed, w.scales, nullptr);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ((*layer)->in_features(), 100);
  EXPECT_EQ((*layer)->out_features(), 8);
  EXPECT_EQ((*layer)->kernel_kind(), KernelKind::kGemmW4A4);
  const std::vector<float> x = Gaussian(2 * 100, rng);
  std::vector<float> y(2 * 8);
  (*layer)->Forward(x.data(), 2, y.data());  // no timer: nothing recorded, nothing crashes
  RecordingTimer timer;
  (*layer)->set_kernel_timer(&timer);
  (*layer)->Forward(x.data(), 2, y.data());
  EXPECT_EQ(timer.calls(KernelKind::kQuantizeActivations), 1);
  EXPECT_EQ(timer.calls(KernelKind::kGemmW4A4), 1);
}

TEST(W4A4Linear, CreateRejectsInconsistentShapes) {
  const std::vector<uint8_t> packed(4 * 64);
  const std::vector<float> scales(4);
  auto create = [&](W4A4LinearConfig c, size_t bytes = 4 * 64, size_t n_scales = 4) {
    return W4A4Linear::Create(c, std::vector<uint8_t>(bytes), std::vector<float>(n_scales), nullptr)
        .status();
  };
  const W4A4LinearConfig good{100, 4, 128, kPerChannel, kGroup128, 1.0f, 0};
  EXPECT_TRUE(create(good).ok());
  W4A4LinearConfig c = good;
  c.packed_k = 96;  // not a multiple of 128
  EXPECT_FALSE(create(c).ok());
  c = good;
  c.in_features = 200;  // wider than packed_k
  EXPECT_FALSE(create(c).ok());
  c = good;
  c.activation_clip_ratio = 0.0f;
  EXPECT_FALSE(create(c).ok());
  c = good;
  c.online_hadamard_block = 96;
  EXPECT_FALSE(create(c).ok());
  c = good;
  c.online_hadamard_block = 256;  // does not divide packed_k
  EXPECT_FALSE(create(c).ok());
  EXPECT_FALSE(create(good, 4 * 64 - 1).ok());  // weight bytes
  EXPECT_FALSE(create(good, 4 * 64, 5).ok());   // scales
  c = good;
  c.weight_granularity = kGroup128;  // 4 rows x 1 group: still 4 scales, fine
  EXPECT_TRUE(create(c).ok());
  c.packed_k = 256;
  EXPECT_FALSE(create(c).ok());  // 4 x 128 bytes expected now
}

}  // namespace
}  // namespace apex4
