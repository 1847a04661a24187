// Instruction sets the CPU kernels are built for, and which one this machine runs. The build
// targets x86-64-v2; faster variants are compiled per function (__attribute__((target))) and
// chosen at run time, with the scalar reference as the fallback everywhere.
#ifndef APEX4_KERNELS_CPU_CPU_ISA_H_
#define APEX4_KERNELS_CPU_CPU_ISA_H_

namespace apex4 {

enum class CpuIsa {
  kScalar,      // the reference kernels
  kAvx2,        // AVX2 + FMA
  kAvx512Vnni,  // AVX-512 F/BW/VL + VNNI
  kBest,        // whatever this CPU supports best (resolved by ResolveCpuIsa)
};

const char* CpuIsaName(CpuIsa isa);

// Whether this CPU can run kernels built for `isa` (kScalar and kBest: always).
bool CpuSupports(CpuIsa isa);

// The fastest instruction set this CPU supports.
CpuIsa BestCpuIsa();

// kBest becomes BestCpuIsa(); an unsupported request falls back to the best supported one
// below it, so a caller can never run an instruction this CPU lacks.
CpuIsa ResolveCpuIsa(CpuIsa requested);

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_CPU_ISA_H_
