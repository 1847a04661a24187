// Tests of the LLaMA element-wise GPU ops (llama_elementwise.h) against CPU references on fresh
// random data (the seed is printed): RMSNorm against engine/llama_ops.cc RmsNorm (same
// arithmetic: identical up to the order of a double sum, checked to within one bf16 step), the
// FP8 quantizer bit for bit against a host emulation (RmsNorm, then __nv_cvt_float_to_fp8 on the
// host), SiluMul against engine SiluMul (device expf: a few ulp), embedding / residual / gather
// exactly. Both the 4-wide and the element-by-element paths (odd widths and strides), outputs
// poisoned with NaN, padding columns checked untouched, zero rows, argument checks, and a CUDA
// graph capture. Without a CUDA device: "no CUDA device: skipped".
#include "kernels/cuda/ops/llama_elementwise.h"

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "engine/llama_ops.h"
#include "kernels/cuda/testing/gpu_test_util.h"

namespace apex4::cuda {
namespace {

using testing::Bf16Bits;
using testing::Bf16ToFloat;
using testing::DeviceBuffer;

const char* TypeName(ActivationType t) { return t == ActivationType::kBFloat16 ? "bf16" : "f32"; }

uint32_t FloatBits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Random floats, some large (outliers), some exactly representable in bf16.
std::vector<float> RandomFloats(std::mt19937& rng, size_t count, float sigma = 1.0f) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = sigma * normal(rng) * (1.0f + 8.0f * (normal(rng) > 2.5f));
  return v;
}
std::vector<__nv_bfloat16> ToBf16(const std::vector<float>& v) {
  std::vector<__nv_bfloat16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = __float2bfloat16_rn(v[i]);
  return out;
}

void Report(bool ok, const char* line) { std::printf("%-78s %s\n", line, ok ? "ok" : "FAIL"); }

void TestEmbed(std::mt19937& rng, int64_t m, int64_t dim) {
  const int64_t vocab = 1000;
  const std::vector<__nv_bfloat16> table = ToBf16(RandomFloats(rng, vocab * dim));
  std::vector<int32_t> tokens(m);
  std::uniform_int_distribution<int32_t> token(0, vocab - 1);
  for (int32_t& t : tokens) t = token(rng);
  tokens[0] = vocab - 1;
  DeviceBuffer<__nv_bfloat16> dtable(table);
  DeviceBuffer<int32_t> dtokens(tokens);
  DeviceBuffer<float> dhidden(m * dim);
  dhidden.Fill(0xFF);
  ASSERT_CUDA_OK(EmbedTokens(dtable.get(), dtokens.get(), m, dim, dhidden.get(), nullptr));
  const std::vector<float> hidden = dhidden.ToHost();
  int64_t bad = 0;
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      bad += FloatBits(hidden[r * dim + i]) != FloatBits(Bf16ToFloat(table[tokens[r] * dim + i]));
    }
  }
  EXPECT_TRUE_MSG(bad == 0, "EmbedTokens m=%lld dim=%lld: %lld wrong", (long long)m, (long long)dim, (long long)bad);
  char line[160];
  std::snprintf(line, sizeof(line), "EmbedTokens m=%lld dim=%lld: %lld wrong", (long long)m, (long long)dim,
                (long long)bad);
  Report(bad == 0, line);
}

void TestRmsNorm(std::mt19937& rng, int64_t rows, int64_t dim, int64_t ldy) {
  std::vector<float> x = RandomFloats(rng, rows * dim, 3.0f);
  const std::vector<float> weight = RandomFloats(rng, dim);
  if (rows > 2) std::fill(&x[dim], &x[2 * dim], 0.0f);  // a zero row
  const float eps = 1e-5f;
  std::vector<float> ref(rows * dim);
  ::apex4::RmsNorm(x.data(), weight.data(), rows, dim, eps, ref.data());
  DeviceBuffer<float> dx(x), dweight(weight);
  DeviceBuffer<__nv_bfloat16> dy(rows * ldy);
  dy.Fill(0xFF);
  ASSERT_CUDA_OK(RmsNormToBf16(dx.get(), dweight.get(), rows, dim, eps, dy.get(), ldy, nullptr));
  const std::vector<__nv_bfloat16> y = dy.ToHost();
  int64_t differ = 0, far = 0, pad_touched = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < ldy; ++i) {
      const __nv_bfloat16 got = y[r * ldy + i];
      if (i >= dim) {
        pad_touched += Bf16Bits(got) != 0xFFFF;
        continue;
      }
      const __nv_bfloat16 want = __float2bfloat16_rn(ref[r * dim + i]);
      if (Bf16Bits(got) == Bf16Bits(want)) continue;
      ++differ;
      // One bf16 step at most (the float before rounding may differ in its last bit).
      far += !(std::fabs(Bf16ToFloat(got) - ref[r * dim + i]) <= std::ldexp(std::fabs(ref[r * dim + i]), -7));
    }
  }
  // Same arithmetic as RmsNorm: a difference needs the double sum's order to move a rounding.
  const bool ok = far == 0 && pad_touched == 0 && differ <= rows * dim / 1000;
  char line[160];
  std::snprintf(line, sizeof(line), "RmsNormToBf16 rows=%lld dim=%lld ldy=%lld: %lld differ, %lld > 1 step",
                (long long)rows, (long long)dim, (long long)ldy, (long long)differ, (long long)far);
  EXPECT_TRUE_MSG(ok, "%s, %lld padding touched", line, (long long)pad_touched);
  Report(ok, line);
}

void TestQuantizeFp8(std::mt19937& rng, ActivationType type, bool rmsnorm, int64_t rows, int64_t dim, int64_t ldx) {
  std::vector<float> x = RandomFloats(rng, rows * ldx, 2.0f);
  if (rows > 2) std::fill(&x[ldx], &x[ldx + dim], 0.0f);                        // a zero row
  if (rows > 3) {
    for (int64_t i = 0; i < dim; ++i) x[3 * ldx + i] *= 1e-30f;  // tiny values: subnormal fp8
  }
  const std::vector<__nv_bfloat16> xb = ToBf16(x);
  if (type == ActivationType::kBFloat16) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = Bf16ToFloat(xb[i]);
  }
  const std::vector<float> weight = RandomFloats(rng, dim);
  const float eps = 1e-6f;

  // Host emulation: RmsNorm (engine), absmax, scale = absmax / 448 (1 for a zero row), e4m3.
  std::vector<uint8_t> ref(rows * dim);
  std::vector<float> ref_scales(rows), row(dim);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(&x[r * ldx], &x[r * ldx] + dim, row.begin());
    if (rmsnorm) ::apex4::RmsNorm(row.data(), weight.data(), 1, dim, eps, row.data());
    float absmax = 0.0f;
    for (float v : row) absmax = std::max(absmax, std::fabs(v));
    float scale = absmax / 448.0f;
    if (!(scale > 0.0f)) scale = 1.0f;
    ref_scales[r] = scale;
    for (int64_t i = 0; i < dim; ++i) ref[r * dim + i] = __nv_cvt_float_to_fp8(row[i] / scale, __NV_SATFINITE, __NV_E4M3);
  }

  DeviceBuffer<float> dxf(x), dweight(weight), dscales(rows);
  DeviceBuffer<__nv_bfloat16> dxb(xb);
  DeviceBuffer<__nv_fp8_e4m3> dy(rows * dim);
  dy.Fill(0xFF);  // e4m3 NaN
  dscales.Fill(0xFF);
  const void* px = type == ActivationType::kBFloat16 ? static_cast<const void*>(dxb.get()) : dxf.get();
  ASSERT_CUDA_OK(QuantizeFp8PerToken(px, type, ldx, rows, dim, rmsnorm ? dweight.get() : nullptr, eps, dy.get(),
                                     dscales.get(), nullptr));
  const std::vector<__nv_fp8_e4m3> y = dy.ToHost();
  const std::vector<float> scales = dscales.ToHost();
  int64_t bad = 0, bad_scales = 0;
  for (int64_t i = 0; i < rows * dim; ++i) bad += y[i].__x != ref[i];
  for (int64_t r = 0; r < rows; ++r) bad_scales += FloatBits(scales[r]) != FloatBits(ref_scales[r]);
  const bool ok = bad == 0 && bad_scales == 0;
  char line[160];
  std::snprintf(line, sizeof(line), "QuantizeFp8PerToken %s norm=%d rows=%lld dim=%lld ldx=%lld: %lld+%lld wrong",
                TypeName(type), rmsnorm, (long long)rows, (long long)dim, (long long)ldx, (long long)bad,
                (long long)bad_scales);
  EXPECT_TRUE_MSG(ok, "%s (elements + scales)", line);
  Report(ok, line);
}

void TestAddResidual(std::mt19937& rng, int64_t rows, int64_t dim, int64_t ldy) {
  const std::vector<float> hidden = RandomFloats(rng, rows * dim);
  const std::vector<__nv_bfloat16> y = ToBf16(RandomFloats(rng, rows * ldy));
  DeviceBuffer<float> dhidden(hidden);
  DeviceBuffer<__nv_bfloat16> dy(y);
  ASSERT_CUDA_OK(AddResidual(dhidden.get(), dy.get(), ldy, rows, dim, nullptr));
  const std::vector<float> got = dhidden.ToHost();
  int64_t bad = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      bad += FloatBits(got[r * dim + i]) != FloatBits(hidden[r * dim + i] + Bf16ToFloat(y[r * ldy + i]));
    }
  }
  char line[160];
  std::snprintf(line, sizeof(line), "AddResidual rows=%lld dim=%lld ldy=%lld: %lld wrong", (long long)rows,
                (long long)dim, (long long)ldy, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s", line);
  Report(bad == 0, line);
}

void TestSiluMul(std::mt19937& rng, ActivationType out_type, int64_t rows, int64_t inter, int64_t ld) {
  std::vector<float> gate_up = RandomFloats(rng, rows * ld, 3.0f);
  const float extremes[] = {0.0f, -0.0f, 100.0f, -100.0f, 20.0f, -20.0f, 1e-3f, -88.0f};
  for (int i = 0; i < 8 && i < inter; ++i) gate_up[i] = extremes[i];
  const std::vector<__nv_bfloat16> gu = ToBf16(gate_up);
  std::vector<float> gate(rows * inter), up(rows * inter);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      gate[r * inter + i] = Bf16ToFloat(gu[r * ld + i]);
      up[r * inter + i] = Bf16ToFloat(gu[r * ld + inter + i]);
    }
  }
  ::apex4::SiluMul(gate.data(), up.data(), rows * inter);  // engine/llama_ops.cc: gate ← silu(gate) · up
  DeviceBuffer<__nv_bfloat16> dgu(gu);
  const bool bf16 = out_type == ActivationType::kBFloat16;
  DeviceBuffer<float> dout_f(rows * inter);
  DeviceBuffer<__nv_bfloat16> dout_b(rows * inter);
  dout_f.Fill(0xFF);
  dout_b.Fill(0xFF);
  void* out = bf16 ? static_cast<void*>(dout_b.get()) : dout_f.get();
  ASSERT_CUDA_OK(SiluMul(dgu.get(), ld, rows, inter, out_type, out, nullptr));
  const std::vector<float> got_f = dout_f.ToHost();
  const std::vector<__nv_bfloat16> got_b = dout_b.ToHost();
  int64_t bad = 0;
  double worst = 0;
  for (int64_t i = 0; i < rows * inter; ++i) {
    const double want = gate[i];
    const double got = bf16 ? Bf16ToFloat(got_b[i]) : got_f[i];
    // float: expf's 2 ulp through a division and a product; bf16: plus one rounding step.
    const double tol = bf16 ? std::ldexp(std::fabs(want), -8) : 8e-7 * std::fabs(want);
    const double d = std::fabs(got - want);
    bad += !(d <= tol + 1e-37);
    if (want != 0) worst = std::max(worst, d / std::fabs(want));
  }
  char line[160];
  std::snprintf(line, sizeof(line), "SiluMul %s rows=%lld inter=%lld ld=%lld: %lld wrong, worst rel %.1e",
                TypeName(out_type), (long long)rows, (long long)inter, (long long)ld, (long long)bad, worst);
  EXPECT_TRUE_MSG(bad == 0, "%s", line);
  Report(bad == 0, line);
}

// Fused residual add: x (f32, row stride ldx) and a bf16 residual (row stride ld_residual), the
// columns past dim NaN in both. The unfused x is AddResidual's result where x is contiguous (a host
// float add otherwise, which AddResidual does not take); both are checked equal.
struct ResidualCase {
  std::vector<float> x, updated;
  std::vector<__nv_bfloat16> residual;
};
ResidualCase MakeResidualCase(std::mt19937& rng, int64_t rows, int64_t dim, int64_t ldx, int64_t ld_residual) {
  ResidualCase c;
  c.x.assign(rows * ldx, std::nanf(""));
  c.residual.assign(rows * ld_residual, __float2bfloat16_rn(std::nanf("")));
  const std::vector<float> xs = RandomFloats(rng, rows * dim, 2.0f), rs = RandomFloats(rng, rows * dim);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      c.x[r * ldx + i] = xs[r * dim + i];
      c.residual[r * ld_residual + i] = __float2bfloat16_rn(rs[r * dim + i]);
      if (r == 2) c.x[r * ldx + i] = -Bf16ToFloat(c.residual[r * ld_residual + i]);  // a zero row
    }
  }
  c.updated = c.x;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) c.updated[r * ldx + i] += Bf16ToFloat(c.residual[r * ld_residual + i]);
  }
  return c;
}

// x after the unfused AddResidual (device, contiguous x) or the host add; counts a mismatch
// between the two in *bad.
void UnfusedResidual(const ResidualCase& c, DeviceBuffer<float>& dx, const DeviceBuffer<__nv_bfloat16>& dresidual,
                     int64_t rows, int64_t dim, int64_t ldx, int64_t ld_residual, int64_t* bad) {
  if (ldx == dim) {
    ASSERT_CUDA_OK(AddResidual(dx.get(), dresidual.get(), ld_residual, rows, dim, nullptr));
    const std::vector<float> got = dx.ToHost();
    *bad += std::memcmp(got.data(), c.updated.data(), got.size() * sizeof(float)) != 0;
  }
}

bool SameBytes(const void* a, const void* b, size_t n) { return std::memcmp(a, b, n) == 0; }

void TestRmsNormFusedResidual(std::mt19937& rng, int64_t rows, int64_t dim, int64_t ldy, int64_t ld_residual) {
  const ResidualCase c = MakeResidualCase(rng, rows, dim, dim, ld_residual);
  const std::vector<float> weight = RandomFloats(rng, dim);
  DeviceBuffer<float> dx(c.x), dunfused(c.x), dweight(weight);
  DeviceBuffer<__nv_bfloat16> dresidual(c.residual), dy(rows * ldy), dy_unfused(rows * ldy);
  int64_t bad = 0;
  UnfusedResidual(c, dunfused, dresidual, rows, dim, dim, ld_residual, &bad);
  dy.Fill(0xFF);
  dy_unfused.Fill(0xFF);
  ASSERT_CUDA_OK(RmsNormToBf16(dunfused.get(), dweight.get(), rows, dim, 1e-5f, dy_unfused.get(), ldy, nullptr));
  ASSERT_CUDA_OK(RmsNormToBf16(dx.get(), dresidual.get(), ld_residual, dweight.get(), rows, dim, 1e-5f, dy.get(), ldy,
                               nullptr));
  const std::vector<__nv_bfloat16> y = dy.ToHost(), want = dy_unfused.ToHost();
  const std::vector<float> x = dx.ToHost();
  bad += !SameBytes(y.data(), want.data(), y.size() * 2);
  bad += !SameBytes(x.data(), c.updated.data(), x.size() * 4);
  char line[160];
  std::snprintf(line, sizeof(line), "RmsNormToBf16 +residual rows=%lld dim=%lld ldy=%lld ldr=%lld: %lld differ",
                (long long)rows, (long long)dim, (long long)ldy, (long long)ld_residual, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s (y, x or AddResidual)", line);
  Report(bad == 0, line);
}

// Runs the FP8 quantizer; returns the e4m3 bytes then the scale bytes (outputs poisoned first).
std::vector<uint8_t> RunFp8(Fp8QuantizeArgs args) {
  DeviceBuffer<__nv_fp8_e4m3> dy(args.rows * args.dim);
  DeviceBuffer<float> dscales(args.rows);
  dy.Fill(0xFF);
  dscales.Fill(0xFF);
  args.y = dy.get();
  args.scales = dscales.get();
  ASSERT_CUDA_OK(QuantizeFp8PerToken(args, nullptr));
  const std::vector<__nv_fp8_e4m3> y = dy.ToHost();
  const std::vector<float> scales = dscales.ToHost();
  std::vector<uint8_t> out(y.size() + scales.size() * 4);
  std::memcpy(out.data(), y.data(), y.size());
  std::memcpy(out.data() + y.size(), scales.data(), scales.size() * 4);
  return out;
}

void TestQuantizeFp8FusedResidual(std::mt19937& rng, bool rmsnorm, int64_t rows, int64_t dim, int64_t ldx,
                                  int64_t ld_residual) {
  const ResidualCase c = MakeResidualCase(rng, rows, dim, ldx, ld_residual);
  const std::vector<float> weight = RandomFloats(rng, dim);
  DeviceBuffer<float> dx(c.x), dunfused(ldx == dim ? c.x : c.updated), dweight(weight);
  DeviceBuffer<__nv_bfloat16> dresidual(c.residual);
  int64_t bad = 0;
  UnfusedResidual(c, dunfused, dresidual, rows, dim, ldx, ld_residual, &bad);
  Fp8QuantizeArgs args;
  args.x = dunfused.get();
  args.type = ActivationType::kFloat32;
  args.ldx = ldx;
  args.rows = rows;
  args.dim = dim;
  args.rmsnorm_weight = rmsnorm ? dweight.get() : nullptr;
  const std::vector<uint8_t> want = RunFp8(args);
  args.x = dx.get();
  args.residual = dresidual.get();
  args.ld_residual = ld_residual;
  const std::vector<uint8_t> got = RunFp8(args);
  const std::vector<float> x = dx.ToHost();
  bad += got != want;
  bad += !SameBytes(x.data(), c.updated.data(), x.size() * 4);
  char line[160];
  std::snprintf(line, sizeof(line), "QuantizeFp8PerToken +residual norm=%d rows=%lld dim=%lld ldx=%lld ldr=%lld: %lld differ",
                rmsnorm, (long long)rows, (long long)dim, (long long)ldx, (long long)ld_residual, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s (y/scales, x or AddResidual)", line);
  Report(bad == 0, line);
}

void TestQuantizeFp8FusedSwiGlu(std::mt19937& rng, int64_t rows, int64_t inter, int64_t ld) {
  std::vector<float> gate_up = RandomFloats(rng, rows * ld, 3.0f);
  const float extremes[] = {0.0f, -0.0f, 100.0f, -100.0f, 20.0f, -20.0f, 1e-3f, -88.0f};
  for (int i = 0; i < 8 && i < inter; ++i) gate_up[i] = extremes[i];
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 2 * inter; i < ld; ++i) gate_up[r * ld + i] = std::nanf("");
    if (r == 1) std::fill(&gate_up[r * ld + inter], &gate_up[r * ld + 2 * inter], 0.0f);  // a zero row
  }
  DeviceBuffer<__nv_bfloat16> dgu(ToBf16(gate_up));
  DeviceBuffer<float> dact(rows * inter);
  dact.Fill(0xFF);
  ASSERT_CUDA_OK(SiluMul(dgu.get(), ld, rows, inter, ActivationType::kFloat32, dact.get(), nullptr));
  Fp8QuantizeArgs args;
  args.x = dact.get();
  args.type = ActivationType::kFloat32;
  args.ldx = inter;
  args.rows = rows;
  args.dim = inter;
  const std::vector<uint8_t> want = RunFp8(args);
  args.x = dgu.get();
  args.type = ActivationType::kBFloat16;
  args.ldx = ld;
  args.swiglu = true;
  const std::vector<uint8_t> got = RunFp8(args);
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
  char line[160];
  std::snprintf(line, sizeof(line), "QuantizeFp8PerToken +SwiGLU rows=%lld inter=%lld ld=%lld: %lld bytes differ",
                (long long)rows, (long long)inter, (long long)ld, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s", line);
  Report(bad == 0, line);
}

// FP8 rows without RMSNorm quantize identically whatever the batch (few rows take up to 1024
// threads, many 256): the first `few` rows of a 100-row batch against the same rows alone.
void TestQuantizeFp8BatchInvariant(std::mt19937& rng, bool swiglu, int64_t dim, int64_t few) {
  const int64_t rows = 100, ld = swiglu ? 2 * dim : dim;
  DeviceBuffer<__nv_bfloat16> dx(ToBf16(RandomFloats(rng, rows * ld, 2.0f)));
  Fp8QuantizeArgs args;
  args.x = dx.get();
  args.type = ActivationType::kBFloat16;
  args.ldx = ld;
  args.dim = dim;
  args.swiglu = swiglu;
  args.rows = rows;
  const std::vector<uint8_t> all = RunFp8(args);
  args.rows = few;
  const std::vector<uint8_t> part = RunFp8(args);
  const bool ok = SameBytes(part.data(), all.data(), few * dim) &&
                  SameBytes(part.data() + few * dim, all.data() + rows * dim, few * 4);
  char line[160];
  std::snprintf(line, sizeof(line), "QuantizeFp8PerToken batch invariance swiglu=%d dim=%lld rows=%lld", swiglu,
                (long long)dim, (long long)few);
  EXPECT_TRUE_MSG(ok, "%s", line);
  Report(ok, line);
}

void TestGather(std::mt19937& rng, int64_t total, int64_t dim, int64_t count) {
  const std::vector<float> hidden = RandomFloats(rng, total * dim);
  std::vector<int32_t> rows(count);
  std::uniform_int_distribution<int32_t> row(0, total - 1);
  for (int32_t& r : rows) r = row(rng);
  rows.back() = total - 1;
  DeviceBuffer<float> dhidden(hidden), dout(count * dim);
  DeviceBuffer<int32_t> drows(rows);
  dout.Fill(0xFF);
  ASSERT_CUDA_OK(GatherRows(dhidden.get(), dim, drows.get(), count, dout.get(), nullptr));
  const std::vector<float> out = dout.ToHost();
  int64_t bad = 0;
  for (int64_t i = 0; i < count; ++i) {
    bad += std::memcmp(&out[i * dim], &hidden[rows[i] * dim], dim * sizeof(float)) != 0;
  }
  char line[160];
  std::snprintf(line, sizeof(line), "GatherRows count=%lld dim=%lld: %lld rows wrong", (long long)count,
                (long long)dim, (long long)bad);
  EXPECT_TRUE_MSG(bad == 0, "%s", line);
  Report(bad == 0, line);
}

void ExpectInvalid(const CudaStatus& status, const char* what) {
  EXPECT_TRUE_MSG(status.code == cudaErrorInvalidValue, "%s: expected cudaErrorInvalidValue, got %s", what,
                  cudaGetErrorString(status.code));
}

void TestArgumentChecks() {
  DeviceBuffer<float> buffer(1 << 16);
  float* f = buffer.get();
  auto* b = reinterpret_cast<__nv_bfloat16*>(f);
  auto* q = reinterpret_cast<__nv_fp8_e4m3*>(f);
  const auto* t = reinterpret_cast<const int32_t*>(f);
  ExpectInvalid(RmsNormToBf16(f, f, 4, 64, 1e-6f, b, 32, nullptr), "RmsNormToBf16 ldy < dim");
  ExpectInvalid(RmsNormToBf16(f, nullptr, 4, 64, 1e-6f, b, 64, nullptr), "RmsNormToBf16 null weight");
  ExpectInvalid(QuantizeFp8PerToken(f, ActivationType::kFloat32, 63, 4, 64, nullptr, 1e-6f, q, f, nullptr),
                "QuantizeFp8PerToken ldx < dim");
  ExpectInvalid(QuantizeFp8PerToken(f, static_cast<ActivationType>(7), 64, 4, 64, nullptr, 1e-6f, q, f, nullptr),
                "QuantizeFp8PerToken bad type");
  ExpectInvalid(AddResidual(f, b, 16, 4, 64, nullptr), "AddResidual ldy < dim");
  ExpectInvalid(SiluMul(b, 127, 4, 64, ActivationType::kFloat32, f, nullptr), "SiluMul ld < 2·inter");
  ExpectInvalid(SiluMul(b, 128, 4, 64, static_cast<ActivationType>(3), f, nullptr), "SiluMul bad type");
  ExpectInvalid(EmbedTokens(b, t, 4, 0, f, nullptr), "EmbedTokens dim 0");
  ExpectInvalid(GatherRows(f, 64, nullptr, 4, f, nullptr), "GatherRows null rows");
  ExpectInvalid(EmbedTokens(b, t, -1, 64, f, nullptr), "EmbedTokens m < 0");
  ExpectInvalid(RmsNormToBf16(f, b, 32, f, 4, 64, 1e-6f, b, 64, nullptr), "RmsNormToBf16 +residual ldr < dim");
  ExpectInvalid(RmsNormToBf16(f, nullptr, 64, f, 4, 64, 1e-6f, b, 64, nullptr), "RmsNormToBf16 +residual null");
  Fp8QuantizeArgs fp8;
  fp8.x = f;
  fp8.ldx = 64;
  fp8.rows = 4;
  fp8.dim = 64;
  fp8.y = q;
  fp8.scales = f;
  Fp8QuantizeArgs a = fp8;
  a.residual = b;
  a.type = ActivationType::kBFloat16;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken residual on bf16");
  a.type = ActivationType::kFloat32;
  a.ld_residual = 32;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken ld_residual < dim");
  a = fp8;
  a.swiglu = true;
  a.type = ActivationType::kBFloat16;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken SwiGLU ldx < 2·dim");
  a.ldx = 128;
  a.type = ActivationType::kFloat32;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken SwiGLU on f32");
  a.type = ActivationType::kBFloat16;
  a.rmsnorm_weight = f;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken SwiGLU with RMSNorm");
  a.rmsnorm_weight = nullptr;
  a.residual = b;
  ExpectInvalid(QuantizeFp8PerToken(a, nullptr), "QuantizeFp8PerToken SwiGLU with residual");
  // Zero rows: no-ops, even with null pointers.
  bool ok = EmbedTokens(nullptr, nullptr, 0, 64, nullptr, nullptr).ok() &&
            RmsNormToBf16(nullptr, nullptr, 0, 64, 1e-6f, nullptr, 64, nullptr).ok() &&
            QuantizeFp8PerToken(nullptr, ActivationType::kBFloat16, 64, 0, 64, nullptr, 1e-6f, nullptr, nullptr,
                                nullptr).ok() &&
            AddResidual(nullptr, nullptr, 64, 0, 64, nullptr).ok() &&
            SiluMul(nullptr, 128, 0, 64, ActivationType::kFloat32, nullptr, nullptr).ok() &&
            GatherRows(nullptr, 64, nullptr, 0, nullptr, nullptr).ok() &&
            RmsNormToBf16(nullptr, nullptr, 64, nullptr, 0, 64, 1e-6f, nullptr, 64, nullptr).ok();
  Fp8QuantizeArgs none;
  none.ldx = 128;
  none.dim = 64;
  none.swiglu = true;
  none.type = ActivationType::kBFloat16;
  ok = ok && QuantizeFp8PerToken(none, nullptr).ok();
  EXPECT_TRUE_MSG(ok, "zero rows must be a no-op");
  ASSERT_CUDA(cudaDeviceSynchronize());
  Report(ok, "argument checks");
}

// A decode step's ops captured into a CUDA graph give the results of direct launches.
void TestGraphCapture(std::mt19937& rng) {
  const int64_t rows = 7, dim = 576, inter = 1536, vocab = 100;
  const std::vector<__nv_bfloat16> table = ToBf16(RandomFloats(rng, vocab * dim));
  const std::vector<__nv_bfloat16> y = ToBf16(RandomFloats(rng, rows * 2 * inter));
  const std::vector<float> weight = RandomFloats(rng, dim);
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2}, last = {6, 2};
  DeviceBuffer<__nv_bfloat16> dtable(table), dy(y), dnormed(rows * dim), dact(rows * inter);
  DeviceBuffer<float> dweight(weight), dhidden(rows * dim), dscales(rows), dlast(2 * dim);
  DeviceBuffer<int32_t> dtokens(tokens), dlast_rows(last);
  DeviceBuffer<__nv_fp8_e4m3> dq(rows * dim);
  cudaStream_t stream;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto step = [&] {
    ASSERT_CUDA_OK(EmbedTokens(dtable.get(), dtokens.get(), rows, dim, dhidden.get(), stream));
    ASSERT_CUDA_OK(RmsNormToBf16(dhidden.get(), dweight.get(), rows, dim, 1e-5f, dnormed.get(), dim, stream));
    ASSERT_CUDA_OK(QuantizeFp8PerToken(dhidden.get(), ActivationType::kFloat32, dim, rows, dim, dweight.get(), 1e-5f,
                                       dq.get(), dscales.get(), stream));
    ASSERT_CUDA_OK(SiluMul(dy.get(), 2 * inter, rows, inter, ActivationType::kBFloat16, dact.get(), stream));
    ASSERT_CUDA_OK(AddResidual(dhidden.get(), dact.get(), inter, rows, dim, stream));
    ASSERT_CUDA_OK(GatherRows(dhidden.get(), dim, dlast_rows.get(), 2, dlast.get(), stream));
    // The fused variants: residual into RMSNorm (x written back), SwiGLU into FP8.
    ASSERT_CUDA_OK(RmsNormToBf16(dhidden.get(), dy.get(), 2 * inter, dweight.get(), rows, dim, 1e-5f, dnormed.get(),
                                 dim, stream));
    Fp8QuantizeArgs fp8;
    fp8.x = dy.get();
    fp8.type = ActivationType::kBFloat16;
    fp8.ldx = 2 * inter;
    fp8.rows = rows;
    fp8.dim = dim;
    fp8.swiglu = true;
    fp8.y = dq.get();
    fp8.scales = dscales.get();
    ASSERT_CUDA_OK(QuantizeFp8PerToken(fp8, stream));
  };
  auto snapshot = [&] {
    ASSERT_CUDA(cudaStreamSynchronize(stream));
    std::vector<uint8_t> bytes;
    auto append = [&](const void* p, size_t n) {
      std::vector<uint8_t> part(n);
      ASSERT_CUDA(cudaMemcpy(part.data(), p, n, cudaMemcpyDeviceToHost));
      bytes.insert(bytes.end(), part.begin(), part.end());
    };
    append(dhidden.get(), rows * dim * 4);
    append(dnormed.get(), rows * dim * 2);
    append(dq.get(), rows * dim);
    append(dscales.get(), rows * 4);
    append(dact.get(), rows * inter * 2);
    append(dlast.get(), 2 * dim * 4);
    return bytes;
  };
  step();
  const std::vector<uint8_t> direct = snapshot();
  for (const DeviceBuffer<float>* b : {&dhidden, &dscales, &dlast}) b->Fill(0xFF);
  dnormed.Fill(0xFF);
  dact.Fill(0xFF);
  dq.Fill(0xFF);
  ASSERT_CUDA(cudaDeviceSynchronize());
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  step();
  ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  ASSERT_CUDA(cudaGraphLaunch(exec, stream));
  const bool ok = snapshot() == direct;
  EXPECT_TRUE_MSG(ok, "graph replay differs from direct launches");
  Report(ok, "CUDA graph capture of a decode step's ops");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

int Main() {
  if (!testing::HaveCudaDevice()) return 0;
  std::mt19937 rng = testing::DeviceAndSeededRng();

  // 4-wide paths (widths, strides multiple of 4) and element-by-element ones (odd sizes).
  for (int64_t m : {1, 37}) {
    TestEmbed(rng, m, 576);
    TestEmbed(rng, m, 77);
  }
  TestRmsNorm(rng, 1, 576, 576);
  TestRmsNorm(rng, 37, 576, 584);
  TestRmsNorm(rng, 300, 2048, 2048);
  TestRmsNorm(rng, 3, 8192, 8192);
  TestRmsNorm(rng, 5, 77, 77);
  TestRmsNorm(rng, 9, 4099, 4101);
  for (ActivationType type : {ActivationType::kFloat32, ActivationType::kBFloat16}) {
    for (bool norm : {false, true}) {
      TestQuantizeFp8(rng, type, norm, 1, 576, 576);
      TestQuantizeFp8(rng, type, norm, 37, 1536, 1544);
      TestQuantizeFp8(rng, type, norm, 300, 576, 576);
      TestQuantizeFp8(rng, type, norm, 5, 8192, 8192);
      TestQuantizeFp8(rng, type, norm, 9, 77, 81);
      TestQuantizeFp8(rng, type, norm, 4, 1000, 1003);
    }
  }
  TestAddResidual(rng, 1, 576, 576);
  TestAddResidual(rng, 37, 576, 1536);
  TestAddResidual(rng, 9, 77, 79);
  for (ActivationType type : {ActivationType::kFloat32, ActivationType::kBFloat16}) {
    TestSiluMul(rng, type, 1, 1536, 3072);
    TestSiluMul(rng, type, 37, 1536, 3080);
    TestSiluMul(rng, type, 300, 256, 512);
    TestSiluMul(rng, type, 5, 77, 155);
  }
  // Fused variants against the unfused sequences, bit for bit: 4-wide and per-element paths.
  TestRmsNormFusedResidual(rng, 1, 4096, 4096, 4096);
  TestRmsNormFusedResidual(rng, 37, 576, 584, 1536);
  TestRmsNormFusedResidual(rng, 300, 2048, 2048, 2048);
  TestRmsNormFusedResidual(rng, 9, 77, 79, 81);
  TestRmsNormFusedResidual(rng, 5, 4099, 4101, 4099);
  for (bool norm : {false, true}) {
    TestQuantizeFp8FusedResidual(rng, norm, 1, 4096, 4096, 4096);
    TestQuantizeFp8FusedResidual(rng, norm, 37, 576, 576, 1536);
    TestQuantizeFp8FusedResidual(rng, norm, 9, 576, 584, 576);
    TestQuantizeFp8FusedResidual(rng, norm, 300, 2048, 2048, 2048);
    TestQuantizeFp8FusedResidual(rng, norm, 7, 77, 77, 79);
    TestQuantizeFp8FusedResidual(rng, norm, 5, 1000, 1003, 1001);
  }
  TestQuantizeFp8FusedSwiGlu(rng, 1, 14336, 28672);
  TestQuantizeFp8FusedSwiGlu(rng, 37, 1536, 3080);
  TestQuantizeFp8FusedSwiGlu(rng, 300, 256, 512);
  TestQuantizeFp8FusedSwiGlu(rng, 5, 77, 155);
  TestQuantizeFp8FusedSwiGlu(rng, 3, 1000, 2002);
  TestQuantizeFp8BatchInvariant(rng, true, 14336, 1);
  TestQuantizeFp8BatchInvariant(rng, false, 4096, 7);
  TestQuantizeFp8BatchInvariant(rng, false, 1003, 64);
  TestGather(rng, 37, 576, 5);
  TestGather(rng, 300, 77, 300);
  TestArgumentChecks();
  TestGraphCapture(rng);
  return testing::FinishTests();
}

}  // namespace
}  // namespace apex4::cuda

int main() { return apex4::cuda::Main(); }
