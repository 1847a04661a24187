// AVX2 microkernels of the W4A4 GEMM: the shared tile over Avx2Block (w4a4_gemm_internal.h).
#include <immintrin.h>

#include "kernels/cpu/w4a4_gemm_internal.h"

namespace apex4 {
namespace w4a4_internal {
namespace {

#define APEX4_W4A4_TILE_TARGET APEX4_TARGET_AVX2
#include "kernels/cpu/w4a4_gemm_tile.inc"
#undef APEX4_W4A4_TILE_TARGET

struct Avx2Kernel {
  // MR × NR float accumulators plus one row's four unpacked registers fit the 16 ymm registers.
  static constexpr int kMaxRows = 2;

  template <int MR, int NR, Epilogue kEpilogue>
  static void Tile(const GemmProblem& p, int64_t m0, int64_t n0) {
    BlockTile<Avx2Block, MR, NR, kEpilogue>(p, m0, n0);
  }
};

}  // namespace

void GemmRangeAvx2(const GemmProblem& p, int64_t n_begin, int64_t n_end) {
  RunTiles<Avx2Kernel>(p, n_begin, n_end);
}

}  // namespace w4a4_internal
}  // namespace apex4
