#include "kernels/cpu/cpu_isa.h"

#include <string>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

TEST(CpuIsa, ResolvedIsaIsAlwaysSupported) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Vnni, CpuIsa::kBest}) {
    const CpuIsa resolved = ResolveCpuIsa(isa);
    EXPECT_NE(resolved, CpuIsa::kBest) << CpuIsaName(isa);
    EXPECT_TRUE(CpuSupports(resolved)) << CpuIsaName(isa);
    if (CpuSupports(isa) && isa != CpuIsa::kBest) {
      EXPECT_EQ(resolved, isa);
    }
  }
  EXPECT_EQ(ResolveCpuIsa(CpuIsa::kBest), BestCpuIsa());
}

TEST(CpuIsa, BestIsAtLeastEveryOtherSupportedIsa) {
  // The enum is ordered by capability; kBest must not pick a lesser ISA than one supported.
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512Vnni}) {
    if (CpuSupports(isa)) {
      EXPECT_GE(static_cast<int>(BestCpuIsa()), static_cast<int>(isa));
    }
  }
  EXPECT_EQ(std::string(CpuIsaName(CpuIsa::kAvx512Vnni)), "avx512vnni");
}

}  // namespace
}  // namespace apex4
