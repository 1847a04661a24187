#include "engine/planner/node_profile.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace apex4 {
namespace {

NodeProfile SampleProfile() {
  NodeProfile p;
  p.created_utc = "2026-11-27T07:00:00Z";
  p.device = {"cuda", "NVIDIA H200", "GPU-1234", "580.159.04"};
  p.clock_mhz = 1980;
  p.throughput.matrix_int4_ops = 52.6e12;
  p.throughput.matrix_int8_ops = 1945e12;
  p.throughput.fp32_fma_flops = 64e12;
  p.throughput.memory_bytes_per_s = 4.0e12;
  p.probe_seconds = 12.5;
  p.timings.push_back({"sm90_w4a4_gemm", "g128", 16, 4096, 4096, 12e-6});
  return p;
}

TEST(NodeProfile, RhoIsBestIntegerMatrixRateOverFp32) {
  // Hopper: INT4 tensor cores are emulated, so the INT8 rate counts: 1945 / 64.
  EXPECT_NEAR(SampleProfile().rho(), 30.39, 0.01);
}

TEST(NodeProfile, JsonRoundTrip) {
  const NodeProfile p = SampleProfile();
  auto back = NodeProfileFromJson(NodeProfileToJson(p));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->device == p.device);
  EXPECT_EQ(back->clock_mhz, 1980);
  EXPECT_DOUBLE_EQ(back->throughput.matrix_int8_ops, 1945e12);
  ASSERT_EQ(back->timings.size(), 1u);
  EXPECT_EQ(back->timings[0].kernel, "sm90_w4a4_gemm");
  EXPECT_EQ(back->timings[0].n, 4096);
  EXPECT_DOUBLE_EQ(back->timings[0].seconds, 12e-6);
}

// Each corruption must be refused with a message naming the field at fault.
TEST(NodeProfile, RefusesCorruptProfilesNamingTheField) {
  const nlohmann::json good = nlohmann::json::parse(NodeProfileToJson(SampleProfile()));
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> corrupt;
    const char* expected_in_message;
  };
  const Case cases[] = {
      {"foreign format", [](auto& j) { j["format"] = "other"; }, "'format'"},
      {"future version", [](auto& j) { j["version"] = 2; }, "'version'"},
      {"missing device", [](auto& j) { j.erase("device"); }, "'device'"},
      {"missing uuid", [](auto& j) { j["device"].erase("uuid"); }, "device.uuid"},
      {"bad backend", [](auto& j) { j["device"]["backend"] = "tpu"; }, "device.backend"},
      {"negative rate", [](auto& j) { j["throughput"]["fp32_fma_flops"] = -1.0; },
       "throughput.fp32_fma_flops"},
      {"rate as text", [](auto& j) { j["throughput"]["matrix_int8_ops"] = "fast"; },
       "throughput.matrix_int8_ops"},
      {"zero bandwidth", [](auto& j) { j["throughput"]["memory_bytes_per_s"] = 0.0; },
       "'throughput'"},
      {"bad granularity", [](auto& j) { j["timings"][0]["granularity"] = "g64"; },
       "timings[0].granularity"},
      {"zero time", [](auto& j) { j["timings"][0]["seconds"] = 0.0; }, "timings[0].seconds"},
      {"negative shape", [](auto& j) { j["timings"][0]["n"] = -5; }, "timings[0]"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = good;
    c.corrupt(j);
    auto parsed = NodeProfileFromJson(j.dump());
    ASSERT_FALSE(parsed.ok()) << c.what;
    EXPECT_NE(parsed.status().message().find(c.expected_in_message), std::string::npos)
        << c.what << ": " << parsed.status().message();
  }
  EXPECT_FALSE(NodeProfileFromJson("{\"format\": \"apex4.node_pro").ok());  // truncated
  EXPECT_FALSE(NodeProfileFromJson("[1, 2]").ok());
}

TEST(NodeProfile, WriteThenReadFile) {
  const std::string path = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                           "/profile_test.json";
  ASSERT_TRUE(WriteNodeProfile(SampleProfile(), path).ok());
  auto back = ReadNodeProfile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->device.uuid, "GPU-1234");
  std::remove(path.c_str());
  auto missing = ReadNodeProfile(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(NodeProfile, ReadNamesThePathOfACorruptFile) {
  const std::string path = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                           "/corrupt_profile.json";
  std::ofstream(path) << "{not json";
  auto parsed = ReadNodeProfile(path);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find(path), std::string::npos);
}

}  // namespace
}  // namespace apex4
