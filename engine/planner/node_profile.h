// A node's compute profile: what `apex4_probe` measured on one device (GPU or CPU), saved as
// versioned JSON so that every server on the node reads it at start-up instead of re-measuring.
// APEX4's ratio ρ (tensor-core integer throughput over CUDA-core FP32 throughput) is derived
// from it; the planner turns it into per-layer granularity and kernel choices.
#ifndef APEX4_ENGINE_PLANNER_NODE_PROFILE_H_
#define APEX4_ENGINE_PLANNER_NODE_PROFILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace apex4 {

inline constexpr char kNodeProfileFormat[] = "apex4.node_profile";
inline constexpr int kNodeProfileVersion = 1;

// Which device a profile belongs to. A profile measured on another device (other UUID, or the
// same UUID under another driver) is stale and must not be applied.
struct DeviceIdentity {
  std::string backend;  // "cpu" or "cuda"
  std::string name;     // "NVIDIA H200", "AMD EPYC ..."
  std::string uuid;     // GPU UUID; for CPUs a hash of model, core count and ISA
  std::string driver;   // CUDA driver version, or the CPU's ISA level ("avx512vnni")

  bool operator==(const DeviceIdentity& o) const {
    return backend == o.backend && name == o.name && uuid == o.uuid && driver == o.driver;
  }
};

// Measured peak rates, in operations (or bytes) per second; 0 where the device lacks the unit.
struct DeviceThroughput {
  double matrix_int4_ops = 0;   // INT4 tensor cores (mma.sync s4), Ampere/Ada
  double matrix_int8_ops = 0;   // INT8 tensor cores (mma/wgmma s8); CPUs: VNNI/AVX2 int8 dots
  double matrix_fp16_ops = 0;
  double fp32_fma_flops = 0;    // CUDA cores / SIMD FMA
  double int_to_float_ops = 0;  // cvt s32 -> f32: the per-group dequantization step
  double memory_bytes_per_s = 0;
};

// One timed kernel variant on one GEMM shape: Y[m, n] = X[m, k] W[n, k]^T.
struct KernelTiming {
  std::string kernel;       // e.g. "sm90_w4a4_gemm_swapab", "cpu_avx512vnni_w4a4"
  std::string granularity;  // "per_channel" or "g128"
  int64_t m = 0, n = 0, k = 0;
  double seconds = 0;
};

struct NodeProfile {
  int version = kNodeProfileVersion;
  std::string created_utc;       // ISO 8601
  DeviceIdentity device;
  int32_t clock_mhz = 0;
  DeviceThroughput throughput;
  double probe_seconds = 0;      // how long the probe ran
  std::vector<KernelTiming> timings;

  // ρ: the best matrix-unit integer rate the W4A4 kernels can use over the FP32 FMA rate.
  double rho() const;
};

std::string NodeProfileToJson(const NodeProfile& profile);

// Parses and validates: format name and version, required fields, finite non-negative rates,
// positive shapes and times. Every refusal says which field is wrong.
absl::StatusOr<NodeProfile> NodeProfileFromJson(const std::string& json);

absl::StatusOr<NodeProfile> ReadNodeProfile(const std::string& path);
// Writes atomically (temporary file, then rename) so a reader never sees half a profile.
absl::Status WriteNodeProfile(const NodeProfile& profile, const std::string& path);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_NODE_PROFILE_H_
