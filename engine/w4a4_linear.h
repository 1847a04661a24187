// A W4A4 linear layer of the CPU engine: packed INT4 weights with their scales, and the online
// work the checkpoint format asks of the engine around them (tools/quantizer/FORMAT.md,
// "Engine duties"): zero-pad the activations from the logical K to the packed K, optionally
// rotate them with the block Hadamard, quantize them to INT4, multiply with the W4A4 GEMM.
#ifndef APEX4_ENGINE_W4A4_LINEAR_H_
#define APEX4_ENGINE_W4A4_LINEAR_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/kernel_timer.h"
#include "engine/linear_layer.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/w4a4_format.h"

namespace apex4 {

struct W4A4LinearConfig {
  int64_t in_features = 0;   // logical K: the width of the x rows Forward receives
  int64_t out_features = 0;  // N
  int64_t packed_k = 0;      // the weights' K: in_features rounded up to a multiple of 128
  Granularity weight_granularity = Granularity::kGroup128;
  Granularity activation_granularity = Granularity::kGroup128;
  float activation_clip_ratio = 1.0f;  // QuantizeInt4Reference's clip_ratio, in (0, 1]
  int online_hadamard_block = 0;       // 0: none; else H_block / sqrt(block) per block of x
  CpuIsa isa = CpuIsa::kBest;          // for the quantizer, the Hadamard and the GEMM
};

// Atom-style INT8 outlier input channels (tools/quantizer/FORMAT.md, "Outlier channels"). They
// bypass the INT4 path, whose weight columns for them are zero, and are multiplied in INT8:
// y += (q8(x[:, channels]) · weights^T) · sx8 · scales, with q8 per token symmetric:
// sx8 = absmax / 127, q = clamp(rint(x / sx8), -127, 127).
struct W4A4OutlierChannels {
  std::vector<int32_t> channels;  // ascending, distinct, each < in_features; empty: none
  std::vector<int8_t> weights;    // out_features × channels.size()
  std::vector<float> scales;      // out_features
};

// Thread-safety: as LinearLayer. Forward's scratch memory is per calling thread.
class W4A4Linear : public LinearLayer {
 public:
  // `packed_weights`: out_features × packed_k/2 bytes in the canonical layout of
  // kernels/w4a4_format.h, columns past in_features zero; `weight_scales`: out_features ×
  // (packed_k / weight group size). INVALID_ARGUMENT names the first field that does not fit.
  // `pool` may be null (single-threaded); not owned.
  static absl::StatusOr<std::unique_ptr<W4A4Linear>> Create(const W4A4LinearConfig& config,
                                                            std::vector<uint8_t> packed_weights,
                                                            std::vector<float> weight_scales,
                                                            ThreadPool* pool,
                                                            W4A4OutlierChannels outliers = {});

  int64_t in_features() const override { return config_.in_features; }
  int64_t out_features() const override { return config_.out_features; }
  void Forward(const float* x, int64_t m, float* y) const override;
  KernelKind kernel_kind() const override { return KernelKind::kGemmW4A4; }

  const W4A4LinearConfig& config() const { return config_; }

  // When set, Forward records its two halves: the activations' padding, rotation and
  // quantization under kQuantizeActivations, the GEMM under kGemmW4A4. A caller that already
  // times the whole Forward under kernel_kind() leaves it unset. Not owned.
  void set_kernel_timer(KernelTimer* timer) { timer_ = timer; }

 private:
  W4A4Linear(const W4A4LinearConfig& config, std::vector<uint8_t> packed_weights,
             std::vector<float> weight_scales, ThreadPool* pool, W4A4OutlierChannels outliers);

  // y += the INT8 product of the outlier channels, quantized by Forward into the scratch.
  void AddOutlierProducts(const int8_t* x_q8, const float* x_scales, int64_t m, float* y) const;

  W4A4LinearConfig config_;
  std::vector<uint8_t> packed_weights_;
  std::vector<float> weight_scales_;
  W4A4Operand weights_;
  W4A4OutlierChannels outliers_;
  ThreadPool* pool_;
  KernelTimer* timer_ = nullptr;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_W4A4_LINEAR_H_
