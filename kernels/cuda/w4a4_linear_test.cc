// GPU tests of the W4A4 linear-layer kernels against the CPU scalar reference
// (kernels/cpu/w4a4_reference.h), on fresh random data each run (the seed is printed).
// Without a CUDA device the program prints "no CUDA device: skipped" and exits 0, so CI (no GPU)
// compiles and runs it.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "engine/llama_ops.h"
#include "kernels/cpu/hadamard_transform.h"
#include "kernels/cpu/w4a4_reference.h"
#include "kernels/cuda/ops/llama_elementwise.h"
#include "kernels/cuda/testing/gpu_test_util.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {
namespace {

using testing::Bf16ToFloat;
using testing::DeviceBuffer;
using testing::FloatToBf16Truncate;

void RequireOk(const absl::Status& status, const char* what) {
  if (!status.ok()) {
    std::printf("FATAL reference %s: %s\n", what, std::string(status.message()).c_str());
    std::exit(1);
  }
}

// A random canonical operand: `rows` × k nibbles in [-8, 7], scales in [0.5, 2) / 64.
// With `sparse_rows`, each row has only four nonzero elements and all scales are 1, so every
// GEMM result is an integer of magnitude ≤ 256, exact in bf16: the exact-integer check.
struct HostOperand {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  W4A4Operand view;
};
HostOperand RandomOperand(std::mt19937& rng, int64_t rows, int64_t k, int group_size, bool sparse_rows) {
  HostOperand op;
  op.packed.assign(rows * k / 2, 0);
  op.scales.assign(rows * (k / group_size), 1.0f);
  std::uniform_int_distribution<int> nibble(-8, 7);
  std::uniform_real_distribution<float> scale(0.5f / 64, 2.0f / 64);
  for (int64_t r = 0; r < rows; ++r) {
    if (sparse_rows) {
      std::uniform_int_distribution<int64_t> position(0, k - 1);
      for (int i = 0; i < 4; ++i) {
        const int64_t kk = position(rng);
        uint8_t& byte = op.packed[r * k / 2 + kk / 2];
        const int v = nibble(rng);
        byte = (kk & 1) ? PackInt4Pair(UnpackInt4(byte, false), v) : PackInt4Pair(v, UnpackInt4(byte, true));
      }
    } else {
      for (int64_t b = 0; b < k / 2; ++b) op.packed[r * k / 2 + b] = PackInt4Pair(nibble(rng), nibble(rng));
      for (int64_t g = 0; g < k / group_size; ++g) op.scales[r * (k / group_size) + g] = scale(rng);
    }
  }
  op.view = W4A4Operand{op.packed.data(), op.scales.data(), rows, k, group_size};
  return op;
}

// The GEMM workspace: one for every call of the test, sized for the largest and zeroed once, as
// the GPU engine keeps it, so calls of different shapes leave their scratch in it for the next.
struct Workspace {
  void* ptr;
  size_t bytes;
};

// Runs the GEMM twice on poisoned outputs (the second run checks that split-K counters were
// left zeroed and that results are deterministic) and returns Y as floats.
std::vector<float> RunGemm(W4A4Backend backend, const HostOperand& x, const HostOperand& w,
                           Granularity granularity, Workspace workspace,
                           const W4A4GemmOutliers* outliers = nullptr) {
  const int64_t m = x.view.rows, n = w.view.rows, k = x.view.k;
  std::vector<uint8_t> w_packed(w.packed.size());
  std::vector<float> w_scales(w.scales.size());
  ASSERT_CUDA_OK(PrepackW4A4Weights(backend, w.view, w_packed.data(), w_scales.data()));
  DeviceBuffer<uint8_t> dx(x.packed), dw(w_packed);
  DeviceBuffer<float> dsx(x.scales), dsw(w_scales);
  DeviceBuffer<__nv_bfloat16> dy(m * n);
  W4A4GemmArgs args;
  args.x = dx.get();
  args.x_scales = dsx.get();
  args.w = dw.get();
  args.w_scales = dsw.get();
  args.y = dy.get();
  args.m = m;
  args.n = n;
  args.k = k;
  args.granularity = granularity;
  args.workspace = workspace.ptr;
  args.workspace_bytes = workspace.bytes;
  args.outliers = outliers;
  std::vector<__nv_bfloat16> first;
  for (int run = 0; run < 2; ++run) {
    ASSERT_CUDA(cudaMemset(dy.get(), 0xFF, m * n * sizeof(__nv_bfloat16)));  // NaN poison
    ASSERT_CUDA_OK(W4A4Gemm(backend, args, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> y = dy.ToHost();
    if (run == 0) {
      first = y;
    } else {
      EXPECT_TRUE_MSG(std::memcmp(first.data(), y.data(), y.size() * 2) == 0,
                      "second run differs (m=%lld n=%lld k=%lld)", (long long)m, (long long)n, (long long)k);
    }
  }
  std::vector<float> out(first.size());
  for (size_t i = 0; i < first.size(); ++i) out[i] = Bf16ToFloat(first[i]);
  return out;
}

// Rows [r0, r0 + rows) of an operand.
W4A4Operand RowSlice(const HostOperand& op, int64_t r0, int64_t rows) {
  W4A4Operand part = op.view;
  part.packed += r0 * op.view.k / 2;
  part.scales += r0 * op.view.groups();
  part.rows = rows;
  return part;
}

// The CPU reference is scalar: check the first and the last (M-tail) block of rows in full.
std::vector<int64_t> CheckedRowStarts(int64_t m, int64_t block) {
  return m > block ? std::vector<int64_t>{0, m - block} : std::vector<int64_t>{0};
}

void TestGemm(W4A4Backend backend, const char* name, int64_t m, int64_t n, int64_t k,
              Granularity granularity, Workspace workspace, std::mt19937& rng) {
  const int group = GroupSizeFor(granularity, k);
  // Exact integers: sparse activations, unit scales.
  {
    const HostOperand x = RandomOperand(rng, m, k, group, /*sparse_rows=*/true);
    HostOperand w = RandomOperand(rng, n, k, group, false);
    std::fill(w.scales.begin(), w.scales.end(), 1.0f);
    const std::vector<float> y = RunGemm(backend, x, w, granularity, workspace);
    const int64_t block = std::min<int64_t>(m, 64);
    int64_t bad = 0;
    for (int64_t r0 : CheckedRowStarts(m, block)) {
      // Unit scales: the double-accumulated reference is the exact integer sum.
      std::vector<float> exact(block * n);
      RequireOk(W4A4GemmReference(RowSlice(x, r0, block), w.view, exact.data()), "gemm");
      for (int64_t i = 0; i < block * n; ++i) bad += y[r0 * n + i] != exact[i];
    }
    EXPECT_TRUE_MSG(bad == 0, "%s exact m=%lld n=%lld k=%lld %s: %lld of the checked rows' results wrong", name,
                    (long long)m, (long long)n, (long long)k,
                    granularity == Granularity::kGroup128 ? "g128" : "per-channel", (long long)bad);
  }
  // Dense random data and scales, within bf16 rounding of the double-accumulated reference.
  const HostOperand x = RandomOperand(rng, m, k, group, false);
  const HostOperand w = RandomOperand(rng, n, k, group, false);
  const std::vector<float> y = RunGemm(backend, x, w, granularity, workspace);
  double err2 = 0, ref2 = 0, worst = 0;
  int64_t non_finite = 0;
  const int64_t block = std::min<int64_t>(m, 64);
  for (int64_t r0 : CheckedRowStarts(m, block)) {
    std::vector<float> ref(block * n);
    RequireOk(W4A4GemmReference(RowSlice(x, r0, block), w.view, ref.data()), "gemm");
    for (int64_t i = 0; i < block * n; ++i) {
      const float got = y[r0 * n + i];
      non_finite += !std::isfinite(got);
      const double d = got - ref[i];
      err2 += d * d;
      ref2 += double(ref[i]) * ref[i];
      worst = std::max(worst, std::fabs(d) / (std::fabs(ref[i]) + 1e-3));
    }
  }
  for (float v : y) non_finite += !std::isfinite(v);
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
  const bool ok = non_finite == 0 && rel < 4e-3 && worst < 1e-2;
  EXPECT_TRUE_MSG(ok, "%s dense m=%lld n=%lld k=%lld %s: rel %.2e worst %.2e non-finite %lld", name,
                  (long long)m, (long long)n, (long long)k,
                  granularity == Granularity::kGroup128 ? "g128" : "per-channel", rel, worst,
                  (long long)non_finite);
  std::printf("%-8s m=%-5lld n=%-5lld k=%-5lld %-11s rel %.2e  worst %.2e  %s\n", name, (long long)m,
              (long long)n, (long long)k, granularity == Granularity::kGroup128 ? "g128" : "per-channel",
              rel, worst, ok ? "ok" : "FAIL");
}

// A GEMM with Atom-style outlier channels (W4A4GemmArgs::outliers; the decode kernel adds them in
// its epilogue, the other paths add them to the bf16 output after the GEMM): each output within
// bf16 rounding of its two parts, |INT4 product| + |INT8 product| (the second path rounds twice),
// of the double-accumulated reference.
void TestGemmOutliers(W4A4Backend backend, const char* name, int64_t m, int64_t n, int64_t k,
                      Granularity granularity, int32_t count, Workspace workspace, std::mt19937& rng) {
  const int group = GroupSizeFor(granularity, k);
  const HostOperand x = RandomOperand(rng, m, k, group, false);
  const HostOperand w = RandomOperand(rng, n, k, group, false);
  std::vector<float> ref(m * n), magnitude(m * n);
  RequireOk(W4A4GemmReference(x.view, w.view, ref.data()), "gemm");
  // Outlier products of the INT4 product's size, so that an error in either shows.
  double ref_rms = 0;
  for (float v : ref) ref_rms += double(v) * v;
  ref_rms = std::sqrt(ref_rms / ref.size());
  const int64_t stride = W4A4OutlierCodesStride(count);
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> unit(0.5f, 1.5f);
  std::vector<int8_t> x_q8(m * stride, 0), w_q8(n * stride, 0);
  for (int64_t r = 0; r < m; ++r) {
    for (int32_t c = 0; c < count; ++c) x_q8[r * stride + c] = static_cast<int8_t>(code(rng));
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int32_t c = 0; c < count; ++c) w_q8[j * stride + c] = static_cast<int8_t>(code(rng));
  }
  const float typical = static_cast<float>(std::sqrt(ref_rms / (127.0 * 127.0 * std::sqrt(double(count)))));
  std::vector<float> x_scales(m), w_scales(n);
  for (float& v : x_scales) v = typical * unit(rng);
  for (float& v : w_scales) v = typical * unit(rng);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      int64_t dot = 0;
      for (int32_t c = 0; c < count; ++c) dot += int64_t{x_q8[r * stride + c]} * w_q8[j * stride + c];
      const double product = double(dot) * x_scales[r] * w_scales[j];
      magnitude[r * n + j] = static_cast<float>(std::fabs(ref[r * n + j]) + std::fabs(product));
      ref[r * n + j] += static_cast<float>(product);
    }
  }
  DeviceBuffer<int8_t> dx(x_q8), dw(w_q8);
  DeviceBuffer<float> dxs(x_scales), dws(w_scales);
  const W4A4GemmOutliers outliers{dx.get(), dxs.get(), count, stride, dw.get(), dws.get()};
  const std::vector<float> y = RunGemm(backend, x, w, granularity, workspace, &outliers);
  double err2 = 0, ref2 = 0, worst = 0;
  int64_t non_finite = 0;
  for (int64_t i = 0; i < m * n; ++i) {
    non_finite += !std::isfinite(y[i]);
    const double d = y[i] - ref[i];
    err2 += d * d;
    ref2 += double(ref[i]) * ref[i];
    worst = std::max(worst, std::fabs(d) / (magnitude[i] + 1e-3 * ref_rms));
  }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-30));
  const bool ok = non_finite == 0 && rel < 4e-3 && worst < 1e-2;
  char line[200];
  std::snprintf(line, sizeof(line), "%s outliers m=%lld n=%lld k=%lld %s channels=%d: rel %.2e worst %.2e non-finite %lld",
                name, (long long)m, (long long)n, (long long)k,
                granularity == Granularity::kGroup128 ? "g128" : "per-channel", count, rel, worst,
                (long long)non_finite);
  EXPECT_TRUE_MSG(ok, "%s", line);
  std::printf("%s  %s\n", line, ok ? "ok" : "FAIL");
}

// CPU model of the optional transforms: RMSNorm in double, Sylvester H128 / sqrt(128).
std::vector<float> TransformReference(const std::vector<float>& x, int64_t rows, int64_t k,
                                      const std::vector<float>* gamma, float eps, bool hadamard) {
  std::vector<float> out(x.size());
  std::vector<double> v(k);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < k; ++i) ss += double(x[r * k + i]) * x[r * k + i];
    const double rstd = gamma ? 1.0 / std::sqrt(ss / k + eps) : 1.0;
    for (int64_t i = 0; i < k; ++i) v[i] = x[r * k + i] * rstd * (gamma ? (*gamma)[i] : 1.0);
    if (hadamard) {
      for (int64_t b = 0; b < k; b += 128) {
        for (int h = 1; h < 128; h *= 2) {
          for (int i = 0; i < 128; ++i) {
            if (i & h) continue;
            const double a = v[b + i], c = v[b + i + h];
            v[b + i] = a + c;
            v[b + i + h] = a - c;
          }
        }
        for (int i = 0; i < 128; ++i) v[b + i] /= std::sqrt(128.0);
      }
    }
    for (int64_t i = 0; i < k; ++i) out[r * k + i] = static_cast<float>(v[i]);
  }
  return out;
}

// The quantizer's output (packed bytes then scale bytes) for `args`, outputs poisoned first.
std::vector<uint8_t> RunQuantize(W4A4QuantizeArgs args) {
  const int group = GroupSizeFor(args.granularity, args.k);
  const int64_t packed_bytes = args.rows * args.k / 2, scale_count = args.rows * (args.k / group);
  DeviceBuffer<uint8_t> dpacked(packed_bytes);
  DeviceBuffer<float> dscales(scale_count);
  dpacked.Fill(0xAA);
  dscales.Fill(0xFF);
  args.packed = dpacked.get();
  args.scales = dscales.get();
  ASSERT_CUDA_OK(QuantizeW4A4Activations(args, nullptr));
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::vector<uint8_t> out = dpacked.ToHost();
  const std::vector<float> scales = dscales.ToHost();
  const auto* bytes = reinterpret_cast<const uint8_t*>(scales.data());
  out.insert(out.end(), bytes, bytes + scales.size() * sizeof(float));
  return out;
}

// RunQuantize's output split back into packed elements and scales.
struct QuantizedRows {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
};
QuantizedRows RunQuantizeSplit(const W4A4QuantizeArgs& args) {
  const std::vector<uint8_t> out = RunQuantize(args);
  const size_t packed_bytes = static_cast<size_t>(args.rows * args.k / 2);
  QuantizedRows q{std::vector<uint8_t>(out.begin(), out.begin() + packed_bytes),
                  std::vector<float>((out.size() - packed_bytes) / sizeof(float))};
  std::memcpy(q.scales.data(), out.data() + packed_bytes, q.scales.size() * sizeof(float));
  return q;
}

void TestQuantize(ActivationType type, Granularity granularity, bool rmsnorm, bool hadamard,
                  int64_t rows, int64_t k, float clip, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * k), gamma(k);
  for (float& v : x) v = normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.0f));  // some outliers
  for (float& v : gamma) v = 0.5f + std::fabs(normal(rng));
  for (int i = 0; i < 8; ++i) x[i] = 0.0f;  // row 0 starts with a zero group when k == 128·…
  std::vector<__nv_bfloat16> xb(x.size());
  if (type == ActivationType::kBFloat16) {
    for (size_t i = 0; i < x.size(); ++i) {
      xb[i] = FloatToBf16Truncate(x[i]);
      x[i] = Bf16ToFloat(xb[i]);
    }
  }
  const int group = GroupSizeFor(granularity, k);
  DeviceBuffer<float> dxf(x), dgamma(gamma);
  DeviceBuffer<__nv_bfloat16> dxb(xb);
  W4A4QuantizeArgs args;
  args.x = type == ActivationType::kBFloat16 ? static_cast<const void*>(dxb.get()) : dxf.get();
  args.type = type;
  args.rows = rows;
  args.k = k;
  args.rmsnorm_weight = rmsnorm ? dgamma.get() : nullptr;
  args.hadamard = hadamard;
  args.granularity = granularity;
  args.clip_ratio = clip;
  const auto [packed, scales] = RunQuantizeSplit(args);

  const bool transformed = rmsnorm || hadamard;
  const std::vector<float> xt =
      transformed ? TransformReference(x, rows, k, rmsnorm ? &gamma : nullptr, 1e-6f, hadamard) : x;
  std::vector<uint8_t> ref_packed(rows * k / 2);
  std::vector<float> ref_scales(rows * (k / group));
  RequireOk(QuantizeInt4Reference(xt.data(), rows, k, group, clip, ref_packed.data(), ref_scales.data()),
            "quantize");
  int64_t diff_elems = 0, big_diff = 0;
  for (int64_t i = 0; i < rows * k; ++i) {
    const int d = UnpackInt4(packed[i / 2], i & 1) - UnpackInt4(ref_packed[i / 2], i & 1);
    diff_elems += d != 0;
    big_diff += std::abs(d) > 1;
  }
  double worst_scale = 0;
  for (size_t i = 0; i < scales.size(); ++i) {
    worst_scale = std::max(worst_scale, std::fabs(double(scales[i]) - ref_scales[i]) / (ref_scales[i] + 1e-30));
  }
  // Without transforms the kernel must match bit for bit; with them, float32 on the GPU against
  // double on the CPU may flip a rounding tie-break now and then.
  const bool ok = transformed ? (big_diff == 0 && diff_elems <= rows * k / 1000 && worst_scale < 1e-5)
                              : (diff_elems == 0 && worst_scale == 0);
  EXPECT_TRUE_MSG(ok, "quantize %s %s norm=%d hadamard=%d: %lld elements differ (%lld by >1), scale err %.2e",
                  type == ActivationType::kBFloat16 ? "bf16" : "f32",
                  granularity == Granularity::kGroup128 ? "g128" : "per-token", rmsnorm, hadamard,
                  (long long)diff_elems, (long long)big_diff, worst_scale);
  std::printf("quantize %-4s %-9s norm=%d hadamard=%d rows=%lld k=%lld: %lld differ, scale err %.1e  %s\n",
              type == ActivationType::kBFloat16 ? "bf16" : "f32",
              granularity == Granularity::kGroup128 ? "g128" : "per-token", rmsnorm, hadamard,
              (long long)rows, (long long)k, (long long)diff_elems, worst_scale, ok ? "ok" : "FAIL");
}

// A layer whose K is zero-padded, against the CPU engine's own steps: RmsNorm over the k_valid
// columns (engine/llama_ops.cc, before the layer), a zero-padded k-wide copy, the 128-wide
// Hadamard (HadamardTransformReference) and QuantizeInt4Reference (engine/w4a4_linear.cc). x has
// `stride` elements per row; the columns from k_valid on are NaN, so reading them would show.
// The GPU must match bit for bit.
void TestQuantizePadded(ActivationType type, Granularity granularity, bool rmsnorm, bool hadamard,
                        int64_t rows, int64_t k_valid, int64_t k, int64_t stride, float clip,
                        std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * stride, std::nanf("")), gamma(k_valid);
  std::vector<__nv_bfloat16> xb(rows * stride);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k_valid; ++i) {
      x[r * stride + i] = normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.0f));
    }
  }
  for (float& v : gamma) v = 0.5f + std::fabs(normal(rng));
  for (size_t i = 0; i < x.size(); ++i) {
    xb[i] = FloatToBf16Truncate(x[i]);  // NaN stays NaN
    if (type == ActivationType::kBFloat16) x[i] = Bf16ToFloat(xb[i]);
  }
  const float eps = 1e-5f;

  // The CPU engine.
  std::vector<float> valid(rows * k_valid);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(&x[r * stride], &x[r * stride] + k_valid, &valid[r * k_valid]);
  }
  if (rmsnorm) RmsNorm(valid.data(), gamma.data(), rows, k_valid, eps, valid.data());
  std::vector<float> padded(rows * k, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(&valid[r * k_valid], &valid[(r + 1) * k_valid], &padded[r * k]);
  }
  if (hadamard) RequireOk(HadamardTransformReference(padded.data(), rows, k, 128), "hadamard");
  const int group = GroupSizeFor(granularity, k);
  std::vector<uint8_t> ref_packed(rows * k / 2);
  std::vector<float> ref_scales(rows * (k / group));
  RequireOk(QuantizeInt4Reference(padded.data(), rows, k, group, clip, ref_packed.data(), ref_scales.data()),
            "quantize");

  DeviceBuffer<float> dxf(x), dgamma(gamma);
  DeviceBuffer<__nv_bfloat16> dxb(xb);
  W4A4QuantizeArgs args;
  args.x = type == ActivationType::kBFloat16 ? static_cast<const void*>(dxb.get()) : dxf.get();
  args.type = type;
  args.rows = rows;
  args.k = k;
  args.x_row_stride = stride;
  args.k_valid = k_valid;
  args.rmsnorm_weight = rmsnorm ? dgamma.get() : nullptr;
  args.rmsnorm_eps = eps;
  args.hadamard = hadamard;
  args.granularity = granularity;
  args.clip_ratio = clip;
  const auto [packed, scales] = RunQuantizeSplit(args);
  int64_t diff_elems = 0, diff_scales = 0;
  for (int64_t i = 0; i < rows * k; ++i) {
    diff_elems += UnpackInt4(packed[i / 2], i & 1) != UnpackInt4(ref_packed[i / 2], i & 1);
  }
  for (size_t i = 0; i < scales.size(); ++i) {
    diff_scales += std::memcmp(&scales[i], &ref_scales[i], sizeof(float)) != 0;
  }
  const bool ok = diff_elems == 0 && diff_scales == 0;
  EXPECT_TRUE_MSG(ok, "quantize padded %s %s norm=%d hadamard=%d k_valid=%lld k=%lld stride=%lld: %lld elements "
                  "and %lld scales differ from the CPU engine's path",
                  type == ActivationType::kBFloat16 ? "bf16" : "f32",
                  granularity == Granularity::kGroup128 ? "g128" : "per-token", rmsnorm, hadamard,
                  (long long)k_valid, (long long)k, (long long)stride, (long long)diff_elems,
                  (long long)diff_scales);
  std::printf("quantize %-4s %-9s norm=%d hadamard=%d rows=%lld padded k_valid=%lld k=%lld stride=%lld: "
              "%lld elements, %lld scales differ  %s\n",
              type == ActivationType::kBFloat16 ? "bf16" : "f32",
              granularity == Granularity::kGroup128 ? "g128" : "per-token", rmsnorm, hadamard,
              (long long)rows, (long long)k_valid, (long long)k, (long long)stride, (long long)diff_elems,
              (long long)diff_scales, ok ? "ok" : "FAIL");
}

// Atom-style outlier channels (FORMAT.md "Outlier channels") against the CPU engine's steps:
// RmsNorm, zero padding, the outlier columns copied out as per-token INT8 (scale absmax / 127,
// clamp(rint(v / scale), ±127)) and zeroed, Hadamard, QuantizeInt4Reference. Every output bit for
// bit: packed codes, scales, INT8 codes and their scales. Rows 0 and 1: outlier columns all zero
// (scale 0, codes 0) and one huge outlier.
void TestQuantizeOutliers(ActivationType type, Granularity granularity, bool hadamard, int64_t rows,
                          int64_t k_valid, int64_t k, int32_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<int32_t> channels(k_valid);
  for (int32_t i = 0; i < k_valid; ++i) channels[i] = i;
  std::shuffle(channels.begin(), channels.end(), rng);
  channels.resize(count);
  std::sort(channels.begin(), channels.end());
  std::vector<float> x(rows * k_valid), gamma(k_valid);
  for (float& v : x) v = normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.0f));
  for (float& v : gamma) v = 0.5f + std::fabs(normal(rng));
  for (int32_t c : channels) x[c] = 0.0f;
  if (rows > 1) x[k_valid + channels[count / 2]] = 300.0f;
  std::vector<__nv_bfloat16> xb(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    xb[i] = FloatToBf16Truncate(x[i]);
    if (type == ActivationType::kBFloat16) x[i] = Bf16ToFloat(xb[i]);
  }
  const float eps = 1e-5f;

  std::vector<float> normed(x);
  RmsNorm(normed.data(), gamma.data(), rows, k_valid, eps, normed.data());
  const int64_t codes_stride = W4A4OutlierCodesStride(count);
  std::vector<float> padded(rows * k, 0.0f), ref_outlier_scales(rows);
  std::vector<int8_t> ref_q8(rows * codes_stride, 0);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = &padded[r * k];
    std::copy(&normed[r * k_valid], &normed[(r + 1) * k_valid], row);
    float absmax = 0.0f;
    for (int32_t c : channels) absmax = std::max(absmax, std::fabs(row[c]));
    const float scale = absmax / 127.0f;
    ref_outlier_scales[r] = scale;
    for (int32_t i = 0; i < count; ++i) {
      const float v = row[channels[i]];
      row[channels[i]] = 0.0f;
      ref_q8[r * codes_stride + i] =
          absmax > 0.0f ? static_cast<int8_t>(std::clamp(std::nearbyint(v / scale), -127.0f, 127.0f)) : 0;
    }
  }
  if (hadamard) RequireOk(HadamardTransformReference(padded.data(), rows, k, 128), "hadamard");
  const int group = GroupSizeFor(granularity, k);
  std::vector<uint8_t> ref_packed(rows * k / 2);
  std::vector<float> ref_scales(rows * (k / group));
  RequireOk(QuantizeInt4Reference(padded.data(), rows, k, group, 1.0f, ref_packed.data(), ref_scales.data()),
            "quantize");

  std::vector<uint8_t> mask(k / 8);
  std::vector<int16_t> before(k / 8);
  W4A4OutlierColumnsFor(channels.data(), count, k, mask.data(), before.data());
  DeviceBuffer<uint8_t> dmask(mask);
  DeviceBuffer<int16_t> dbefore(before);
  const W4A4OutlierColumns columns{dmask.get(), dbefore.get(), count};
  DeviceBuffer<float> dxf(x), dgamma(gamma), doutlier_scales(rows);
  DeviceBuffer<__nv_bfloat16> dxb(xb);
  DeviceBuffer<int8_t> dq8(rows * codes_stride);
  dq8.Fill(0x55);
  doutlier_scales.Fill(0xFF);
  W4A4QuantizeArgs args;
  args.x = type == ActivationType::kBFloat16 ? static_cast<const void*>(dxb.get()) : dxf.get();
  args.type = type;
  args.rows = rows;
  args.k = k;
  args.x_row_stride = k_valid;
  args.k_valid = k_valid;
  args.rmsnorm_weight = dgamma.get();
  args.rmsnorm_eps = eps;
  args.hadamard = hadamard;
  args.granularity = granularity;
  args.outliers = &columns;
  args.outlier_q8 = dq8.get();
  args.outlier_scales = doutlier_scales.get();
  const auto [packed, scales] = RunQuantizeSplit(args);
  const std::vector<int8_t> q8 = dq8.ToHost();
  const std::vector<float> outlier_scales = doutlier_scales.ToHost();
  int64_t diff_elems = 0, diff_scales = 0, diff_q8 = 0, diff_outlier_scales = 0;
  for (int64_t i = 0; i < rows * k; ++i) {
    diff_elems += UnpackInt4(packed[i / 2], i & 1) != UnpackInt4(ref_packed[i / 2], i & 1);
  }
  for (size_t i = 0; i < scales.size(); ++i) diff_scales += std::memcmp(&scales[i], &ref_scales[i], 4) != 0;
  for (size_t i = 0; i < q8.size(); ++i) diff_q8 += q8[i] != ref_q8[i];
  for (int64_t r = 0; r < rows; ++r) {
    diff_outlier_scales += std::memcmp(&outlier_scales[r], &ref_outlier_scales[r], 4) != 0;
  }
  const bool ok = diff_elems == 0 && diff_scales == 0 && diff_q8 == 0 && diff_outlier_scales == 0;
  char line[240];
  std::snprintf(line, sizeof(line),
                "quantize outliers %s %s hadamard=%d rows=%lld k_valid=%lld k=%lld channels=%d: %lld codes, %lld scales, "
                "%lld int8 codes, %lld int8 scales differ",
                type == ActivationType::kBFloat16 ? "bf16" : "f32",
                granularity == Granularity::kGroup128 ? "g128" : "per-token", hadamard, (long long)rows,
                (long long)k_valid, (long long)k, count, (long long)diff_elems, (long long)diff_scales,
                (long long)diff_q8, (long long)diff_outlier_scales);
  EXPECT_TRUE_MSG(ok, "%s", line);
  std::printf("%s  %s\n", line, ok ? "ok" : "FAIL");
}

// The outlier channels' INT8 product added into a bf16 output (padding columns of y untouched),
// bit for bit against the float expression of W4A4Linear::AddOutlierProducts on the same bf16 y;
// rows and columns not multiples of the 64 × 64 tile.
void TestOutlierProducts(int64_t rows, int64_t n, int32_t count, std::mt19937& rng) {
  std::uniform_int_distribution<int> code(-127, 127);
  std::uniform_real_distribution<float> scale(1e-3f, 2e-2f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t stride = W4A4OutlierCodesStride(count), ldy = n + 7;
  std::vector<int8_t> x_q8(rows * stride, 0), weights(n * stride, 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int32_t c = 0; c < count; ++c) x_q8[r * stride + c] = static_cast<int8_t>(code(rng));
  }
  for (int64_t j = 0; j < n; ++j) {
    for (int32_t c = 0; c < count; ++c) weights[j * stride + c] = static_cast<int8_t>(code(rng));
  }
  std::vector<float> x_scales(rows), weight_scales(n);
  for (float& v : x_scales) v = scale(rng);
  for (float& v : weight_scales) v = scale(rng);
  std::vector<__nv_bfloat16> y(rows * ldy);
  for (auto& v : y) v = FloatToBf16Truncate(normal(rng));
  DeviceBuffer<int8_t> dx(x_q8), dw(weights);
  DeviceBuffer<float> dxs(x_scales), dws(weight_scales);
  DeviceBuffer<__nv_bfloat16> dy(y);
  W4A4OutlierProductArgs args;
  args.x_q8 = dx.get();
  args.x_scales = dxs.get();
  args.rows = rows;
  args.count = count;
  args.codes_stride = stride;
  args.weights = dw.get();
  args.weight_scales = dws.get();
  args.n = n;
  args.y = dy.get();
  args.ldy = ldy;
  ASSERT_CUDA_OK(AddW4A4OutlierProducts(args, nullptr));
  const std::vector<__nv_bfloat16> out = dy.ToHost();
  int64_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < ldy; ++j) {
      const __nv_bfloat16 before = y[r * ldy + j];
      __nv_bfloat16 want = before;
      if (j < n) {
        int32_t dot = 0;
        for (int32_t c = 0; c < count; ++c) dot += int32_t{x_q8[r * stride + c]} * weights[j * stride + c];
        want = __float2bfloat16_rn(Bf16ToFloat(before) + static_cast<float>(dot) * (x_scales[r] * weight_scales[j]));
      }
      bad += testing::Bf16Bits(out[r * ldy + j]) != testing::Bf16Bits(want);
    }
  }
  char line[160];
  std::snprintf(line, sizeof(line), "outlier products rows=%lld n=%lld channels=%d: %lld outputs differ",
                (long long)rows, (long long)n, count, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s", line);
  std::printf("%s  %s\n", line, bad == 0 ? "ok" : "FAIL");
}

int64_t CountDiffering(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size()) return -1;
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

// The residual add fused into the quantizer (W4A4QuantizeArgs::residual) against AddResidual (a
// host float add where x has a row stride, which AddResidual does not take) followed by the plain
// quantizer: packed values and scales bit for bit, and x written back bit for bit (columns from
// k_valid on, NaN, untouched).
void TestQuantizeFusedResidual(Granularity granularity, bool rmsnorm, bool hadamard, int64_t rows, int64_t k_valid,
                               int64_t k, int64_t stride, int64_t residual_stride, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(rows * stride, std::nanf("")), gamma(k_valid);
  std::vector<__nv_bfloat16> residual(rows * residual_stride, FloatToBf16Truncate(std::nanf("")));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k_valid; ++i) {
      x[r * stride + i] = 3.0f * normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.0f));
      residual[r * residual_stride + i] = FloatToBf16Truncate(normal(rng) * (1.0f + 8.0f * (normal(rng) > 2.5f)));
    }
  }
  if (rows > 2) {  // a row whose sum is zero
    for (int64_t i = 0; i < k_valid; ++i) x[2 * stride + i] = -Bf16ToFloat(residual[2 * residual_stride + i]);
  }
  for (float& v : gamma) v = 0.5f + std::fabs(normal(rng));
  std::vector<float> updated = x;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k_valid; ++i) updated[r * stride + i] += Bf16ToFloat(residual[r * residual_stride + i]);
  }
  DeviceBuffer<float> dx(x), dunfused_x(stride == k_valid ? x : updated), dgamma(gamma);
  DeviceBuffer<__nv_bfloat16> dresidual(residual);
  if (stride == k_valid) {
    ASSERT_CUDA_OK(AddResidual(dunfused_x.get(), dresidual.get(), residual_stride, rows, k_valid, nullptr));
  }
  W4A4QuantizeArgs args;
  args.type = ActivationType::kFloat32;
  args.rows = rows;
  args.k = k;
  args.x_row_stride = stride;
  args.k_valid = k_valid;
  args.rmsnorm_weight = rmsnorm ? dgamma.get() : nullptr;
  args.rmsnorm_eps = 1e-5f;
  args.hadamard = hadamard;
  args.granularity = granularity;
  args.clip_ratio = 0.95f;
  args.x = dunfused_x.get();
  const std::vector<uint8_t> want = RunQuantize(args);
  args.x = dx.get();
  args.residual = dresidual.get();
  args.residual_stride = residual_stride;
  const std::vector<uint8_t> got = RunQuantize(args);
  const std::vector<float> got_x = dx.ToHost(), want_x = dunfused_x.ToHost();
  const int64_t bad = CountDiffering(got, want);
  const int64_t bad_x = std::memcmp(got_x.data(), want_x.data(), got_x.size() * sizeof(float)) != 0;
  const int64_t bad_host = std::memcmp(want_x.data(), updated.data(), updated.size() * sizeof(float)) != 0;
  const bool ok = bad == 0 && bad_x == 0 && bad_host == 0;
  char line[200];
  std::snprintf(line, sizeof(line),
                "quantize fused residual %-9s norm=%d hadamard=%d rows=%lld k_valid=%lld k=%lld stride=%lld/%lld: "
                "%lld bytes, x %s",
                granularity == Granularity::kGroup128 ? "g128" : "per-token", rmsnorm, hadamard, (long long)rows,
                (long long)k_valid, (long long)k, (long long)stride, (long long)residual_stride, (long long)bad,
                bad_x || bad_host ? "differs" : "same");
  EXPECT_TRUE_MSG(ok, "%s", line);
  std::printf("%s  %s\n", line, ok ? "ok" : "FAIL");
}

// The SwiGLU fused into the quantizer (W4A4QuantizeArgs::swiglu on the bf16 gate|up rows)
// against SiluMul to f32 followed by the plain quantizer, bit for bit. Columns of gate|up from
// 2·inter on are NaN.
void TestQuantizeFusedSwiGlu(Granularity granularity, bool hadamard, int64_t rows, int64_t inter, int64_t k,
                             int64_t ld, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<__nv_bfloat16> gate_up(rows * ld, FloatToBf16Truncate(std::nanf("")));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < 2 * inter; ++i) {
      gate_up[r * ld + i] = FloatToBf16Truncate(3.0f * normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.5f)));
    }
  }
  const float extremes[] = {0.0f, -0.0f, 100.0f, -100.0f, 20.0f, -20.0f, 1e-3f, -88.0f};
  for (int i = 0; i < 8 && i < inter; ++i) gate_up[i] = FloatToBf16Truncate(extremes[i]);
  if (rows > 1) {
    for (int64_t i = 0; i < inter; ++i) gate_up[ld + inter + i] = FloatToBf16Truncate(0.0f);  // a zero row
  }
  DeviceBuffer<__nv_bfloat16> dgate_up(gate_up);
  DeviceBuffer<float> dactivated(rows * inter);
  dactivated.Fill(0xFF);
  ASSERT_CUDA_OK(SiluMul(dgate_up.get(), ld, rows, inter, ActivationType::kFloat32, dactivated.get(), nullptr));
  W4A4QuantizeArgs args;
  args.type = ActivationType::kFloat32;
  args.x = dactivated.get();
  args.rows = rows;
  args.k = k;
  args.x_row_stride = inter;
  args.k_valid = inter;
  args.hadamard = hadamard;
  args.granularity = granularity;
  const std::vector<uint8_t> want = RunQuantize(args);
  args.type = ActivationType::kBFloat16;
  args.x = dgate_up.get();
  args.x_row_stride = ld;
  args.swiglu = true;
  const std::vector<uint8_t> got = RunQuantize(args);
  const int64_t bad = CountDiffering(got, want);
  char line[200];
  std::snprintf(line, sizeof(line), "quantize fused SwiGLU %-9s hadamard=%d rows=%lld inter=%lld k=%lld ld=%lld: %lld bytes",
                granularity == Granularity::kGroup128 ? "g128" : "per-token", hadamard, (long long)rows,
                (long long)inter, (long long)k, (long long)ld, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s differ", line);
  std::printf("%s differ  %s\n", line, bad == 0 ? "ok" : "FAIL");
}

// Rows without RMSNorm quantize identically whatever the batch: few rows run with more threads
// per row (ThreadsFor), many with 256. The first `few` rows of a 100-row batch against the same
// rows alone.
void TestQuantizeBatchInvariant(Granularity granularity, bool hadamard, bool swiglu, int64_t k, int64_t few,
                                std::mt19937& rng) {
  const int64_t rows = 100, ld = swiglu ? 2 * k : k;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<__nv_bfloat16> x(rows * ld);
  for (auto& v : x) v = FloatToBf16Truncate(normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.5f)));
  DeviceBuffer<__nv_bfloat16> dx(x);
  W4A4QuantizeArgs args;
  args.x = dx.get();
  args.type = ActivationType::kBFloat16;
  args.k = k;
  args.x_row_stride = ld;
  args.hadamard = hadamard;
  args.granularity = granularity;
  args.swiglu = swiglu;
  args.rows = rows;
  const std::vector<uint8_t> all = RunQuantize(args);
  args.rows = few;
  const std::vector<uint8_t> part = RunQuantize(args);
  const int group = GroupSizeFor(granularity, k);
  const size_t packed = few * k / 2, scales = few * (k / group) * sizeof(float);
  const bool ok = std::memcmp(part.data(), all.data(), packed) == 0 &&
                  std::memcmp(part.data() + packed, all.data() + rows * k / 2, scales) == 0;
  EXPECT_TRUE_MSG(ok, "quantize batch invariance %s hadamard=%d swiglu=%d k=%lld: %lld rows alone differ",
                  granularity == Granularity::kGroup128 ? "g128" : "per-token", hadamard, swiglu, (long long)k,
                  (long long)few);
  std::printf("quantize batch invariance %-9s hadamard=%d swiglu=%d k=%lld rows=%lld  %s\n",
              granularity == Granularity::kGroup128 ? "g128" : "per-token", hadamard, swiglu, (long long)k,
              (long long)few, ok ? "ok" : "FAIL");
}

void TestFusedArgumentChecks() {
  DeviceBuffer<float> buffer(1 << 16);
  W4A4QuantizeArgs args;
  args.x = buffer.get();
  args.rows = 2;
  args.k = 128;
  args.packed = reinterpret_cast<uint8_t*>(buffer.get() + 8192);
  args.scales = buffer.get() + 16384;
  const auto* residual = reinterpret_cast<const __nv_bfloat16*>(buffer.get() + 32768);
  auto invalid = [](const W4A4QuantizeArgs& a) { return QuantizeW4A4Activations(a, nullptr).code == cudaErrorInvalidValue; };
  W4A4QuantizeArgs a = args;
  a.residual = residual;
  a.type = ActivationType::kBFloat16;
  bool ok = invalid(a);  // residual on bf16 x
  a = args;
  a.residual = residual;
  a.residual_stride = 100;
  ok = ok && invalid(a);  // residual stride < k_valid
  a = args;
  a.swiglu = true;
  a.x_row_stride = 256;
  ok = ok && invalid(a);  // SwiGLU on f32 x
  a.type = ActivationType::kBFloat16;
  a.x_row_stride = 200;
  ok = ok && invalid(a);  // stride < 2·inter
  a.x_row_stride = 256;
  a.rmsnorm_weight = buffer.get();
  ok = ok && invalid(a);  // SwiGLU with RMSNorm
  a.rmsnorm_weight = nullptr;
  ok = ok && QuantizeW4A4Activations(a, nullptr).ok();
  ASSERT_CUDA(cudaDeviceSynchronize());
  EXPECT_TRUE_MSG(ok, "fused quantizer argument checks");
  std::printf("fused quantizer argument checks  %s\n", ok ? "ok" : "FAIL");
}

int Main() {
  if (!testing::HaveCudaDevice()) return 0;
  cudaDeviceProp prop;
  ASSERT_CUDA(cudaGetDeviceProperties(&prop, 0));
  const uint32_t seed = std::random_device{}();
  std::printf("device: %s (sm_%d%d, %d SMs), seed %u\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, seed);
  std::mt19937 rng(seed);

  for (ActivationType type : {ActivationType::kFloat32, ActivationType::kBFloat16}) {
    for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
      for (int variant = 0; variant < 4; ++variant) {
        TestQuantize(type, g, variant & 1, variant & 2, 37, 4096, 1.0f, rng);
      }
    }
  }
  TestQuantize(ActivationType::kFloat32, Granularity::kPerChannel, false, false, 5, 28672, 0.9f, rng);
  TestQuantize(ActivationType::kFloat32, Granularity::kGroup128, true, true, 3, 11008, 0.85f, rng);
  // Zero-padded K (SmolLM2's hidden size 576 → 640), rows wider than k; then the per-element
  // load path (a stride that is not 16-byte aligned), contiguous rows of k_valid, and a k_valid
  // that ends inside an 8-element chunk.
  for (ActivationType type : {ActivationType::kFloat32, ActivationType::kBFloat16}) {
    for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
      for (int variant = 0; variant < 4; ++variant) {
        TestQuantizePadded(type, g, variant & 1, variant & 2, 37, 576, 640, 704, 1.0f, rng);
      }
    }
  }
  TestQuantizePadded(ActivationType::kFloat32, Granularity::kPerChannel, true, true, 9, 576, 640, 579, 0.9f, rng);
  TestQuantizePadded(ActivationType::kBFloat16, Granularity::kGroup128, true, true, 9, 576, 640, 577, 1.0f, rng);
  TestQuantizePadded(ActivationType::kBFloat16, Granularity::kPerChannel, true, false, 9, 576, 640, 576, 1.0f, rng);
  TestQuantizePadded(ActivationType::kFloat32, Granularity::kGroup128, true, true, 5, 1001, 1024, 1003, 1.0f, rng);
  TestQuantizePadded(ActivationType::kFloat32, Granularity::kPerChannel, true, true, 5, 4096, 4096, 4160, 1.0f, rng);

  // Fused inputs: vector paths (aligned strides), per-element ones (odd strides, k_valid inside
  // an 8-element chunk), padded K, decode rows and long rows (1024 threads for per-token k ≥ 16384).
  for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
    for (int variant = 0; variant < 4; ++variant) {
      const bool norm = variant & 1, had = variant & 2;
      TestQuantizeFusedResidual(g, norm, had, 1, 4096, 4096, 4096, 4096, rng);
      TestQuantizeFusedResidual(g, norm, had, 37, 576, 640, 576, 584, rng);
      TestQuantizeFusedResidual(g, norm, had, 9, 576, 640, 704, 640, rng);
      TestQuantizeFusedResidual(g, norm, had, 7, 576, 640, 579, 577, rng);
      TestQuantizeFusedResidual(g, norm, had, 5, 1001, 1024, 1001, 1003, rng);
      TestQuantizeFusedResidual(g, norm, had, 3, 16384, 16384, 16384, 16384, rng);
      TestQuantizeFusedResidual(g, norm, had, 300, 2048, 2048, 2048, 2048, rng);
    }
    for (bool had : {false, true}) {
      TestQuantizeFusedSwiGlu(g, had, 1, 14336, 14336, 28672, rng);
      TestQuantizeFusedSwiGlu(g, had, 37, 1536, 1536, 3072, rng);
      TestQuantizeFusedSwiGlu(g, had, 9, 1000, 1024, 2001, rng);
      TestQuantizeFusedSwiGlu(g, had, 5, 576, 640, 1160, rng);
      TestQuantizeFusedSwiGlu(g, had, 3, 1500, 1536, 3000, rng);
      TestQuantizeFusedSwiGlu(g, had, 300, 256, 256, 512, rng);
      TestQuantizeFusedSwiGlu(g, had, 2, 17000, 17024, 34000, rng);
    }
  }
  for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
    TestQuantizeBatchInvariant(g, true, true, 14336, 1, rng);
    TestQuantizeBatchInvariant(g, false, false, 4096, 5, rng);
    TestQuantizeBatchInvariant(g, true, false, 11008, 64, rng);
  }
  TestFusedArgumentChecks();
  // Outlier channels: SmolLM2's 18 of 576 (padded to 640), LLaMA's 128 of 4096 and 344 of 11008.
  for (ActivationType type : {ActivationType::kFloat32, ActivationType::kBFloat16}) {
    for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
      for (bool had : {false, true}) {
        TestQuantizeOutliers(type, g, had, 37, 576, 640, 18, rng);
        TestQuantizeOutliers(type, g, had, 5, 4096, 4096, 128, rng);
      }
    }
  }
  TestQuantizeOutliers(ActivationType::kFloat32, Granularity::kGroup128, false, 3, 11008, 11008, 344, rng);
  TestOutlierProducts(1, 640, 18, rng);
  TestOutlierProducts(37, 1536, 48, rng);
  TestOutlierProducts(300, 4100, 128, rng);
  TestOutlierProducts(2, 11008, 1024, rng);
  TestOutlierProducts(129, 4096, 344, rng);

  W4A4Backend best;
  ASSERT_CUDA_OK(SelectW4A4Backend(0, &best));
  struct Shape { int64_t m, n, k; };
  // Decode (M ≤ 16: one or two token tiles; fewer K chunks than warps; K chunks not a multiple
  // of the warps; 16 warps per strip up to 2 strips per SM, 8 beyond: N = 4352), small batches
  // (split-K), M tails, and large M with 256-token tiles (group-128: 192). The first shape is an
  // unsplit large-M call: its scratch then lies in the workspace the split calls after it share.
  const Shape shapes[] = {{1000, 2048, 512}, {1, 256, 1024},  {13, 384, 2048}, {16, 128, 4096},
                          {5, 640, 384},     {9, 256, 11136}, {8, 128, 1152},  {3, 4352, 512},
                          {12, 4352, 256},   {17, 256, 2048}, {50, 256, 1024}, {77, 512, 2048},
                          {300, 1024, 1024}, {2100, 4096, 256}};
  for (W4A4Backend backend : {best, W4A4Backend::kPortable}) {
    const char* name = backend == W4A4Backend::kSm90 ? "sm90" : "portable";
    size_t workspace_bytes = 0;
    for (const Shape& s : shapes) {
      for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
        workspace_bytes = std::max(
            workspace_bytes, W4A4GemmWorkspaceBytes(backend, s.m, s.n, s.k, g, prop.multiProcessorCount));
      }
    }
    DeviceBuffer<uint8_t> workspace(workspace_bytes);
    ASSERT_CUDA(cudaMemset(workspace.get(), 0, workspace_bytes));
    for (const Shape& s : shapes) {
      for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
        TestGemm(backend, name, s.m, s.n, s.k, g, Workspace{workspace.get(), workspace_bytes}, rng);
      }
    }
    // Outlier channels: decode kernel (1, 13 tokens) and the wgmma kernel (77), both with the
    // product added after it on the portable backend.
    for (const Shape& s : {Shape{1, 256, 1024}, Shape{13, 384, 2048}, Shape{77, 512, 2048}}) {
      for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
        for (int32_t count : {18, 64}) {
          TestGemmOutliers(backend, name, s.m, s.n, s.k, g, count, Workspace{workspace.get(), workspace_bytes}, rng);
        }
      }
    }
    if (backend == W4A4Backend::kPortable) break;
  }
  return testing::FinishTests();
}

}  // namespace
}  // namespace apex4::cuda

int main() { return apex4::cuda::Main(); }
