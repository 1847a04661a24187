#include "engine/planner/cuda_probe.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/planner/cuda_kernel_timings.h"

namespace apex4 {

absl::StatusOr<CudaDeviceFacts> FindUsableCudaDevice(int device) {
  if (device < 0) {
    return absl::InvalidArgumentError(absl::StrCat("CUDA device index ", device, " is negative"));
  }
  CudaDeviceFacts facts;
  std::string error;
  if (!QueryCudaDevice(device, &facts, &error)) {
    return absl::FailedPreconditionError(absl::StrCat("no usable CUDA device: ", error));
  }
  if (facts.compute_capability < 80) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", device, " (", facts.name, ", sm_", facts.compute_capability,
                     ") is too old: apex4's kernels need sm_80 or newer"));
  }
  if (!CheckCudaKernelImage(device, &error)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", device, " (", facts.name, ", sm_", facts.compute_capability, "): ", error,
        " (built for other architectures: see APEX4_CUDA_ARCHS)"));
  }
  return facts;
}

DeviceIdentity CudaIdentity(const CudaDeviceFacts& facts) {
  return {"cuda", facts.name, facts.uuid, facts.driver};
}

std::string CudaW4A4KernelFor(int compute_capability) {
  return compute_capability / 10 == 9 ? kSm90KernelName : kPortableKernelName;
}

absl::StatusOr<NodeProfile> ProbeCudaNode(int device, const std::vector<GemmShape>& shapes,
                                          const std::vector<int64_t>& m_buckets, int repeats) {
  const absl::Time start = absl::Now();
  absl::StatusOr<CudaDeviceFacts> facts = FindUsableCudaDevice(device);
  if (!facts.ok()) return facts.status();
  CudaThroughput rates;
  std::string error;
  NodeProfile profile;
  if (!MeasureCudaThroughput(device, &rates, &error) ||
      !TimeCudaW4A4Kernels(device, shapes, m_buckets, repeats, &profile.timings, &error)) {
    return absl::UnavailableError(error);
  }
  profile.created_utc = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", start, absl::UTCTimeZone());
  profile.device = CudaIdentity(*facts);
  profile.clock_mhz = facts->clock_mhz;
  profile.throughput.matrix_int4_ops = rates.mma_int4_ops;
  profile.throughput.matrix_int8_ops = rates.mma_int8_ops;
  profile.throughput.matrix_fp16_ops = rates.mma_fp16_ops;
  profile.throughput.fp32_fma_flops = rates.ffma_flops;
  profile.throughput.int_to_float_ops = rates.i2f_ops;
  profile.throughput.memory_bytes_per_s = rates.copy_bytes_per_s;
  profile.probe_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return profile;
}

}  // namespace apex4
