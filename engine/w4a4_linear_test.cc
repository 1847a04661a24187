#include "engine/w4a4_linear.h"

#include <algorithm>
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

// Atom's INT8 outlier channels: Forward moves them out of the INT4 path (zeroed before padding
// and quantizing) and adds their per-token INT8 product, exactly as written out here.
TEST(W4A4Linear, OutlierChannelsTakeTheInt8Path) {
  std::mt19937 rng(34);
  ThreadPool pool(2);
  const int64_t in = 576, n = 70;
  W4A4LinearConfig c{in, n, 640, kGroup128, kPerChannel, 0.9f, 0};
  W4A4OutlierChannels outliers;
  outliers.channels = {0, 17, 200, 575};
  std::uniform_int_distribution<int> int8(-127, 127);
  for (int64_t i = 0; i < n * 4; ++i) outliers.weights.push_back(static_cast<int8_t>(int8(rng)));
  outliers.scales = Gaussian(n, rng);
  RandomW4A4Operand w(n, c.packed_k, 128, rng);
  auto layer = W4A4Linear::Create(c, w.packed, w.scales, &pool, outliers);
  ASSERT_TRUE(layer.ok()) << layer.status();
  for (int64_t m : {1, 5}) {
    std::vector<float> x = Gaussian(m * in, rng);
    x[1 * in - 1] = 0.0f;  // a row's outliers may be zero; row 0's absmax must stay positive
    std::vector<float> got(m * n), expected(m * n);
    (*layer)->Forward(x.data(), m, got.data());

    std::vector<float> inlier = x;
    std::vector<int8_t> q8(m * 4);
    std::vector<float> sx8(m);
    for (int64_t i = 0; i < m; ++i) {
      float absmax = 0.0f;
      for (int32_t ch : outliers.channels) absmax = std::max(absmax, std::fabs(x[i * in + ch]));
      sx8[i] = absmax / 127.0f;
      for (int o = 0; o < 4; ++o) {
        const float v = x[i * in + outliers.channels[o]];
        q8[i * 4 + o] =
            static_cast<int8_t>(std::clamp(std::nearbyint(v / sx8[i]), -127.0f, 127.0f));
        inlier[i * in + outliers.channels[o]] = 0.0f;
      }
    }
    std::vector<uint8_t> xp;
    std::vector<float> xs;
    ASSERT_TRUE(
        W4A4Gemm(QuantizeLikeTheFormat(c, inlier, m, &xp, &xs), w.view, expected.data()).ok());
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        int32_t dot = 0;
        for (int o = 0; o < 4; ++o) dot += q8[i * 4 + o] * outliers.weights[j * 4 + o];
        expected[i * n + j] += static_cast<float>(dot) * (sx8[i] * outliers.scales[j]);
      }
    }
    ASSERT_EQ(got, expected) << "m=" << m;
  }
}

// What the outlier path is for: a few channels 100x larger than the rest ruin per-token INT4
// activations; carried in INT8 they cost almost nothing.
TEST(W4A4Linear, OutlierChannelsRescueActivationOutliers) {
  std::mt19937 rng(35);
  const int64_t k = 256, n = 32, m = 6;
  const std::vector<int32_t> channels = {5, 77, 130, 201};
  const std::vector<float> w = Gaussian(n * k, rng);
  std::vector<float> x = Gaussian(m * k, rng);
  for (int64_t i = 0; i < m; ++i) {
    for (int32_t ch : channels) x[i * k + ch] *= 100.0f;
  }
  auto relative_error = [&](const W4A4Linear& layer) {
    std::vector<float> y(m * n);
    layer.Forward(x.data(), m, y.data());
    double err = 0, norm = 0;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double exact = 0;
        for (int64_t kk = 0; kk < k; ++kk) exact += double(x[i * k + kk]) * w[j * k + kk];
        err += (y[i * n + j] - exact) * (y[i * n + j] - exact);
        norm += exact * exact;
      }
    }
    return std::sqrt(err / norm);
  };
  const W4A4LinearConfig c{k, n, k, kGroup128, kPerChannel, 1.0f, 0};
  std::vector<uint8_t> wp(n * k / 2);
  std::vector<float> ws(n * 2);
  ASSERT_TRUE(QuantizeInt4Reference(w.data(), n, k, 128, 1.0f, wp.data(), ws.data()).ok());
  auto plain = W4A4Linear::Create(c, wp, ws, nullptr);
  ASSERT_TRUE(plain.ok()) << plain.status();

  // Atom's split: outlier columns to INT8 (per row absmax / 127), zero in the INT4 weights.
  W4A4OutlierChannels outliers;
  outliers.channels = channels;
  std::vector<float> w_inlier = w;
  for (int64_t j = 0; j < n; ++j) {
    float absmax = 0.0f;
    for (int32_t ch : channels) absmax = std::max(absmax, std::fabs(w[j * k + ch]));
    outliers.scales.push_back(absmax / 127.0f);
    for (int32_t ch : channels) {
      outliers.weights.push_back(
          static_cast<int8_t>(std::nearbyint(w[j * k + ch] / outliers.scales[j])));
      w_inlier[j * k + ch] = 0.0f;
    }
  }
  ASSERT_TRUE(QuantizeInt4Reference(w_inlier.data(), n, k, 128, 1.0f, wp.data(), ws.data()).ok());
  auto split = W4A4Linear::Create(c, wp, ws, nullptr, outliers);
  ASSERT_TRUE(split.ok()) << split.status();

  const double plain_error = relative_error(**plain), split_error = relative_error(**split);
  EXPECT_GT(plain_error, 3 * split_error) << plain_error << " vs " << split_error;
  EXPECT_LT(split_error, 0.3);
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

  auto create_with = [&](std::vector<int32_t> channels, size_t weights, size_t scales) {
    W4A4OutlierChannels o{std::move(channels), std::vector<int8_t>(weights),
                          std::vector<float>(scales)};
    return W4A4Linear::Create(good, std::vector<uint8_t>(4 * 64), std::vector<float>(4), nullptr,
                              std::move(o))
        .status();
  };
  EXPECT_TRUE(create_with({3, 99}, 8, 4).ok());
  EXPECT_FALSE(create_with({99, 3}, 8, 4).ok());   // not ascending
  EXPECT_FALSE(create_with({3, 3}, 8, 4).ok());    // repeated
  EXPECT_FALSE(create_with({3, 100}, 8, 4).ok());  // past in_features
  EXPECT_FALSE(create_with({3, 99}, 7, 4).ok());   // weights
  EXPECT_FALSE(create_with({3, 99}, 8, 3).ok());   // scales
}

}  // namespace
}  // namespace apex4
