// GPU throughput microbenchmarks for the CUDA node probe (cuda_probe.h): the tensor-core rates
// per operand type, the CUDA-core rates that group dequantization spends (FFMA, int->float), and
// memory bandwidth. Plain C++ interface (no absl, no CUDA types) so that host code including it
// stays CUDA-free.
#ifndef APEX4_ENGINE_PLANNER_CUDA_THROUGHPUT_H_
#define APEX4_ENGINE_PLANNER_CUDA_THROUGHPUT_H_

#include <string>

namespace apex4 {

struct CudaDeviceFacts {
  std::string name;
  std::string uuid;            // "GPU-xxxxxxxx-xxxx-..."
  std::string driver;          // CUDA driver API version, e.g. "13000"
  int compute_capability = 0;  // 90 for sm_90
  int sm_count = 0;
  int clock_mhz = 0;
};

struct CudaThroughput {
  double mma_int4_ops = 0;   // mma.sync m16n8k64 s4 (0 where the architecture lacks it)
  double mma_int8_ops = 0;   // mma.sync m16n8k32 s8
  double mma_fp16_ops = 0;   // mma.sync m16n8k16 f16, f32 accumulate
  double ffma_flops = 0;
  double i2f_ops = 0;        // cvt.rn.f32.s32
  double copy_bytes_per_s = 0;  // device-to-device, bytes read + written
};

// Returns false with `error` set when there is no usable CUDA device or a CUDA call fails
// (the message carries the statement, file and line).
bool QueryCudaDevice(int device, CudaDeviceFacts* facts, std::string* error);
// Whether this binary holds machine code for `device` (its kernels are built for the
// architectures of third_party/cuda.bzl, or those of APEX4_CUDA_ARCHS, with no PTX to JIT).
bool CheckCudaKernelImage(int device, std::string* error);
bool MeasureCudaThroughput(int device, CudaThroughput* out, std::string* error);

}  // namespace apex4

#endif  // APEX4_ENGINE_PLANNER_CUDA_THROUGHPUT_H_
