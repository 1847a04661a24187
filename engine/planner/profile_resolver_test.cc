#include "engine/planner/profile_resolver.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

const DeviceIdentity kThisDevice{"cpu", "Test CPU", "cpu-00ff", "avx2"};

NodeProfile ProfileFor(const DeviceIdentity& device, double fp32) {
  NodeProfile p;
  p.created_utc = "2026-11-27T00:00:00Z";
  p.device = device;
  p.throughput.fp32_fma_flops = fp32;
  p.throughput.matrix_int8_ops = 4 * fp32;
  p.throughput.memory_bytes_per_s = 1e10;
  return p;
}

class ProfileResolverTest : public ::testing::Test {
 protected:
  std::string Path(const char* name) {
    const char* dir = std::getenv("TEST_TMPDIR");
    return std::string(dir ? dir : "/tmp") + "/" + name;
  }
  // Counts probe calls and returns a profile of this device.
  ProbeFunction CountingProbe() {
    return [this]() -> absl::StatusOr<NodeProfile> {
      ++probes_;
      return ProfileFor(kThisDevice, 5e10);
    };
  }
  int probes_ = 0;
};

TEST_F(ProfileResolverTest, UsesAValidProfileOfThisDevice) {
  const std::string path = Path("mine.json");
  ASSERT_TRUE(WriteNodeProfile(ProfileFor(kThisDevice, 7e10), path).ok());
  auto resolved = ResolveNodeProfile(path, kThisDevice, CountingProbe());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_FALSE(resolved->probed);
  EXPECT_EQ(probes_, 0);
  EXPECT_DOUBLE_EQ(resolved->profile.throughput.fp32_fma_flops, 7e10);
}

TEST_F(ProfileResolverTest, ForeignProfileIsReplacedByProbingAndSaved) {
  const std::string path = Path("foreign.json");
  DeviceIdentity other = kThisDevice;
  other.uuid = "cpu-beef";
  ASSERT_TRUE(WriteNodeProfile(ProfileFor(other, 7e10), path).ok());
  auto resolved = ResolveNodeProfile(path, kThisDevice, CountingProbe());
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_TRUE(resolved->probed);
  EXPECT_EQ(probes_, 1);
  EXPECT_NE(resolved->explanation.find("cpu-beef"), std::string::npos) << resolved->explanation;
  // The fresh profile replaced the foreign one on disk.
  auto on_disk = ReadNodeProfile(path);
  ASSERT_TRUE(on_disk.ok());
  EXPECT_EQ(on_disk->device.uuid, kThisDevice.uuid);
  // The next start reads it without probing.
  ASSERT_TRUE(ResolveNodeProfile(path, kThisDevice, CountingProbe()).ok());
  EXPECT_EQ(probes_, 1);
}

TEST_F(ProfileResolverTest, CorruptOrMissingProfileIsReportedAndReplaced) {
  const std::string corrupt = Path("corrupt.json");
  std::ofstream(corrupt) << "{\"format\": \"apex4.node_profile\", \"version\": 1";
  auto resolved = ResolveNodeProfile(corrupt, kThisDevice, CountingProbe());
  ASSERT_TRUE(resolved.ok());
  EXPECT_TRUE(resolved->probed);
  EXPECT_NE(resolved->explanation.find("not valid JSON"), std::string::npos)
      << resolved->explanation;

  const std::string missing = Path("missing/dir/profile.json");
  resolved = ResolveNodeProfile(missing, kThisDevice, CountingProbe());
  ASSERT_TRUE(resolved.ok());
  EXPECT_NE(resolved->explanation.find("cannot open"), std::string::npos);
  EXPECT_NE(resolved->explanation.find("not saved"), std::string::npos);
}

TEST_F(ProfileResolverTest, ProbeFailureIsTheOnlyError) {
  auto resolved = ResolveNodeProfile("", kThisDevice, []() -> absl::StatusOr<NodeProfile> {
    return absl::UnavailableError("no device");
  });
  ASSERT_FALSE(resolved.ok());
  EXPECT_NE(resolved.status().message().find("no profile path given"), std::string::npos);
  EXPECT_NE(resolved.status().message().find("no device"), std::string::npos);
}

}  // namespace
}  // namespace apex4
