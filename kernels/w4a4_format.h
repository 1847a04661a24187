// The one declaration of apex4's 4-bit operand format, shared by the quantizer's checkpoint
// writer, the loader, the CPU kernels, the CUDA kernels and their tests.
//
// A W4A4 linear layer computes Y[M, N] = X[M, K] · W[N, K]^T where both X (activations, one row
// per token) and W (weights, one row per output channel) are symmetric INT4 with float scales:
//
//   Y[m, n] = Σ_g  sx[m, g] · sw[n, g] · Σ_{k ∈ group g} qx[m, k] · qw[n, k]
//
// Canonical packed layout ("rows × K int4", the interchange format):
//   - row-major, K/2 bytes per row; element k of a row lives in byte k/2, even k in the low
//     nibble, odd k in the high nibble; each nibble is two's-complement int4 (-8..7);
//   - quantizers emit only -7..7 (symmetric), kernels accept the whole -8..7 range;
//   - K is a multiple of kPackAlignK (layers whose K is not are zero-padded along K by the
//     quantizer; padded weights and activations are 0, so they add nothing);
//   - scales are float32, row-major [rows, K / group_size]; group_size == K is per-channel
//     (weights) or per-token (activations).
// Kernels may re-layout this offline (e.g. the Hopper GEMM's pre-shuffled weights); such layouts
// are produced from this one by a function beside the kernel.
#ifndef APEX4_KERNELS_W4A4_FORMAT_H_
#define APEX4_KERNELS_W4A4_FORMAT_H_

#include <cstdint>

namespace apex4 {

inline constexpr int kInt4Min = -8;
inline constexpr int kInt4Max = 7;
// Largest magnitude a symmetric quantizer emits: scale = absmax / kInt4SymmetricMax.
inline constexpr int kInt4SymmetricMax = 7;
inline constexpr int kGroupSize128 = 128;
// Every packed K is a multiple of this (one group-128 block), so each granularity divides it.
inline constexpr int kPackAlignK = 128;

// Weight or activation granularity along K.
enum class Granularity : int32_t {
  kPerChannel = 0,  // one scale per row (per output channel, or per token)
  kGroup128 = 1,    // one scale per row per 128 consecutive K elements
};

inline constexpr int GroupSizeFor(Granularity g, int64_t k) {
  return g == Granularity::kGroup128 ? kGroupSize128 : static_cast<int>(k);
}

inline constexpr int64_t PackedRowBytes(int64_t k) { return k / 2; }

// Two int4 values in one byte: `low` at even k, `high` at odd k.
inline constexpr uint8_t PackInt4Pair(int low, int high) {
  return static_cast<uint8_t>((low & 0xF) | ((high & 0xF) << 4));
}
// Sign-extends one nibble: 0x8..0xF map to -8..-1.
inline constexpr int UnpackInt4(uint8_t byte, bool high) {
  const int nibble = high ? (byte >> 4) : (byte & 0xF);
  return nibble >= 8 ? nibble - 16 : nibble;
}

static_assert(PackInt4Pair(-8, 7) == 0x78, "low nibble holds the even element");
static_assert(UnpackInt4(0x78, false) == -8 && UnpackInt4(0x78, true) == 7, "sign extension");
static_assert(UnpackInt4(PackInt4Pair(-1, -7), true) == -7, "round trip");
static_assert(kPackAlignK % kGroupSize128 == 0, "a packed K holds whole groups");
static_assert(PackedRowBytes(kPackAlignK) * 2 == kPackAlignK, "two elements per byte");

// A read-only view of one packed operand (weights or quantized activations).
struct W4A4Operand {
  const uint8_t* packed = nullptr;  // rows × K/2 bytes, canonical layout above
  const float* scales = nullptr;    // rows × (K / group_size)
  int64_t rows = 0;
  int64_t k = 0;
  int group_size = 0;               // divides k; == k for per-channel / per-token

  int64_t groups() const { return group_size > 0 ? k / group_size : 0; }
};

}  // namespace apex4

#endif  // APEX4_KERNELS_W4A4_FORMAT_H_
