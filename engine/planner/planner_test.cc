#include "engine/planner/planner.h"

#include "gtest/gtest.h"

namespace apex4 {
namespace {

// A node with the given matrix and FP32 rates and unlimited bandwidth, so that the cost model's
// compute term decides (ρ = matrix / fp32).
NodeProfile ComputeBoundNode(double matrix_ops, double fp32_flops) {
  NodeProfile p;
  p.device = {"cuda", "test", "GPU-0", "0"};
  p.throughput.matrix_int8_ops = matrix_ops;
  p.throughput.fp32_fma_flops = fp32_flops;
  p.throughput.memory_bytes_per_s = 1e30;
  return p;
}

LayerToPlan Layer(const char* name, double sensitivity) {
  return {name, 128, 1024, true, true, sensitivity};
}

TEST(PredictBucket, CostModelByHand) {
  // m=1, n=128, k=1024 on matrix 1e12, fp32 1e10 (ρ = 100):
  //   matrix 2*128*1024/1e12 = 2.62144e-7 s
  //   per-channel dequant 3*128/1e10 = 3.84e-8 s; group-128 3*128*8/1e10 = 3.072e-7 s
  const NodeProfile p = ComputeBoundNode(1e12, 1e10);
  EXPECT_NEAR(PredictBucket(p, kPerChannel, 1, 128, 1024, "w4a4").predicted_seconds,
              2.62144e-7 + 3.84e-8, 1e-12);
  const BucketChoice g = PredictBucket(p, kGroup128, 1, 128, 1024, "w4a4");
  EXPECT_NEAR(g.predicted_seconds, 2.62144e-7 + 3.072e-7, 1e-12);
  EXPECT_FALSE(g.measured);
  EXPECT_EQ(g.kernel, "w4a4");
}

TEST(PredictBucket, MemoryBoundDecode) {
  NodeProfile p = ComputeBoundNode(1e15, 1e13);
  p.throughput.memory_bytes_per_s = 1e9;
  // m=1, n=k=1024, per-channel: bytes = 1024*1024/2 + 512 + 2*1024 + 4*(1024+1) = 530948.
  EXPECT_NEAR(PredictBucket(p, kPerChannel, 1, 1024, 1024, "x").predicted_seconds, 530948e-9,
              1e-12);
}

TEST(PredictBucket, PrefersTheFastestMeasuredKernelAndScalesFromNearestM) {
  NodeProfile p = ComputeBoundNode(1e12, 1e10);
  p.timings = {{"slow", "g128", 16, 128, 1024, 9e-6},
               {"fast", "g128", 16, 128, 1024, 4e-6},
               {"fast", "g128", 256, 128, 1024, 20e-6},
               {"other_shape", "g128", 16, 256, 1024, 1e-9}};
  const BucketChoice at16 = PredictBucket(p, kGroup128, 16, 128, 1024, "x");
  EXPECT_TRUE(at16.measured);
  EXPECT_EQ(at16.kernel, "fast");
  EXPECT_DOUBLE_EQ(at16.predicted_seconds, 4e-6);
  // m=1 is nearest to 16 and below it: weight-bound, same time.
  EXPECT_DOUBLE_EQ(PredictBucket(p, kGroup128, 1, 128, 1024, "x").predicted_seconds, 4e-6);
  // m=1024 is nearest to 256: four times the work.
  EXPECT_DOUBLE_EQ(PredictBucket(p, kGroup128, 1024, 128, 1024, "x").predicted_seconds, 80e-6);
  // No per-channel timing at this shape: the cost model answers.
  EXPECT_FALSE(PredictBucket(p, kPerChannel, 16, 128, 1024, "x").measured);
}

TEST(PlanLayers, LowRhoTakesGroup128Everywhere) {
  // ρ = 1: group-128's extra 7 groups cost (3*7*128/1e12) ~ 1% over the matrix work.
  auto plan = PlanLayers(ComputeBoundNode(1e12, 1e12), {Layer("a", 1.0), Layer("b", 3.0)});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NEAR(plan->rho, 1.0, 1e-12);
  for (const auto& layer : plan->layers) {
    EXPECT_EQ(layer.granularity, kGroup128) << layer.reason;
    EXPECT_LT(layer.g128_slowdown, 1.02);
    EXPECT_EQ(layer.buckets.size(), PlannerOptions().m_buckets.size());
  }
}

TEST(PlanLayers, HighRhoMixesBySensitivity) {
  // ρ = 100: group-128 costs (2.62144 + 3.072) / (2.62144 + 0.384) = 1.894x.
  auto plan = PlanLayers(ComputeBoundNode(1e12, 1e10),
                         {Layer("robust", 1.1), Layer("sensitive", 2.0)});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_NEAR(plan->layers[0].g128_slowdown, 1.894, 0.001);
  EXPECT_EQ(plan->layers[0].granularity, kPerChannel) << plan->layers[0].reason;
  EXPECT_EQ(plan->layers[1].granularity, kGroup128) << plan->layers[1].reason;
  EXPECT_NE(plan->layers[1].reason.find("per-channel error is 2.00x"), std::string::npos);
}

TEST(PlanLayers, SingleVariantLayersKeepWhatTheyHave) {
  LayerToPlan only_pc{"pc", 128, 1024, true, false, 5.0};
  auto plan = PlanLayers(ComputeBoundNode(1e12, 1e12), {only_pc});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->layers[0].granularity, kPerChannel);
  EXPECT_NE(plan->layers[0].reason.find("only per_channel"), std::string::npos);
}

TEST(PlanLayers, RejectsLayersWithoutVariantsOrShape) {
  EXPECT_FALSE(PlanLayers(ComputeBoundNode(1, 1), {{"x", 128, 1024, false, false, 0}}).ok());
  EXPECT_FALSE(PlanLayers(ComputeBoundNode(1, 1), {{"x", 0, 1024, true, true, 0}}).ok());
  PlannerOptions no_buckets;
  no_buckets.m_buckets.clear();
  EXPECT_FALSE(PlanLayers(ComputeBoundNode(1, 1), {Layer("a", 1)}, no_buckets).ok());
}

}  // namespace
}  // namespace apex4
