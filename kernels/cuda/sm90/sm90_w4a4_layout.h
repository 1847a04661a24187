// The sm90 W4A4 GEMM's prepacked weight layout, shared by the host prepack and the kernel.
//
// Weights are cut into chunks of 128 channels × 128 K (one per CTA tile and pipeline stage),
// stored [n/128][k/128] as 8 KB each. Inside a chunk: [consumer warpgroup 2][unit 2][thread 128]
// [16 bytes]; one 16-byte unit holds a thread's wgmma A fragments for two k32 steps (2u, 2u+1):
// 32-bit word q packs fragment register a_q of step 2u in its low nibbles and of step 2u+1 in
// its high nibbles, so `(w << 4) & 0xF0F0F0F0` and `w & 0xF0F0F0F0` are the two int8 registers.
// Group-128 weight scales are stored [n/128][k/128][128] so that one bulk copy brings a stage's.
#ifndef APEX4_KERNELS_CUDA_SM90_SM90_W4A4_LAYOUT_H_
#define APEX4_KERNELS_CUDA_SM90_SM90_W4A4_LAYOUT_H_

namespace apex4::cuda::sm90 {

inline constexpr int kBlockM = 128;  // channels per CTA: two consumer warpgroups × 64
inline constexpr int kBlockK = 128;  // K per stage: one group-128, one 128-byte swizzle row
inline constexpr int kWeightChunkBytes = kBlockM * kBlockK / 2;

// The K order inside shared memory and fragments: int8 position p of each 8-wide block holds
// canonical element 2p (p < 4) or 2(p - 4) + 1 (p >= 4), which is what the nibble masks give.
constexpr int CanonicalKOfInt8Position(int p) {
  const int in_block = p & 7;
  return (p & ~7) | (in_block < 4 ? 2 * in_block : 2 * (in_block - 4) + 1);
}

// wgmma m64nNk32 s8 A fragment (per warp identical to mma.sync m16n8k32): register q, byte b
// of lane `lane` in warp `warp` of the warpgroup holds row 16·warp + lane/4 + 8·(q & 1) and
// K column 4·(lane % 4) + 16·(q >> 1) + b of the 32-wide step.
constexpr int FragmentRow(int warp, int lane, int q) { return 16 * warp + lane / 4 + 8 * (q & 1); }
constexpr int FragmentCol(int lane, int q, int b) { return 4 * (lane % 4) + 16 * (q >> 1) + b; }

static_assert(CanonicalKOfInt8Position(3) == 6 && CanonicalKOfInt8Position(12) == 9, "K order");

}  // namespace apex4::cuda::sm90

#endif  // APEX4_KERNELS_CUDA_SM90_SM90_W4A4_LAYOUT_H_
