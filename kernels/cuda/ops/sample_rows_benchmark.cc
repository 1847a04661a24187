// SampleRows against the path it replaced in the CUDA engine: copying every logit row to pinned
// host memory and picking there with TokenPicker, one row after another (the scheduler thread's
// work). Random LM-like logits (normal, sigma 3); both paths timed end to end from logits on the
// GPU to token ids on the host, median of --reps runs. Prints microseconds and the ratio.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "engine/sampler.h"
#include "kernels/cuda/ops/sample_rows.h"
#include "kernels/cuda/testing/gpu_test_util.h"

namespace apex4::cuda {
namespace {

using testing::DeviceBuffer;

template <typename F>
double MedianMicros(int reps, F run) {
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
    times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

int Main(int argc, char** argv) {
  if (!testing::HaveCudaDevice()) return 0;
  const int reps = argc > 1 ? std::atoi(argv[1]) : 21;
  cudaDeviceProp prop;
  ASSERT_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device %s; random logits (normal, sigma 3); median of %d runs, logits on the GPU -> ids on the host\n",
              prop.name, reps);
  std::printf("%-30s %6s %5s | %10s %10s | %7s\n", "pick", "vocab", "rows", "host_us", "gpu_us", "host/gpu");
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  struct Setting {
    const char* name;
    SamplingRow row;
  };
  const Setting settings[] = {{"greedy", {0.0f, 0, 1.0f}},
                              {"T 1", {1.0f, 0, 1.0f}},
                              {"T 0.7, top_k 50", {0.7f, 50, 1.0f}},
                              {"T 1, top_p 0.9", {1.0f, 0, 0.9f}},
                              {"T 0.8, top_k 40, top_p 0.95", {0.8f, 40, 0.95f}}};
  for (int64_t vocab : {32000, 49152, 128256}) {
    for (int64_t rows : {1, 16, 64}) {
      std::vector<float> logits(rows * vocab);
      for (float& v : logits) v = normal(rng);
      DeviceBuffer<float> source(logits), scratch(logits.size());
      float* pinned = nullptr;
      ASSERT_CUDA(cudaMallocHost(&pinned, logits.size() * sizeof(float)));
      DeviceBuffer<SamplingRow> dparams(rows);
      DeviceBuffer<int32_t> dout(rows);
      std::vector<int32_t> ids(rows);
      for (const Setting& setting : settings) {
        std::vector<SamplingRow> params(rows, setting.row);
        for (SamplingRow& p : params) p.uniform = uniform(rng);
        TokenPicker picker;
        const double host_us = MedianMicros(reps, [&] {
          ASSERT_CUDA(cudaMemcpy(pinned, source.get(), logits.size() * sizeof(float), cudaMemcpyDeviceToHost));
          for (int64_t r = 0; r < rows; ++r) {
            const SamplingRow& p = params[r];
            ids[r] = *picker.Pick({p.temperature, p.top_k, p.top_p, p.uniform},
                                  absl::MakeConstSpan(pinned + r * vocab, vocab));
          }
        });
        // SampleRows may overwrite its rows: each run samples a fresh device copy (the copy is
        // timed separately and subtracted).
        const double copy_us = MedianMicros(reps, [&] {
          ASSERT_CUDA(cudaMemcpyAsync(scratch.get(), source.get(), logits.size() * sizeof(float),
                                      cudaMemcpyDeviceToDevice, nullptr));
          ASSERT_CUDA(cudaStreamSynchronize(nullptr));
        });
        const double gpu_us = MedianMicros(reps, [&] {
          ASSERT_CUDA(cudaMemcpyAsync(scratch.get(), source.get(), logits.size() * sizeof(float),
                                      cudaMemcpyDeviceToDevice, nullptr));
          ASSERT_CUDA(cudaMemcpyAsync(dparams.get(), params.data(), rows * sizeof(SamplingRow),
                                      cudaMemcpyHostToDevice, nullptr));
          ASSERT_CUDA_OK(SampleRows(scratch.get(), vocab, rows, vocab, dparams.get(), dout.get(), nullptr));
          ASSERT_CUDA(cudaMemcpy(ids.data(), dout.get(), rows * sizeof(int32_t), cudaMemcpyDeviceToHost));
        }) - copy_us;
        std::printf("%-30s %6lld %5lld | %10.1f %10.1f | %7.2f\n", setting.name, (long long)vocab, (long long)rows,
                    host_us, gpu_us, host_us / gpu_us);
      }
      cudaFreeHost(pinned);
    }
  }
  return 0;
}

}  // namespace
}  // namespace apex4::cuda

int main(int argc, char** argv) { return apex4::cuda::Main(argc, argv); }
