#include "engine/llama_ops.h"

#include <cmath>

namespace apex4 {

void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
             float* y) {
  for (int64_t r = 0; r < rows; ++r, x += dim, y += dim) {
    double sum_squares = 0;
    for (int64_t i = 0; i < dim; ++i) sum_squares += double{x[i]} * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_squares / dim + eps));
    for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * scale * weight[i];
  }
}

void ApplyRope(float* x, int num_heads, int head_dim, int32_t position, float theta) {
  for (int i = 0; i < head_dim / 2; ++i) {
    const double angle =
        position * std::pow(double{theta}, -2.0 * i / static_cast<double>(head_dim));
    const float cos_angle = static_cast<float>(std::cos(angle));
    const float sin_angle = static_cast<float>(std::sin(angle));
    for (int h = 0; h < num_heads; ++h) {
      float* pair = x + h * head_dim + 2 * i;
      const float x0 = pair[0];
      const float x1 = pair[1];
      pair[0] = x0 * cos_angle - x1 * sin_angle;
      pair[1] = x0 * sin_angle + x1 * cos_angle;
    }
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void AddInPlace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace apex4
