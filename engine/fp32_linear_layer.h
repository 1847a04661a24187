// A full-precision linear layer over FP32 weights (the dequantized checkpoint), computed with
// the AVX2/FMA GEMM of kernels/cpu.
#ifndef APEX4_ENGINE_FP32_LINEAR_LAYER_H_
#define APEX4_ENGINE_FP32_LINEAR_LAYER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/linear_layer.h"
#include "kernels/cpu/thread_pool.h"

namespace apex4 {

class Fp32LinearLayer : public LinearLayer {
 public:
  // `weights` holds out_features rows of in_features floats; shared so that a tied LM head and
  // the token embedding use one copy. `pool` may be null (single-threaded); not owned.
  Fp32LinearLayer(std::shared_ptr<const std::vector<float>> weights, int64_t out_features,
                  int64_t in_features, ThreadPool* pool);

  int64_t in_features() const override { return in_features_; }
  int64_t out_features() const override { return out_features_; }
  void Forward(const float* x, int64_t m, float* y) const override;
  KernelKind kernel_kind() const override { return KernelKind::kGemmFp32; }

 private:
  std::shared_ptr<const std::vector<float>> weights_;
  int64_t out_features_;
  int64_t in_features_;
  ThreadPool* pool_;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_FP32_LINEAR_LAYER_H_
