#include "engine/planner/node_planning.h"

#include <cuda_runtime.h>

#include <filesystem>
#include <memory>
#include <string>

#include "engine/cpu_engine.h"
#include "engine/planner/cuda_probe.h"
#include "engine/test_files.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

// A real profile measured on an H200 (tools/probe/results), foreign to this machine's CPU.
constexpr char kH200Profile[] = "tools/probe/results/2026-11-27_h200_profile.json";

bool HasCudaDevice() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  return ok;
}

TEST(PlanningDevice, CpuIsThisCpu) {
  const auto device = PlanningDeviceFor("cpu", /*cpu_threads=*/1);
  ASSERT_TRUE(device.ok()) << device.status();
  EXPECT_TRUE(device->identity == CpuIdentity());
  EXPECT_EQ(device->kernel, "cpu_w4a4");
  EXPECT_EQ(device->m_buckets.front(), 1);
}

TEST(PlanningDevice, MalformedAndUnknownBackendsAreRefused) {
  for (const char* backend : {"cuda:", "cuda:x", "cuda:-1", "cuda:0x"}) {
    EXPECT_EQ(PlanningDeviceFor(backend, 1).status().code(), absl::StatusCode::kInvalidArgument)
        << backend;
  }
  const auto tpu = PlanningDeviceFor("tpu:0", 1);
  EXPECT_EQ(tpu.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(tpu.status().message().find("tpu:0"), absl::string_view::npos) << tpu.status();
}

TEST(PlanningDevice, CudaWithoutAGpuSaysSo) {
  if (HasCudaDevice()) GTEST_SKIP() << "a CUDA device is present";
  const auto device = PlanningDeviceFor("cuda:0", 1);
  ASSERT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition) << device.status();
  EXPECT_NE(device.status().message().find("no usable CUDA device"), absl::string_view::npos)
      << device.status();
}

TEST(PlanningDevice, CudaIsTheGpuWithGpuBuckets) {
  if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  const auto device = PlanningDeviceFor("cuda:0", 1);
  ASSERT_TRUE(device.ok()) << device.status();
  const auto facts = FindUsableCudaDevice(0);
  ASSERT_TRUE(facts.ok()) << facts.status();
  EXPECT_TRUE(device->identity == CudaIdentity(*facts));
  EXPECT_EQ(device->m_buckets, CudaMBuckets());
  EXPECT_EQ(device->kernel, CudaW4A4KernelFor(facts->compute_capability));
}

class NodePlanningTest : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions options;
    options.model_path = DefaultModelPath();
    options.threads = 1;
    options.kv_cache_mb = 16;
    auto engine = LoadCpuEngine(options);
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
    const char* tmp = std::getenv("TEST_TMPDIR");
    path_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/node_planning_test_profile.json";
    std::filesystem::remove(path_);
  }

  std::unique_ptr<InferenceEngine> engine_;
  std::string path_;
};

TEST_F(NodePlanningTest, ForeignGpuProfileIsReprobedOnTheCpuThenReused) {
  std::filesystem::copy_file(kH200Profile, path_);
  NodePlanningOptions options;
  options.profile_path = path_;
  options.threads = 1;
  const auto first = PlanAndApply(*engine_, options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->resolved.probed);
  EXPECT_NE(first->resolved.explanation.find("was measured on cuda 'NVIDIA H200'"),
            std::string::npos)
      << first->resolved.explanation;
  EXPECT_TRUE(first->resolved.profile.device == CpuIdentity());

  // The probe's profile replaced the H200's, so the next start reads it.
  const auto second = PlanAndApply(*engine_, options);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->resolved.probed) << second->resolved.explanation;
  EXPECT_DOUBLE_EQ(second->plan.rho, first->plan.rho);
}

}  // namespace
}  // namespace apex4
