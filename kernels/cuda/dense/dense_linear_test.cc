// Tests of the dense baseline GEMMs (dense_linear.h) on fresh random data (the seed is printed):
// the host conversions against hand-checked encodings (these run without a GPU too); BF16 and
// FP8 GEMMs exact on integer data (sparse activations, power-of-two scales: every result is an
// integer times a power of two, exact in bf16), and on dense random data within bf16 rounding
// (plus fp32 accumulation) of a double reference over the same bf16 / e4m3 operands. Odd M,
// row strides, outputs poisoned with NaN (the columns between n and ldy must stay untouched),
// every launch run twice and compared bitwise. Without a CUDA device: "no CUDA device: skipped".
#include "kernels/cuda/dense/dense_linear.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/cuda/testing/gpu_test_util.h"

namespace apex4::cuda {
namespace {

using testing::Bf16Bits;
using testing::Bf16ToFloat;
using testing::DeviceBuffer;

float Fp8ToFloat(__nv_fp8_e4m3 v) { return static_cast<float>(v); }
__nv_fp8_e4m3 Fp8Exact(float v) {  // v must be representable
  __nv_fp8_e4m3 q;
  q.__x = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
  return q;
}

void TestHostConversions(std::mt19937& rng) {
  const int failures_before = testing::g_failures;
  // e4m3 encodings worked out by hand, on a row whose absmax is 448 (scale exactly 1): ties to
  // even (1.0625 → 1.0, 1.1875 → 1.25), the smallest subnormal 2^-9, ±448.
  {
    const float row[8] = {448.0f, 1.0625f, 1.1875f, -2.0f, 0.001953125f, 0.0f, -448.0f, 3.0f};
    const uint8_t expected[8] = {0x7E, 0x38, 0x3A, 0xC0, 0x01, 0x00, 0xFE, 0x44};
    __nv_fp8_e4m3 q[8];
    float scale = 0;
    QuantizeWeightsToFp8(row, 1, 8, q, &scale);
    int bad = 0;
    for (int i = 0; i < 8; ++i) bad += q[i].__x != expected[i];
    EXPECT_TRUE_MSG(scale == 1.0f && bad == 0, "fp8 encodings: scale %g, %d of 8 bytes wrong", scale, bad);
  }
  // A zero row: scale 1, zeros.
  {
    const std::vector<float> zeros(40, 0.0f);
    std::vector<__nv_fp8_e4m3> q(40, Fp8Exact(1.0f));
    float scale = 0;
    QuantizeWeightsToFp8(zeros.data(), 1, 40, q.data(), &scale);
    int nonzero = 0;
    for (const auto& v : q) nonzero += v.__x != 0;
    EXPECT_TRUE_MSG(scale == 1.0f && nonzero == 0, "fp8 zero row: scale %g, %d nonzero", scale, nonzero);
  }
  // Random rows: scale = absmax / 448, the absmax element becomes ±448, every element within
  // half a step of e4m3 (3 mantissa bits; subnormal step 2^-9).
  {
    const int64_t n = 64, k = 333;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(n * k), scales(n);
    for (int64_t r = 0; r < n; ++r) {
      const float row_scale = std::ldexp(1.0f, static_cast<int>(r % 40) - 20);
      for (int64_t i = 0; i < k; ++i) w[r * k + i] = normal(rng) * row_scale;
    }
    std::vector<__nv_fp8_e4m3> q(n * k);
    QuantizeWeightsToFp8(w.data(), n, k, q.data(), scales.data());
    int64_t bad = 0, bad_scale = 0, bad_max = 0;
    for (int64_t r = 0; r < n; ++r) {
      float absmax = 0.0f, qmax = 0.0f;
      for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(w[r * k + i]));
      bad_scale += scales[r] != absmax / 448.0f;
      for (int64_t i = 0; i < k; ++i) {
        const double t = double(w[r * k + i]) / scales[r];
        const double got = Fp8ToFloat(q[r * k + i]);
        qmax = std::max(qmax, std::fabs(static_cast<float>(got)));
        const double half_step = std::fabs(t) < std::ldexp(1.0, -6) ? std::ldexp(1.0, -10)
                                                                   : std::fabs(t) * std::ldexp(1.0, -4);
        bad += std::fabs(got - t) > half_step * (1 + 1e-6);
      }
      bad_max += qmax != 448.0f;
    }
    EXPECT_TRUE_MSG(bad == 0 && bad_scale == 0 && bad_max == 0,
                    "fp8 random rows: %lld elements off, %lld scales wrong, %lld rows without ±448",
                    (long long)bad, (long long)bad_scale, (long long)bad_max);
  }
  // bf16: round to nearest even.
  {
    const float in[5] = {1.0f, 1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -2.5f, INFINITY};
    const uint16_t expected[5] = {0x3F80, 0x3F80, 0x3F82, 0xC020, 0x7F80};
    __nv_bfloat16 out[5];
    ConvertWeightsToBf16(in, 5, out);
    int bad = 0;
    for (int i = 0; i < 5; ++i) bad += Bf16Bits(out[i]) != expected[i];
    EXPECT_TRUE_MSG(bad == 0, "bf16 conversion: %d of 5 wrong", bad);
  }
  std::printf("host conversions %s\n", testing::g_failures == failures_before ? "ok" : "FAIL");
}

// y (m rows of row stride ldy, bf16) against ref / abs_sum (m × n, double): exact, or within
// 2^-8 · (|ref| + Σ|terms|) per element (bf16 rounding of the result and of cuBLAS's split-K
// partial sums) and 4e-3 relative RMS error. The columns n..ldy must still hold the NaN poison.
void CheckGemm(const char* what, const std::vector<__nv_bfloat16>& y, int64_t ldy, const std::vector<double>& ref,
               const std::vector<double>& abs_sum, int64_t m, int64_t n, int64_t k, bool exact) {
  int64_t bad = 0, non_finite = 0, pad_touched = 0;
  double err2 = 0, ref2 = 0, worst = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < ldy; ++c) {
      const __nv_bfloat16 v = y[r * ldy + c];
      if (c >= n) {
        pad_touched += Bf16Bits(v) != 0xFFFF;
        continue;
      }
      const double got = Bf16ToFloat(v), want = ref[r * n + c];
      if (!std::isfinite(got)) {
        ++non_finite;
        continue;
      }
      const double d = std::fabs(got - want);
      const double tol = exact ? 0.0 : std::ldexp(std::fabs(want) + abs_sum[r * n + c], -8);
      bad += d > tol;
      worst = std::max(worst, d / (std::fabs(want) + abs_sum[r * n + c] + 1e-30));
      err2 += d * d;
      ref2 += want * want;
    }
  }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-300));
  const bool ok = bad == 0 && non_finite == 0 && pad_touched == 0 && (exact || rel < 4e-3);
  EXPECT_TRUE_MSG(ok, "%s m=%lld n=%lld k=%lld ldy=%lld: %lld wrong, %lld non-finite, %lld padding touched, rel %.2e",
                  what, (long long)m, (long long)n, (long long)k, (long long)ldy, (long long)bad,
                  (long long)non_finite, (long long)pad_touched, rel);
  std::printf("%-10s m=%-4lld n=%-5lld k=%-5lld ldy=%-5lld rel %.2e worst %.2e  %s\n", what, (long long)m,
              (long long)n, (long long)k, (long long)ldy, rel, worst, ok ? "ok" : "FAIL");
}

// Runs `gemm` twice on NaN-poisoned y; the two results must agree bitwise.
template <typename F>
std::vector<__nv_bfloat16> RunTwice(const DeviceBuffer<__nv_bfloat16>& y, F gemm, const char* what) {
  std::vector<__nv_bfloat16> first;
  for (int run = 0; run < 2; ++run) {
    y.Fill(0xFF);
    ASSERT_CUDA_OK(gemm());
    ASSERT_CUDA(cudaDeviceSynchronize());
    std::vector<__nv_bfloat16> out = y.ToHost();
    if (run == 0) {
      first = std::move(out);
    } else {
      EXPECT_TRUE_MSG(std::memcmp(first.data(), out.data(), out.size() * 2) == 0, "%s: second run differs", what);
    }
  }
  return first;
}

// Sparse integer rows: four nonzeros in [-8, 8] per row.
void FillSparseIntegers(std::mt19937& rng, int64_t rows, int64_t k, int64_t ld, std::vector<float>* x) {
  std::uniform_int_distribution<int> value(-8, 8);
  std::uniform_int_distribution<int64_t> position(0, k - 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int i = 0; i < 4; ++i) (*x)[r * ld + position(rng)] = static_cast<float>(value(rng));
  }
}

void TestBf16(DenseGemm& gemm, int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy, bool exact,
              std::mt19937& rng) {
  std::vector<float> x(m * ldx, 0.0f), w(n * k);
  if (exact) {
    FillSparseIntegers(rng, m, k, ldx, &x);
    std::uniform_int_distribution<int> value(-8, 8);
    for (float& v : w) v = static_cast<float>(value(rng));
  } else {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
  }
  std::vector<__nv_bfloat16> xb(x.size()), wb(w.size());
  ConvertWeightsToBf16(x.data(), x.size(), xb.data());
  ConvertWeightsToBf16(w.data(), w.size(), wb.data());
  std::vector<double> ref(m * n), abs_sum(m * n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double t = double(Bf16ToFloat(xb[r * ldx + i])) * Bf16ToFloat(wb[c * k + i]);
        s += t;
        a += std::fabs(t);
      }
      ref[r * n + c] = s;
      abs_sum[r * n + c] = a;
    }
  }
  DeviceBuffer<__nv_bfloat16> dx(xb), dw(wb), dy(m * ldy);
  const auto y = RunTwice(dy, [&] { return gemm.Bf16(dx.get(), ldx, dw.get(), dy.get(), ldy, m, n, k); }, "bf16");
  CheckGemm(exact ? "bf16 exact" : "bf16", y, ldy, ref, abs_sum, m, n, k, exact);

  // The float-output variant (the LM head): the same sums without the final bf16 rounding.
  DeviceBuffer<float> dyf(m * ldy);
  ASSERT_CUDA_OK(gemm.Bf16ToFloat(dx.get(), ldx, dw.get(), dyf.get(), ldy, m, n, k));
  ASSERT_CUDA(cudaDeviceSynchronize());
  const std::vector<float> yf = dyf.ToHost();
  int64_t bad = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const double tol = exact ? 0.0 : 1e-5 * abs_sum[r * n + c];
      bad += !(std::fabs(yf[r * ldy + c] - ref[r * n + c]) <= tol);
    }
  }
  EXPECT_TRUE_MSG(bad == 0, "bf16->float m=%lld n=%lld k=%lld: %lld wrong", (long long)m, (long long)n,
                  (long long)k, (long long)bad);
}

void TestFp8(DenseGemm& gemm, int64_t m, int64_t n, int64_t k, int64_t ldy, int64_t x_offset, bool exact,
             std::mt19937& rng) {
  std::vector<__nv_fp8_e4m3> xq(m * k), wq(n * k);
  std::vector<float> sx(m), sw(n);
  if (exact) {
    std::vector<float> x(m * k, 0.0f);
    FillSparseIntegers(rng, m, k, k, &x);
    std::uniform_int_distribution<int> value(-8, 8), exponent(-4, 4);
    for (int64_t i = 0; i < m * k; ++i) xq[i] = Fp8Exact(x[i]);
    for (auto& v : wq) v = Fp8Exact(static_cast<float>(value(rng)));
    for (float& s : sx) s = std::ldexp(1.0f, exponent(rng));
    for (float& s : sw) s = std::ldexp(1.0f, exponent(rng));
  } else {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(m * k), w(n * k);
    for (float& v : x) v = normal(rng) * (1.0f + 4.0f * (normal(rng) > 2.0f));
    for (float& v : w) v = normal(rng) * 0.02f;
    QuantizeWeightsToFp8(x.data(), m, k, xq.data(), sx.data());
    QuantizeWeightsToFp8(w.data(), n, k, wq.data(), sw.data());
  }
  std::vector<double> ref(m * n), abs_sum(m * n);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double t = double(Fp8ToFloat(xq[r * k + i])) * Fp8ToFloat(wq[c * k + i]);
        s += t;
        a += std::fabs(t);
      }
      const double scale = double(sx[r]) * sw[c];
      ref[r * n + c] = s * scale;
      abs_sum[r * n + c] = a * scale;
    }
  }
  // x starts x_offset bytes into its buffer: a 16-byte aligned pointer that is not 256-aligned.
  DeviceBuffer<__nv_fp8_e4m3> dx_storage(m * k + x_offset), dw(wq);
  DeviceBuffer<__nv_bfloat16> dy(m * ldy);
  __nv_fp8_e4m3* dx = dx_storage.get() + x_offset;
  ASSERT_CUDA(cudaMemcpy(dx, xq.data(), m * k, cudaMemcpyHostToDevice));
  DeviceBuffer<float> dsx(sx), dsw(sw);
  const auto y = RunTwice(
      dy, [&] { return gemm.Fp8(dx, dsx.get(), dw.get(), dsw.get(), dy.get(), ldy, m, n, k); }, "fp8");
  CheckGemm(exact ? "fp8 exact" : "fp8", y, ldy, ref, abs_sum, m, n, k, exact);
}

void ExpectInvalid(const CudaStatus& status, const char* what) {
  EXPECT_TRUE_MSG(status.code == cudaErrorInvalidValue, "%s: expected cudaErrorInvalidValue, got %s", what,
                  cudaGetErrorString(status.code));
}

void TestArgumentChecks(DenseGemm& gemm) {
  const int failures_before = testing::g_failures;
  DeviceBuffer<uint8_t> buffer(1 << 20);
  auto* x8 = reinterpret_cast<const __nv_fp8_e4m3*>(buffer.get());
  auto* bf = reinterpret_cast<__nv_bfloat16*>(buffer.get());
  const float* scales = reinterpret_cast<const float*>(buffer.get());
  ExpectInvalid(gemm.Fp8(x8, scales, x8, scales, bf, 104, 4, 100, 64), "fp8 n=100");
  ExpectInvalid(gemm.Fp8(x8, scales, x8, scales, bf, 128, 4, 128, 72), "fp8 k=72");
  ExpectInvalid(gemm.Fp8(x8, scales, x8, scales, bf, 132, 4, 128, 64), "fp8 ldy=132");
  ExpectInvalid(gemm.Fp8(x8 + 8, scales, x8, scales, bf, 128, 4, 128, 64), "fp8 x 8-byte aligned");
  ExpectInvalid(gemm.Fp8(x8, scales, x8, scales, bf, 64, 4, 128, 64), "fp8 ldy < n");
  ExpectInvalid(gemm.Bf16(bf, 32, bf, bf, 64, 4, 64, 64), "bf16 ldx < k");
  ExpectInvalid(gemm.Bf16(nullptr, 64, bf, bf, 64, 4, 64, 64), "bf16 null x");
  EXPECT_TRUE_MSG(gemm.Bf16(nullptr, 64, nullptr, nullptr, 64, 0, 64, 64).ok(), "bf16 m=0 is a no-op");
  EXPECT_TRUE_MSG(gemm.Fp8(nullptr, nullptr, nullptr, nullptr, nullptr, 64, 0, 64, 64).ok(), "fp8 m=0 is a no-op");
  ASSERT_CUDA(cudaDeviceSynchronize());
  std::printf("argument checks %s\n", testing::g_failures == failures_before ? "ok" : "FAIL");
}

// Both GEMMs captured into a CUDA graph (global capture mode; the FP8 shape is new, so its
// plan is made during the capture) give the results of direct calls.
void TestGraphCapture(DenseGemm& gemm, cudaStream_t stream, bool fp8, std::mt19937& rng) {
  const int64_t m = 11, n = 512, k = 768;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(m * k), w(n * k), sx(m), sw(n);
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = normal(rng);
  std::vector<__nv_bfloat16> xb(x.size()), wb(w.size());
  ConvertWeightsToBf16(x.data(), x.size(), xb.data());
  ConvertWeightsToBf16(w.data(), w.size(), wb.data());
  std::vector<__nv_fp8_e4m3> xq(x.size()), wq(w.size());
  QuantizeWeightsToFp8(x.data(), m, k, xq.data(), sx.data());
  QuantizeWeightsToFp8(w.data(), n, k, wq.data(), sw.data());
  DeviceBuffer<__nv_bfloat16> dxb(xb), dwb(wb), dy(2 * m * n);
  DeviceBuffer<__nv_fp8_e4m3> dxq(xq), dwq(wq);
  DeviceBuffer<float> dsx(sx), dsw(sw);
  auto run = [&] {
    ASSERT_CUDA_OK(gemm.Bf16(dxb.get(), k, dwb.get(), dy.get(), n, m, n, k));
    if (fp8) ASSERT_CUDA_OK(gemm.Fp8(dxq.get(), dsx.get(), dwq.get(), dsw.get(), dy.get() + m * n, n, m, n, k));
  };
  dy.Fill(0xFF);
  ASSERT_CUDA(cudaDeviceSynchronize());
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  run();
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  const std::vector<__nv_bfloat16> replayed = dy.ToHost();
  dy.Fill(0xFF);
  ASSERT_CUDA(cudaDeviceSynchronize());
  run();
  ASSERT_CUDA(cudaStreamSynchronize(stream));
  const std::vector<__nv_bfloat16> direct = dy.ToHost();
  const size_t bytes = (fp8 ? 2 : 1) * m * n * sizeof(__nv_bfloat16);
  const bool ok = std::memcmp(replayed.data(), direct.data(), bytes) == 0;
  EXPECT_TRUE_MSG(ok, "graph replay differs from direct calls");
  std::printf("CUDA graph capture (bf16%s) %s\n", fp8 ? " + fp8" : "", ok ? "ok" : "FAIL");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

int Main() {
  const uint32_t seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::printf("seed %u\n", seed);
  TestHostConversions(rng);
  if (!testing::HaveCudaDevice()) return testing::FinishTests();
  cudaDeviceProp prop;
  ASSERT_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreate(&stream));
  std::unique_ptr<DenseGemm> gemm;
  ASSERT_CUDA_OK(DenseGemm::Create(stream, &gemm));

  for (int64_t m : {1, 3, 37, 300}) TestBf16(*gemm, m, 256, 1024, 1032, 264, /*exact=*/true, rng);
  struct Shape { int64_t m, n, k, ldx, ldy; };
  const Shape bf16_shapes[] = {{1, 576, 576, 576, 576},     {3, 1536, 576, 584, 1544}, {37, 576, 1536, 1536, 584},
                               {300, 1024, 2048, 2048, 1024}, {5, 77, 33, 40, 80},       {64, 49152, 64, 64, 49152}};
  for (const Shape& s : bf16_shapes) TestBf16(*gemm, s.m, s.n, s.k, s.ldx, s.ldy, false, rng);

  // FP8 with outer-vector scales: Hopper and later (cuBLAS says which on a first call).
  bool fp8 = true;
  {
    DeviceBuffer<uint8_t> probe(1 << 16);
    probe.Fill(0);
    const CudaStatus s = gemm->Fp8(reinterpret_cast<const __nv_fp8_e4m3*>(probe.get()),
                                   reinterpret_cast<const float*>(probe.get()),
                                   reinterpret_cast<const __nv_fp8_e4m3*>(probe.get()),
                                   reinterpret_cast<const float*>(probe.get()),
                                   reinterpret_cast<__nv_bfloat16*>(probe.get()), 64, 16, 64, 64);
    ASSERT_CUDA(cudaDeviceSynchronize());
    if (s.code == cudaErrorNotSupported && prop.major < 9) {
      std::printf("fp8 outer-vector GEMM not supported on sm_%d%d: FP8 cases skipped (%s)\n", prop.major,
                  prop.minor, s.statement);
      fp8 = false;
    } else {
      ASSERT_CUDA_OK(s);
    }
  }
  if (fp8) {
    for (int64_t m : {1, 3, 37, 300}) TestFp8(*gemm, m, 256, 1024, 272, 0, /*exact=*/true, rng);
    const Shape fp8_shapes[] = {{1, 576, 576, 0, 576}, {3, 1536, 576, 0, 1544}, {37, 576, 1536, 0, 576},
                                {300, 1024, 2048, 0, 1032}, {17, 4096, 11008, 0, 4096}};
    for (const Shape& s : fp8_shapes) TestFp8(*gemm, s.m, s.n, s.k, s.ldy, 0, false, rng);
    TestFp8(*gemm, 37, 576, 1536, 576, /*x_offset=*/48, false, rng);
  }
  TestGraphCapture(*gemm, stream, fp8, rng);
  TestArgumentChecks(*gemm);
  gemm.reset();
  ASSERT_CUDA(cudaStreamDestroy(stream));
  return testing::FinishTests();
}

}  // namespace
}  // namespace apex4::cuda

int main() { return apex4::cuda::Main(); }
