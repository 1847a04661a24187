// What a kernel boundary costs inside a CUDA graph of programmatic-dependent launches
// (programmatic_launch.cuh), with and without thread block clusters: a decode step is ~350 such
// launches, each a few microseconds, so the boundary is a large part of it.
//
// Captures chains of kLaunches launches of a kernel that waits for its predecessor and then
// busies its CTAs for a given time, replays each graph, and prints microseconds per launch:
// "null" (no work: the boundary alone) and with 2 µs of work; grids of 128 and 512 CTAs;
// every launch plain, every launch in clusters of 2 / 4 / 8 CTAs, or plain and 4-CTA clusters
// alternating (as RoPE → clustered attention in a decode step). The 2 µs rows minus 2 show how
// much of the boundary PDL hides behind work.
// Usage: programmatic_launch_benchmark. Prints "no CUDA device: skipped" and exits 0 without a GPU.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "kernels/cuda/programmatic_launch_benchmark_kernel.h"

namespace apex4::cuda {
namespace {

constexpr int kLaunches = 256;
constexpr int kReplays = 20;

void Check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::printf("FATAL %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// µs per launch of a replayed graph of kLaunches launches; launch i uses clusters[i % size].
double MicrosecondsPerLaunch(int ctas, const std::vector<unsigned>& clusters, int64_t work_ns, cudaStream_t stream) {
  cudaGraph_t graph;
  Check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
  for (int i = 0; i < kLaunches; ++i) {
    const CudaStatus status =
        LaunchPdlChainKernel(dim3(ctas), dim3(clusters[i % clusters.size()]), work_ns, stream);
    if (!status.ok()) Check(status.code, status.statement);
  }
  Check(cudaStreamEndCapture(stream, &graph), "end capture");
  cudaGraphExec_t exec;
  Check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  cudaEvent_t start, stop;
  Check(cudaEventCreate(&start), "event");
  Check(cudaEventCreate(&stop), "event");
  Check(cudaGraphLaunch(exec, stream), "warm-up replay");
  Check(cudaEventRecord(start, stream), "record");
  for (int r = 0; r < kReplays; ++r) Check(cudaGraphLaunch(exec, stream), "replay");
  Check(cudaEventRecord(stop, stream), "record");
  Check(cudaEventSynchronize(stop), "sync");
  float ms = 0;
  Check(cudaEventElapsedTime(&ms, start, stop), "elapsed");
  Check(cudaEventDestroy(start), "event");
  Check(cudaEventDestroy(stop), "event");
  Check(cudaGraphExecDestroy(exec), "destroy");
  Check(cudaGraphDestroy(graph), "destroy");
  return 1e3 * ms / (kReplays * kLaunches);
}

int Main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  Check(cudaGetDeviceProperties(&prop, 0), "properties");
  if (prop.major < 9) {
    std::printf("%s: programmatic launches and clusters need sm_90; skipped\n", prop.name);
    return 0;
  }
  cudaStream_t stream;
  Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  std::printf("device: %s (%d SMs); µs per launch in a replayed graph of %d PDL launches, %d replays\n",
              prop.name, prop.multiProcessorCount, kLaunches, kReplays);
  const struct {
    const char* name;
    std::vector<unsigned> clusters;
  } variants[] = {{"plain", {1}}, {"clusters of 2", {2}}, {"clusters of 4", {4}},
                  {"clusters of 8", {8}}, {"plain / 4 alternating", {1, 4}}};
  std::printf("%-22s %6s %10s %10s\n", "launches", "CTAs", "null us", "2us-work us");
  for (const int ctas : {128, 512}) {
    for (const auto& variant : variants) {
      const double null_us = MicrosecondsPerLaunch(ctas, variant.clusters, 0, stream);
      const double work_us = MicrosecondsPerLaunch(ctas, variant.clusters, 2000, stream);
      std::printf("%-22s %6d %10.2f %10.2f\n", variant.name, ctas, null_us, work_us);
    }
  }
  Check(cudaStreamDestroy(stream), "stream");
  return 0;
}

}  // namespace
}  // namespace apex4::cuda

int main() { return apex4::cuda::Main(); }
