// apex4_probe: measures this node's device (a CUDA GPU, else the CPU) and writes the versioned
// node profile that servers on the node read at start-up (--profile / APEX4_PROFILE).
//
//   apex4_probe --output=/var/lib/apex4/profiles/node.json [--backend=auto|cpu|cuda]
//               [--shapes=576x640,1536x640] [--m_buckets=1,8,64,256]
//
// Bounded run time: the CPU probe takes about 1 s plus 20 ms per (shape, M, kernel, granularity);
// the CUDA probe about 2 s plus a few launches per (shape, M, kernel, granularity).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/planner/cpu_probe.h"
#include "engine/planner/cuda_probe.h"
#include "engine/planner/node_profile.h"

ABSL_FLAG(std::string, output, "", "where to write the profile JSON (required)");
ABSL_FLAG(std::string, backend, "auto", "auto (CUDA device 0 if present, else CPU), cpu or cuda");
ABSL_FLAG(std::string, shapes, "",
          "GEMM shapes NxK of the served model's 4-bit layers to time the kernels on, "
          "comma-separated (K a multiple of 128)");
ABSL_FLAG(std::string, m_buckets, "1,8,64,256", "batch sizes (tokens per GEMM) to time");
ABSL_FLAG(int, threads, 0, "CPU threads (0: all cores)");
ABSL_FLAG(int, device, 0, "CUDA device index");

namespace apex4 {
namespace {

absl::StatusOr<std::vector<GemmShape>> ParseShapes(const std::string& text) {
  std::vector<GemmShape> shapes;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::vector<std::string> nk = absl::StrSplit(item, 'x');
    GemmShape shape;
    if (nk.size() != 2 || !absl::SimpleAtoi(nk[0], &shape.n) ||
        !absl::SimpleAtoi(nk[1], &shape.k) || shape.n <= 0 || shape.k <= 0 || shape.k % 128 != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--shapes: '", item, "' is not NxK with K a positive multiple of 128"));
    }
    shapes.push_back(shape);
  }
  return shapes;
}

absl::StatusOr<std::vector<int64_t>> ParseBuckets(const std::string& text) {
  std::vector<int64_t> buckets;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t m = 0;
    if (!absl::SimpleAtoi(item, &m) || m <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("--m_buckets: '", item,
                                                     "' is not a positive integer"));
    }
    buckets.push_back(m);
  }
  if (buckets.empty()) return absl::InvalidArgumentError("--m_buckets is empty");
  return buckets;
}

int Run() {
  const std::string output = absl::GetFlag(FLAGS_output);
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (output.empty()) {
    std::fprintf(stderr, "apex4_probe: --output is required\n");
    return 2;
  }
  if (backend != "auto" && backend != "cpu" && backend != "cuda") {
    std::fprintf(stderr, "apex4_probe: --backend must be auto, cpu or cuda, got '%s'\n",
                 backend.c_str());
    return 2;
  }
  absl::StatusOr<std::vector<GemmShape>> shapes = ParseShapes(absl::GetFlag(FLAGS_shapes));
  absl::StatusOr<std::vector<int64_t>> buckets = ParseBuckets(absl::GetFlag(FLAGS_m_buckets));
  for (const absl::Status& s : {shapes.status(), buckets.status()}) {
    if (!s.ok()) {
      std::fprintf(stderr, "apex4_probe: %s\n", std::string(s.message()).c_str());
      return 2;
    }
  }

  absl::StatusOr<NodeProfile> profile = absl::UnavailableError("not probed");
  if (backend != "cpu") {
    profile = ProbeCudaNode(absl::GetFlag(FLAGS_device), *shapes, *buckets);
    if (!profile.ok()) {
      std::fprintf(stderr, "apex4_probe: CUDA: %s\n", std::string(profile.status().message()).c_str());
      if (backend == "cuda") return 1;
    }
  }
  if (!profile.ok()) profile = ProbeCpuNode(*shapes, *buckets, absl::GetFlag(FLAGS_threads));

  const DeviceThroughput& t = profile->throughput;
  std::printf("device   %s '%s' %s (%s)\n", profile->device.backend.c_str(),
              profile->device.name.c_str(), profile->device.uuid.c_str(),
              profile->device.driver.c_str());
  std::printf("matrix   int4 %.1f  int8 %.1f  fp16 %.1f  T ops/s\n", t.matrix_int4_ops / 1e12,
              t.matrix_int8_ops / 1e12, t.matrix_fp16_ops / 1e12);
  std::printf("scalar   fp32 fma %.2f  int->float %.2f  T ops/s\n", t.fp32_fma_flops / 1e12,
              t.int_to_float_ops / 1e12);
  std::printf("memory   %.1f GB/s\n", t.memory_bytes_per_s / 1e9);
  std::printf("rho      %.1f\n", profile->rho());
  std::printf("timings  %zu kernel timings, probe took %.1f s\n", profile->timings.size(),
              profile->probe_seconds);
  if (absl::Status s = WriteNodeProfile(*profile, output); !s.ok()) {
    std::fprintf(stderr, "apex4_probe: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::printf("wrote    %s\n", output.c_str());
  return 0;
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Measures this node's device and writes its apex4 node profile.");
  absl::ParseCommandLine(argc, argv);
  return apex4::Run();
}
