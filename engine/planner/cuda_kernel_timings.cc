#include "engine/planner/cuda_kernel_timings.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4 {
namespace {

using cuda::CudaStatus;
using cuda::W4A4Backend;

std::string Describe(const CudaStatus& s) {
  return absl::StrCat(s.statement ? s.statement : "?", " failed at ", s.file ? s.file : "?", ":",
                      s.line, ": ", cudaGetErrorString(s.code));
}

#define PROBE_RETURN_IF_CUDA(stmt)                                                   \
  do {                                                                               \
    const cudaError_t err_ = (stmt);                                                 \
    if (err_ != cudaSuccess) {                                                       \
      *error = absl::StrCat(#stmt, " failed at ", __FILE__, ":", __LINE__, ": ",     \
                            cudaGetErrorString(err_));                               \
      return false;                                                                  \
    }                                                                                \
  } while (0)

#define PROBE_RETURN_IF_NOT_OK(expr)            \
  do {                                          \
    const CudaStatus s_ = (expr);               \
    if (!s_.ok()) {                             \
      *error = Describe(s_);                    \
      return false;                             \
    }                                           \
  } while (0)

// Device buffers freed on scope exit.
class DeviceBuffer {
 public:
  ~DeviceBuffer() { cudaFree(ptr_); }
  cudaError_t Allocate(size_t bytes) { return cudaMalloc(&ptr_, std::max<size_t>(bytes, 16)); }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

void FillRandom(std::vector<uint8_t>* bytes, std::vector<float>* scales, std::mt19937* rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.02f);
  for (uint8_t& b : *bytes) b = static_cast<uint8_t>(byte(*rng));
  for (float& s : *scales) s = scale(*rng);
}

}  // namespace

bool TimeCudaW4A4Kernels(int device, const std::vector<GemmShape>& shapes,
                         const std::vector<int64_t>& m_buckets, int repeats,
                         std::vector<KernelTiming>* timings, std::string* error) {
  PROBE_RETURN_IF_CUDA(cudaSetDevice(device));
  cudaDeviceProp prop;
  PROBE_RETURN_IF_CUDA(cudaGetDeviceProperties(&prop, device));
  std::vector<std::pair<W4A4Backend, const char*>> backends;
  if (prop.major == 9) backends.push_back({W4A4Backend::kSm90, kSm90KernelName});
  if (prop.major >= 8) backends.push_back({W4A4Backend::kPortable, kPortableKernelName});
  if (backends.empty()) {
    *error = absl::StrCat(prop.name, " (sm_", prop.major, prop.minor,
                          ") has no W4A4 kernel: INT4 or INT8 tensor cores need sm_80+");
    return false;
  }
  const int64_t max_m = *std::max_element(m_buckets.begin(), m_buckets.end());
  std::mt19937 rng(20261127);
  cudaStream_t stream;
  PROBE_RETURN_IF_CUDA(cudaStreamCreate(&stream));
  cudaEvent_t start, stop;
  PROBE_RETURN_IF_CUDA(cudaEventCreate(&start));
  PROBE_RETURN_IF_CUDA(cudaEventCreate(&stop));

  for (const GemmShape& shape : shapes) {
    for (Granularity granularity : {Granularity::kPerChannel, Granularity::kGroup128}) {
      const int group = GroupSizeFor(granularity, shape.k);
      const int64_t groups = shape.k / group;
      std::vector<uint8_t> w(shape.n * shape.k / 2), x(max_m * shape.k / 2);
      std::vector<float> ws(shape.n * groups), xs(max_m * groups);
      FillRandom(&w, &ws, &rng);
      FillRandom(&x, &xs, &rng);
      DeviceBuffer dx, dxs, dw, dws, dy;
      PROBE_RETURN_IF_CUDA(dx.Allocate(x.size()));
      PROBE_RETURN_IF_CUDA(dxs.Allocate(xs.size() * sizeof(float)));
      PROBE_RETURN_IF_CUDA(dw.Allocate(w.size()));
      PROBE_RETURN_IF_CUDA(dws.Allocate(ws.size() * sizeof(float)));
      PROBE_RETURN_IF_CUDA(dy.Allocate(max_m * shape.n * 2));
      PROBE_RETURN_IF_CUDA(cudaMemcpy(dx.as<void>(), x.data(), x.size(), cudaMemcpyHostToDevice));
      PROBE_RETURN_IF_CUDA(cudaMemcpy(dxs.as<void>(), xs.data(), xs.size() * sizeof(float),
                                      cudaMemcpyHostToDevice));
      for (const auto& [backend, name] : backends) {
        std::vector<uint8_t> packed(w.size());
        std::vector<float> packed_scales(ws.size());
        const W4A4Operand canonical{w.data(), ws.data(), shape.n, shape.k, group};
        PROBE_RETURN_IF_NOT_OK(
            cuda::PrepackW4A4Weights(backend, canonical, packed.data(), packed_scales.data()));
        PROBE_RETURN_IF_CUDA(cudaMemcpy(dw.as<void>(), packed.data(), packed.size(),
                                        cudaMemcpyHostToDevice));
        PROBE_RETURN_IF_CUDA(cudaMemcpy(dws.as<void>(), packed_scales.data(),
                                        packed_scales.size() * sizeof(float),
                                        cudaMemcpyHostToDevice));
        for (int64_t m : m_buckets) {
          const size_t workspace_bytes = cuda::W4A4GemmWorkspaceBytes(
              backend, m, shape.n, shape.k, granularity, prop.multiProcessorCount);
          DeviceBuffer workspace;
          PROBE_RETURN_IF_CUDA(workspace.Allocate(workspace_bytes));
          PROBE_RETURN_IF_CUDA(cudaMemset(workspace.as<void>(), 0, workspace_bytes));
          cuda::W4A4GemmArgs args;
          args.x = dx.as<uint8_t>();
          args.x_scales = dxs.as<float>();
          args.w = dw.as<uint8_t>();
          args.w_scales = dws.as<float>();
          args.y = dy.as<__nv_bfloat16>();
          args.m = m;
          args.n = shape.n;
          args.k = shape.k;
          args.granularity = granularity;
          args.workspace = workspace.as<void>();
          args.workspace_bytes = workspace_bytes;
          PROBE_RETURN_IF_NOT_OK(cuda::W4A4Gemm(backend, args, stream));  // warm-up
          std::vector<float> ms(repeats);
          for (float& t : ms) {
            PROBE_RETURN_IF_CUDA(cudaEventRecord(start, stream));
            PROBE_RETURN_IF_NOT_OK(cuda::W4A4Gemm(backend, args, stream));
            PROBE_RETURN_IF_CUDA(cudaEventRecord(stop, stream));
            PROBE_RETURN_IF_CUDA(cudaEventSynchronize(stop));
            PROBE_RETURN_IF_CUDA(cudaEventElapsedTime(&t, start, stop));
          }
          std::nth_element(ms.begin(), ms.begin() + repeats / 2, ms.end());
          timings->push_back({name,
                              granularity == Granularity::kGroup128 ? "g128" : "per_channel", m,
                              shape.n, shape.k, ms[repeats / 2] * 1e-3});
        }
      }
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  return true;
}

}  // namespace apex4
