// mma.sync m16n8k32 with INT8 operands and INT32 accumulators (sm_80+): d += a · b. The decode
// GEMM and the outlier-channel product share it.
#pragma once

#include <cstdint>

namespace apex4::cuda {

__device__ __forceinline__ void MmaS8(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int32_t& d0, int32_t& d1,
                                      int32_t& d2, int32_t& d3) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};"
      : "+r"(d0), "+r"(d1), "+r"(d2), "+r"(d3)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace apex4::cuda
