#include "kernels/cuda/sm90/sm90_w4a4_prepack.h"

#include "kernels/cuda/sm90/sm90_w4a4_layout.h"

namespace apex4::cuda {

CudaStatus PrepackSm90W4A4Weights(const W4A4Operand& w, uint8_t* packed, float* scales) {
  using namespace sm90;  // NOLINT: layout constants
  APEX4_CUDA_CHECK_ARG(w.packed != nullptr && w.scales != nullptr && packed && scales);
  APEX4_CUDA_CHECK_ARG(w.rows > 0 && w.rows % kBlockM == 0 && w.k > 0 && w.k % kBlockK == 0);
  APEX4_CUDA_CHECK_ARG(w.group_size == w.k || w.group_size == kBlockK);
  const int64_t k_chunks = w.k / kBlockK;
  const int64_t row_bytes = PackedRowBytes(w.k);
  auto element = [&](int64_t row, int64_t k) {
    return UnpackInt4(w.packed[row * row_bytes + k / 2], (k & 1) != 0);
  };
  for (int64_t tile = 0; tile < w.rows / kBlockM; ++tile) {
    for (int64_t chunk = 0; chunk < k_chunks; ++chunk) {
      uint8_t* out = packed + (tile * k_chunks + chunk) * kWeightChunkBytes;
      for (int wg = 0; wg < 2; ++wg) {
        for (int unit = 0; unit < 2; ++unit) {
          for (int t = 0; t < 128; ++t) {
            for (int q = 0; q < 4; ++q) {
              const int64_t row = tile * kBlockM + wg * 64 + FragmentRow(t / 32, t % 32, q);
              for (int b = 0; b < 4; ++b) {
                // Low nibble: k32 step 2·unit; high nibble: step 2·unit + 1.
                const int col = FragmentCol(t % 32, q, b);
                const int64_t k_lo = chunk * kBlockK + CanonicalKOfInt8Position(64 * unit + col);
                const int64_t k_hi = chunk * kBlockK + CanonicalKOfInt8Position(64 * unit + 32 + col);
                out[((wg * 2 + unit) * 128 + t) * 16 + q * 4 + b] =
                    PackInt4Pair(element(row, k_lo), element(row, k_hi));
              }
            }
          }
        }
      }
    }
  }
  if (w.group_size == w.k) {
    for (int64_t r = 0; r < w.rows; ++r) scales[r] = w.scales[r];
  } else {
    for (int64_t r = 0; r < w.rows; ++r) {
      for (int64_t chunk = 0; chunk < k_chunks; ++chunk) {
        scales[((r / kBlockM) * k_chunks + chunk) * kBlockM + r % kBlockM] = w.scales[r * k_chunks + chunk];
      }
    }
  }
  return OkCudaStatus();
}

}  // namespace apex4::cuda
