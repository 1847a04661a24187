#include "engine/fp32_linear_layer.h"

#include <utility>

#include "kernels/cpu/fp32_gemm.h"

namespace apex4 {

Fp32LinearLayer::Fp32LinearLayer(std::shared_ptr<const std::vector<float>> weights,
                                 int64_t out_features, int64_t in_features, ThreadPool* pool)
    : weights_(std::move(weights)),
      out_features_(out_features),
      in_features_(in_features),
      pool_(pool) {}

void Fp32LinearLayer::Forward(const float* x, int64_t m, float* y) const {
  Fp32GemmOptions options;
  options.pool = pool_;
  Fp32Gemm(x, m, weights_->data(), out_features_, in_features_, y, options);
}

}  // namespace apex4
