#include "kernels/cpu/w4a4_reference.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

namespace apex4 {
namespace {

absl::Status ValidateOperand(const W4A4Operand& op, const char* name) {
  if (op.packed == nullptr || op.scales == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": null data or scales"));
  }
  if (op.rows <= 0 || op.k <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": rows and k must be positive, got ", op.rows, " x ", op.k));
  }
  if (op.k % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": k=", op.k, " is odd"));
  }
  if (op.group_size <= 0 || op.k % op.group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": group_size=", op.group_size, " does not divide k=", op.k));
  }
  return absl::OkStatus();
}

int Element(const W4A4Operand& op, int64_t row, int64_t k) {
  return UnpackInt4(op.packed[row * PackedRowBytes(op.k) + k / 2], (k & 1) != 0);
}

}  // namespace

absl::Status ValidateW4A4Operands(const W4A4Operand& x, const W4A4Operand& w) {
  if (auto s = ValidateOperand(x, "activations"); !s.ok()) return s;
  if (auto s = ValidateOperand(w, "weights"); !s.ok()) return s;
  if (x.k != w.k) {
    return absl::InvalidArgumentError(
        absl::StrCat("K mismatch: activations have ", x.k, ", weights ", w.k));
  }
  const int fine = std::min(x.group_size, w.group_size);
  const int coarse = std::max(x.group_size, w.group_size);
  if (coarse % fine != 0) {
    return absl::InvalidArgumentError(absl::StrCat("group sizes ", x.group_size, " and ",
                                                   w.group_size, " do not nest"));
  }
  return absl::OkStatus();
}

absl::Status QuantizeInt4Reference(const float* x, int64_t rows, int64_t k, int group_size,
                                   float clip_ratio, uint8_t* packed, float* scales) {
  if (x == nullptr || packed == nullptr || scales == nullptr) {
    return absl::InvalidArgumentError("quantize: null pointer");
  }
  if (rows <= 0 || k <= 0 || k % 2 != 0 || group_size <= 0 || k % group_size != 0 ||
      group_size % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("quantize: bad shape rows=", rows, " k=", k,
                                                   " group_size=", group_size));
  }
  if (!(clip_ratio > 0.0f && clip_ratio <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("quantize: clip_ratio=", clip_ratio,
                                                   " outside (0, 1]"));
  }
  const int64_t groups = k / group_size;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const float* src = x + r * k + g * group_size;
      float absmax = 0.0f;
      for (int i = 0; i < group_size; ++i) absmax = std::max(absmax, std::fabs(src[i]));
      const float clipped = clip_ratio * absmax;
      const float inv_scale = clipped > 0.0f ? kInt4SymmetricMax / clipped : 0.0f;
      scales[r * groups + g] = clipped / kInt4SymmetricMax;
      uint8_t* dst = packed + r * PackedRowBytes(k) + g * group_size / 2;
      for (int i = 0; i < group_size; i += 2) {
        auto quantize = [&](float v) {
          const float q = std::nearbyint(v * inv_scale);
          return static_cast<int>(std::clamp(q, -float(kInt4SymmetricMax),
                                             float(kInt4SymmetricMax)));
        };
        dst[i / 2] = PackInt4Pair(quantize(src[i]), quantize(src[i + 1]));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status W4A4GemmInt32Reference(const W4A4Operand& x, const W4A4Operand& w, int group_size,
                                    int32_t* partials) {
  if (auto s = ValidateW4A4Operands(x, w); !s.ok()) return s;
  if (partials == nullptr || group_size <= 0 || x.group_size % group_size != 0 ||
      w.group_size % group_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("int32 reference: group_size=", group_size, " must divide ", x.group_size,
                     " and ", w.group_size));
  }
  const int64_t groups = x.k / group_size;
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t n = 0; n < w.rows; ++n) {
      for (int64_t g = 0; g < groups; ++g) {
        int32_t acc = 0;
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
          acc += Element(x, m, k) * Element(w, n, k);
        }
        partials[(m * w.rows + n) * groups + g] = acc;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status W4A4GemmReference(const W4A4Operand& x, const W4A4Operand& w, float* y) {
  if (auto s = ValidateW4A4Operands(x, w); !s.ok()) return s;
  if (y == nullptr) return absl::InvalidArgumentError("gemm: null output");
  const int fine = std::min(x.group_size, w.group_size);
  const int64_t groups = x.k / fine;
  std::vector<int32_t> partials(x.rows * w.rows * groups);
  if (auto s = W4A4GemmInt32Reference(x, w, fine, partials.data()); !s.ok()) return s;
  for (int64_t m = 0; m < x.rows; ++m) {
    for (int64_t n = 0; n < w.rows; ++n) {
      double acc = 0.0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t k0 = g * fine;
        const double sx = x.scales[m * x.groups() + k0 / x.group_size];
        const double sw = w.scales[n * w.groups() + k0 / w.group_size];
        acc += sx * sw * partials[(m * w.rows + n) * groups + g];
      }
      y[m * w.rows + n] = static_cast<float>(acc);
    }
  }
  return absl::OkStatus();
}

}  // namespace apex4
