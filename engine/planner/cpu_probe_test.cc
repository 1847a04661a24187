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

}  // namespace
}  // namespace apex4
