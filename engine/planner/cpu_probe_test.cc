#include "engine/planner/cpu_probe.h"

#include "gtest/gtest.h"

namespace apex4 {
namespace {

TEST(CpuProbe, IdentityIsStableAndDescriptive) {
  const DeviceIdentity a = CpuIdentity(), b = CpuIdentity();
  EXPECT_TRUE(a == b);
  EXPECT_EQ(a.backend, "cpu");
  EXPECT_FALSE(a.name.empty());
  EXPECT_EQ(a.uuid.rfind("cpu-", 0), 0u);
}

TEST(CpuProbe, MeasuresPlausibleRates) {
  const DeviceThroughput t = MeasureCpuThroughput(/*threads=*/1, /*seconds_each=*/0.05);
  // One AVX2 core at >= 1 GHz: >= 16 GFLOP/s FP32 FMA peak; be generous for loaded CI machines.
  EXPECT_GT(t.fp32_fma_flops, 2e9);
  EXPECT_LT(t.fp32_fma_flops, 1e12);
  // int8 dot products process 4x the elements per instruction of FP32 FMAs.
  EXPECT_GT(t.matrix_int8_ops, t.fp32_fma_flops);
  EXPECT_GT(t.int_to_float_ops, 1e8);
  EXPECT_GT(t.memory_bytes_per_s, 5e8);
  EXPECT_LT(t.memory_bytes_per_s, 1e12);
}

TEST(CpuProbe, TimesEachSupportedKernelPerGranularityAndBucket) {
  ThreadPool pool(1);
  const auto timings = TimeCpuW4A4Kernels({{256, 640}}, {1, 8}, &pool);
  // AVX2 at least (CI machines have it), both granularities, both buckets.
  ASSERT_GE(timings.size(), 4u);
  for (const KernelTiming& t : timings) {
    EXPECT_EQ(t.n, 256);
    EXPECT_EQ(t.k, 640);
    EXPECT_GT(t.seconds, 0);
    EXPECT_LT(t.seconds, 0.1) << t.kernel;  // 164k multiply-adds, even scalar, is far below this
  }
  EXPECT_EQ(timings[0].kernel.rfind("cpu_", 0), 0u);
}

TEST(CpuProbe, WholeProbeYieldsAValidProfile) {
  const NodeProfile p = ProbeCpuNode({{128, 256}}, {1}, /*threads=*/1);
  auto reparsed = NodeProfileFromJson(NodeProfileToJson(p));
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_GT(p.rho(), 1.0);  // int8 dot products outrun FP32 FMAs on every x86 SIMD unit
  EXPECT_GT(p.probe_seconds, 0.1);
  EXPECT_LT(p.probe_seconds, 30.0);
  EXPECT_FALSE(p.timings.empty());
}

}  // namespace
}  // namespace apex4
