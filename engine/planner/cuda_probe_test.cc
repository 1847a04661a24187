#include "engine/planner/cuda_probe.h"

#include <cuda_runtime.h>

#include "engine/planner/cuda_kernel_timings.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

bool HasCudaDevice() {
  int count = 0;
  const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  return ok;
}

TEST(CudaProbe, KernelNamesFollowTheArchitecture) {
  EXPECT_EQ(CudaW4A4KernelFor(90), kSm90KernelName);
  EXPECT_EQ(CudaW4A4KernelFor(80), kPortableKernelName);
  EXPECT_EQ(CudaW4A4KernelFor(86), kPortableKernelName);
  EXPECT_EQ(CudaW4A4KernelFor(89), kPortableKernelName);
}

TEST(CudaProbe, NegativeDeviceIsInvalid) {
  const auto facts = FindUsableCudaDevice(-1);
  EXPECT_EQ(facts.status().code(), absl::StatusCode::kInvalidArgument) << facts.status();
}

TEST(CudaProbe, NoDeviceIsAFailedPreconditionSayingWhy) {
  if (HasCudaDevice()) GTEST_SKIP() << "a CUDA device is present";
  const auto facts = FindUsableCudaDevice(0);
  ASSERT_EQ(facts.status().code(), absl::StatusCode::kFailedPrecondition) << facts.status();
  EXPECT_NE(facts.status().message().find("no usable CUDA device"), absl::string_view::npos)
      << facts.status();
  // The probe refuses the same way, before measuring anything.
  const auto profile = ProbeCudaNode(0, {{128, 256}}, {1});
  EXPECT_EQ(profile.status().code(), absl::StatusCode::kFailedPrecondition) << profile.status();
}

TEST(CudaProbe, DeviceBeyondTheLastIsRefused) {
  // No machine has 4096 GPUs: with or without a GPU this is a refusal naming the index.
  const auto facts = FindUsableCudaDevice(4096);
  ASSERT_EQ(facts.status().code(), absl::StatusCode::kFailedPrecondition) << facts.status();
}

TEST(CudaProbe, ProbesTheGpuIntoAValidProfile) {
  if (!HasCudaDevice()) GTEST_SKIP() << "no CUDA device";
  const auto facts = FindUsableCudaDevice(0);
  ASSERT_TRUE(facts.ok()) << facts.status();
  const DeviceIdentity identity = CudaIdentity(*facts);
  EXPECT_EQ(identity.backend, "cuda");
  EXPECT_FALSE(identity.name.empty());
  EXPECT_EQ(identity.uuid.rfind("GPU-", 0), 0u) << identity.uuid;
  EXPECT_FALSE(identity.driver.empty());

  const auto profile = ProbeCudaNode(0, {{256, 512}}, {1, 16});
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_TRUE(profile->device == identity);
  EXPECT_GT(profile->rho(), 1.0);  // tensor cores outrun the CUDA cores on every sm_80+ GPU
  auto reparsed = NodeProfileFromJson(NodeProfileToJson(*profile));
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  bool engine_kernel_timed = false;
  for (const KernelTiming& t : profile->timings) {
    EXPECT_EQ(t.n, 256);
    EXPECT_EQ(t.k, 512);
    EXPECT_GT(t.seconds, 0);
    engine_kernel_timed |= t.kernel == CudaW4A4KernelFor(facts->compute_capability);
  }
  EXPECT_TRUE(engine_kernel_timed);
}

}  // namespace
}  // namespace apex4
