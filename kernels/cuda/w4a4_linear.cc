#include "kernels/cuda/w4a4_linear.h"

#include <algorithm>

#include "kernels/cuda/quant/w4a4_quantize_activations.h"
#include "kernels/cuda/sm80/sm80_w4a4_gemm.h"
#include "kernels/cuda/sm90/sm90_w4a4_gemm.h"
#include "kernels/cuda/sm90/sm90_w4a4_prepack.h"

namespace apex4::cuda {

CudaStatus SelectW4A4Backend(int device, W4A4Backend* backend) {
  APEX4_CUDA_CHECK_ARG(backend != nullptr);
  int major = 0, minor = 0;
  APEX4_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  APEX4_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const int cc = 10 * major + minor;
  // Only the architectures compiled in (third_party/cuda.bzl): sm_80/86/89 and sm_90a.
  if (cc != 80 && cc != 86 && cc != 89 && cc != 90) {
    return CudaStatus{cudaErrorNoKernelImageForDevice, "compute capability not built", __FILE__, __LINE__};
  }
  *backend = cc == 90 ? W4A4Backend::kSm90 : W4A4Backend::kPortable;
  return OkCudaStatus();
}

CudaStatus PrepackW4A4Weights(W4A4Backend backend, const W4A4Operand& w, uint8_t* packed,
                              float* scales) {
  if (backend == W4A4Backend::kSm90) return PrepackSm90W4A4Weights(w, packed, scales);
  APEX4_CUDA_CHECK_ARG(w.packed != nullptr && w.scales != nullptr && packed && scales);
  APEX4_CUDA_CHECK_ARG(w.rows > 0 && w.k > 0 && w.k % 128 == 0);
  APEX4_CUDA_CHECK_ARG(w.group_size == w.k || w.group_size == 128);
  std::copy(w.packed, w.packed + w.rows * PackedRowBytes(w.k), packed);
  std::copy(w.scales, w.scales + w.rows * w.groups(), scales);
  return OkCudaStatus();
}

size_t W4A4GemmWorkspaceBytes(W4A4Backend backend, int64_t m, int64_t n, int64_t k,
                              Granularity granularity, int num_sms) {
  if (backend != W4A4Backend::kSm90 || m <= 0 || n <= 0 || k <= 0 || num_sms <= 0) return 0;
  return Sm90W4A4GemmWorkspaceBytes(m, n, k, granularity, num_sms);
}

namespace {

// The outlier channels' product added to the GEMM's bf16 output (the paths other than the
// Hopper decode kernel).
CudaStatus AddW4A4GemmOutlierProducts(const W4A4GemmArgs& args, cudaStream_t stream) {
  const W4A4GemmOutliers& o = *args.outliers;
  W4A4OutlierProductArgs products;
  products.x_q8 = o.x_q8;
  products.x_scales = o.x_scales;
  products.rows = args.m;
  products.count = o.count;
  products.codes_stride = o.codes_stride;
  products.weights = o.weights;
  products.weight_scales = o.weight_scales;
  products.n = args.n;
  products.y = args.y;
  products.ldy = args.n;
  return AddW4A4OutlierProducts(products, stream);
}

}  // namespace

CudaStatus W4A4Gemm(W4A4Backend backend, const W4A4GemmArgs& args, cudaStream_t stream) {
  if (args.outliers != nullptr) {
    const W4A4GemmOutliers& o = *args.outliers;
    APEX4_CUDA_CHECK_ARG(o.x_q8 && o.x_scales && o.weights && o.weight_scales);
    APEX4_CUDA_CHECK_ARG(o.count > 0 && o.count <= kMaxW4A4Outliers && o.codes_stride == W4A4OutlierCodesStride(o.count));
  }
  const bool sm90 = backend == W4A4Backend::kSm90;
  APEX4_CUDA_RETURN_IF_NOT_OK(sm90 ? LaunchSm90W4A4Gemm(args, stream) : LaunchSm80W4A4Gemm(args, stream));
  const bool added = sm90 && Sm90W4A4DecodeRuns(args.m, args.k);  // in the decode kernel's epilogue
  return args.outliers != nullptr && !added ? AddW4A4GemmOutlierProducts(args, stream) : OkCudaStatus();
}

void W4A4OutlierColumnsFor(const int32_t* channels, int32_t count, int64_t k, uint8_t* mask, int16_t* before) {
  int32_t next = 0;  // channels[next] is the first not yet placed
  for (int64_t chunk = 0; chunk < k / 8; ++chunk) {
    before[chunk] = static_cast<int16_t>(next);
    mask[chunk] = 0;
    while (next < count && channels[next] < 8 * (chunk + 1)) mask[chunk] |= 1u << (channels[next++] - 8 * chunk);
  }
}

CudaStatus QuantizeW4A4Activations(const W4A4QuantizeArgs& args, cudaStream_t stream) {
  return LaunchW4A4QuantizeActivations(args, stream);
}

}  // namespace apex4::cuda
