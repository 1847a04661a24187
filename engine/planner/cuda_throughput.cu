#include "engine/planner/cuda_throughput.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <string>

namespace apex4 {
namespace {

#define PROBE_CUDA_CHECK(stmt)                                                         \
  do {                                                                                 \
    const cudaError_t err_ = (stmt);                                                   \
    if (err_ != cudaSuccess) {                                                         \
      *error = std::string(#stmt) + " failed at " __FILE__ ":" + std::to_string(__LINE__) + \
               ": " + cudaGetErrorString(err_);                                        \
      return false;                                                                    \
    }                                                                                  \
  } while (0)

// NOTES: every loop keeps kChains independent accumulators so that the units' issue rate, not
// one instruction's latency, bounds it; results are written only when a runtime-false condition
// holds so that the compiler keeps the work.
constexpr int kChains = 4;
constexpr int kThreads = 256;

// Integer mma.sync with the same fragments either way: m16n8k32 s8 (INT8 tensor cores) or
// m16n8k64 s4 (INT4 tensor cores; emulated on Hopper).
template <bool kInt4>
__global__ void MmaIntLoop(int iterations, int* sink) {
#if __CUDA_ARCH__ >= 800
  unsigned a[4] = {threadIdx.x, threadIdx.x ^ 1u, threadIdx.x * 3u, 7u};
  unsigned b[2] = {threadIdx.x + 5u, 9u};
  int acc[kChains][4] = {};
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      if constexpr (kInt4) {
        asm volatile(
            "mma.sync.aligned.m16n8k64.row.col.s32.s4.s4.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+r"(acc[c][0]), "+r"(acc[c][1]), "+r"(acc[c][2]), "+r"(acc[c][3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
      } else {
        asm volatile(
            "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+r"(acc[c][0]), "+r"(acc[c][1]), "+r"(acc[c][2]), "+r"(acc[c][3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
      }
    }
  }
  int total = 0;
  for (int c = 0; c < kChains; ++c) total += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  if (total == 0x7fffffff) sink[0] = total;
#endif
}

__global__ void MmaFp16Loop(int iterations, int* sink) {
#if __CUDA_ARCH__ >= 800
  unsigned a[4] = {0x3c003c00u, 0x3c003c00u, 0x3c003c00u, 0x3c003c00u};  // halves of 1.0
  unsigned b[2] = {0x00010001u, 0x00010001u};                            // tiny denormals
  float acc[kChains][4] = {};
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(acc[c][0]), "+f"(acc[c][1]), "+f"(acc[c][2]), "+f"(acc[c][3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
  }
  float total = 0;
  for (int c = 0; c < kChains; ++c) total += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  if (total == -1.0f) sink[0] = 1;
#endif
}

__global__ void FfmaLoop(int iterations, int* sink) {
  float acc[8];
#pragma unroll
  for (int c = 0; c < 8; ++c) acc[c] = threadIdx.x * 0.001f + c;
  const float a = 0.9999f, b = 0.0001f;
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < 8; ++c) acc[c] = fmaf(acc[c], a, b);
  }
  float total = 0;
  for (int c = 0; c < 8; ++c) total += acc[c];
  if (total == -1.0f) sink[0] = 1;
}

__global__ void IntToFloatLoop(int iterations, int* sink) {
  int v[8];
  float acc = 0;
#pragma unroll
  for (int c = 0; c < 8; ++c) v[c] = threadIdx.x + c;
  for (int i = 0; i < iterations; ++i) {
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      float f;
      asm volatile("cvt.rn.f32.s32 %0, %1;" : "=f"(f) : "r"(v[c]));
      v[c] ^= __float_as_int(f);  // keeps each conversion's input dependent and live
    }
  }
  for (int c = 0; c < 8; ++c) acc += v[c];
  if (acc == -1.0f) sink[0] = 1;
}

__global__ void CopyKernel(const int4* __restrict__ src, int4* __restrict__ dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

// Times `launch` (one launch per call) with events; median-free but warmed: the second of two
// timed runs counts.
template <typename Launch>
bool TimeLaunch(Launch launch, float* ms, std::string* error) {
  cudaEvent_t start, stop;
  PROBE_CUDA_CHECK(cudaEventCreate(&start));
  PROBE_CUDA_CHECK(cudaEventCreate(&stop));
  launch();  // warm-up: module load and clocks
  PROBE_CUDA_CHECK(cudaGetLastError());
  PROBE_CUDA_CHECK(cudaEventRecord(start));
  launch();
  PROBE_CUDA_CHECK(cudaEventRecord(stop));
  PROBE_CUDA_CHECK(cudaEventSynchronize(stop));
  PROBE_CUDA_CHECK(cudaGetLastError());
  PROBE_CUDA_CHECK(cudaEventElapsedTime(ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return true;
}

// Rate of a loop kernel: ops per thread-iteration × threads × iterations / time.
bool LoopRate(void (*kernel)(int, int*), int blocks, int iterations, double ops_per_warp_iter,
              double ops_per_thread_iter, int* sink, double* rate, std::string* error) {
  float ms = 0;
  if (!TimeLaunch([&] { kernel<<<blocks, kThreads>>>(iterations, sink); }, &ms, error)) {
    return false;
  }
  const double warps = blocks * (kThreads / 32.0), threads = blocks * double(kThreads);
  const double ops = iterations * (ops_per_warp_iter * warps + ops_per_thread_iter * threads);
  *rate = ops / (ms * 1e-3);
  return true;
}

}  // namespace

bool QueryCudaDevice(int device, CudaDeviceFacts* facts, std::string* error) {
  int count = 0;
  const cudaError_t counted = cudaGetDeviceCount(&count);
  if (counted != cudaSuccess) {
    cudaGetLastError();
    *error = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(counted);
    if (counted == cudaErrorInsufficientDriver) {
      *error += " (no NVIDIA driver is loaded, or it is older than this binary's CUDA runtime)";
    }
    return false;
  }
  if (device < 0 || device >= count) {
    *error = "no CUDA device " + std::to_string(device) + " (found " + std::to_string(count) + ")";
    return false;
  }
  cudaDeviceProp prop;
  PROBE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int driver = 0, clock_khz = 0;
  PROBE_CUDA_CHECK(cudaDriverGetVersion(&driver));
  PROBE_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
  char uuid[64];
  const unsigned char* u = reinterpret_cast<const unsigned char*>(prop.uuid.bytes);
  std::snprintf(uuid, sizeof(uuid),
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0],
                u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13],
                u[14], u[15]);
  facts->name = prop.name;
  facts->uuid = uuid;
  facts->driver = std::to_string(driver);
  facts->compute_capability = prop.major * 10 + prop.minor;
  facts->sm_count = prop.multiProcessorCount;
  facts->clock_mhz = clock_khz / 1000;
  return true;
}

bool CheckCudaKernelImage(int device, std::string* error) {
  PROBE_CUDA_CHECK(cudaSetDevice(device));
  cudaFuncAttributes attributes;
  const cudaError_t err = cudaFuncGetAttributes(&attributes, FfmaLoop);
  if (err != cudaSuccess) {
    cudaGetLastError();  // not sticky, but leave no error behind for the next call to report
    *error = std::string("this binary has no kernels for device ") + std::to_string(device) +
             ": " + cudaGetErrorString(err);
    return false;
  }
  return true;
}

bool MeasureCudaThroughput(int device, CudaThroughput* out, std::string* error) {
  CudaDeviceFacts facts;
  if (!QueryCudaDevice(device, &facts, error)) return false;
  PROBE_CUDA_CHECK(cudaSetDevice(device));
  int* sink = nullptr;
  PROBE_CUDA_CHECK(cudaMalloc(&sink, sizeof(int)));
  const int blocks = facts.sm_count * 8;
  bool ok = true;
  if (facts.compute_capability >= 80) {
    // Ops per mma per warp: 2·M·N·K.
    ok = ok && LoopRate(MmaIntLoop<false>, blocks, 4096, kChains * 2.0 * 16 * 8 * 32, 0, sink,
                        &out->mma_int8_ops, error);
    ok = ok && LoopRate(MmaIntLoop<true>, blocks, facts.compute_capability >= 90 ? 256 : 4096,
                        kChains * 2.0 * 16 * 8 * 64, 0, sink, &out->mma_int4_ops, error);
    ok = ok && LoopRate(MmaFp16Loop, blocks, 4096, kChains * 2.0 * 16 * 8 * 16, 0, sink,
                        &out->mma_fp16_ops, error);
  }
  ok = ok && LoopRate(FfmaLoop, blocks, 8192, 0, 8 * 2.0, sink, &out->ffma_flops, error);
  ok = ok && LoopRate(IntToFloatLoop, blocks, 4096, 0, 8.0, sink, &out->i2f_ops, error);
  if (ok) {
    // 256 MiB each way (far beyond any L2), copied 4 times per timed run: 1 GiB read and 1 GiB
    // written, as a single 1 GiB copy would move, in a quarter of the memory, so that the probe
    // also fits beside a loaded model in the server.
    constexpr size_t kBytes = size_t{256} << 20;
    constexpr int kCopies = 4;
    int4 *src = nullptr, *dst = nullptr;
    const cudaError_t allocated = cudaMalloc(&src, kBytes);
    if (allocated == cudaSuccess) {
      ok = cudaMalloc(&dst, kBytes) == cudaSuccess && cudaMemset(src, 1, kBytes) == cudaSuccess;
      if (!ok) *error = "allocating 2 x 256 MiB for the copy bandwidth failed";
    } else {
      ok = false;
      *error = std::string("allocating 256 MiB for the copy bandwidth failed: ") +
               cudaGetErrorString(allocated);
    }
    float ms = 0;
    ok = ok && TimeLaunch(
                   [&] {
                     for (int c = 0; c < kCopies; ++c) {
                       CopyKernel<<<facts.sm_count * 16, 512>>>(src, dst, kBytes / 16);
                     }
                   },
                   &ms, error);
    if (ok) out->copy_bytes_per_s = 2.0 * kCopies * kBytes / (ms * 1e-3);
    cudaGetLastError();
    cudaFree(src);
    cudaFree(dst);
  }
  cudaFree(sink);
  return ok;
}

}  // namespace apex4
