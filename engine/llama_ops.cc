#include "engine/llama_ops.h"

#include <cmath>
#include <vector>

#include "engine/status_macros.h"
#include "kernels/cpu/w4a4_reference.h"
#include "kernels/w4a4_format.h"

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

absl::Status QuantizeDequantizeInt4Rows(float* x, int64_t rows, int dim, float clip_ratio) {
  if (rows <= 0) return absl::OkStatus();
  std::vector<uint8_t> codes(rows * PackedRowBytes(dim));
  std::vector<float> scales(rows);
  RETURN_IF_ERROR(QuantizeInt4Reference(x, rows, dim, /*group_size=*/dim, clip_ratio,
                                        codes.data(), scales.data()));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row_codes = &codes[r * PackedRowBytes(dim)];
    float* row = x + r * dim;
    for (int i = 0; i < dim; ++i) {
      row[i] = static_cast<float>(UnpackInt4(row_codes[i / 2], (i & 1) != 0)) * scales[r];
    }
  }
  return absl::OkStatus();
}

}  // namespace apex4
