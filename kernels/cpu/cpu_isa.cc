#include "kernels/cpu/cpu_isa.h"

namespace apex4 {

const char* CpuIsaName(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
      return "scalar";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512Vnni:
      return "avx512vnni";
    case CpuIsa::kBest:
      return "best";
  }
  return "unknown";
}

bool CpuSupports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar:
    case CpuIsa::kBest:
      return true;
    case CpuIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CpuIsa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

CpuIsa BestCpuIsa() {
  static const CpuIsa best = [] {
    if (CpuSupports(CpuIsa::kAvx512Vnni)) return CpuIsa::kAvx512Vnni;
    if (CpuSupports(CpuIsa::kAvx2)) return CpuIsa::kAvx2;
    return CpuIsa::kScalar;
  }();
  return best;
}

CpuIsa ResolveCpuIsa(CpuIsa requested) {
  if (requested == CpuIsa::kBest) return BestCpuIsa();
  if (requested == CpuIsa::kAvx512Vnni && !CpuSupports(requested)) requested = CpuIsa::kAvx2;
  if (requested == CpuIsa::kAvx2 && !CpuSupports(requested)) requested = CpuIsa::kScalar;
  return requested;
}

}  // namespace apex4
