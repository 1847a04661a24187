// The CTA emulator's thread block clusters (testing/cta_emulator.h), which the INT4 decode
// attention's split-KV merge relies on: blocks of a cluster run together, meet at the cluster
// barrier and read each other's shared memory (mapa); a barrier some thread never reaches and a
// read of an exited block's shared memory are reported (the emulator exits with status 3).
#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/cuda/attention/attention_primitives.cuh"
#include "kernels/cuda/attention/testing/cta_emulator.h"

namespace apex4::cuda::attention {
namespace {

constexpr int kThreads = 64;

// out[block] = Σ over the cluster's blocks r of (r + 1) · (thread count), each block's share
// written by its threads into its own shared memory and read by every peer after the barrier.
void SumOverCluster(int32_t* out, int cluster_size) {
  auto* mine = reinterpret_cast<int32_t*>(prim::DynamicSmem());
  mine[prim::ThreadIdx().x] = prim::ClusterRank() + 1;
  prim::ClusterSync();
  if (prim::ThreadIdx().x == 0) {
    int32_t total = 0;
    for (int r = 0; r < cluster_size; ++r) {
      const int32_t* theirs = prim::PeerSmem(mine, r);
      for (int t = 0; t < kThreads; ++t) total += theirs[t];
    }
    const uint3 b = prim::BlockIdx();
    prim::Store(out + b.x + prim::GridDim().x * b.z, total);
  }
  prim::ClusterSync();  // peers' shared memory stays until every block has read it
}

std::vector<int32_t> RunSum(dim3 grid, dim3 cluster) {
  std::vector<int32_t> out(grid.x * grid.z, -1);
  apex4_emu::RegisterGlobal(out.data(), out.size() * sizeof(int32_t));
  const int size = static_cast<int>(cluster.x * cluster.y * cluster.z);
  apex4_emu::LaunchInClusters(grid, cluster, dim3(kThreads), kThreads * sizeof(int32_t),
                              [&] { SumOverCluster(out.data(), size); });
  apex4_emu::UnregisterGlobal(out.data());
  return out;
}

TEST(CtaEmulatorClusters, PeersSeeEachOthersSharedMemoryAfterTheBarrier) {
  for (const unsigned size : {1u, 2u, 4u, 8u}) {
    // Clusters along z, as the decode attention launches them: (1, 1, size) in a (3, 1, 8) grid.
    const std::vector<int32_t> out = RunSum(dim3(3, 1, 8), dim3(1, 1, size));
    const int32_t want = kThreads * static_cast<int32_t>(size * (size + 1) / 2);
    for (size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], want) << "cluster size " << size << " block " << i;
  }
}

TEST(CtaEmulatorClusters, ReadingAnExitedPeerIsReported) {
  // The last rank reads rank 0 without a second cluster barrier, after enough barriers of its
  // own that every other block has been scheduled past its exit (warps run every 1-5 rounds).
  auto kernel = [] {
    auto* mine = reinterpret_cast<int32_t*>(prim::DynamicSmem());
    mine[prim::ThreadIdx().x] = 1;
    prim::ClusterSync();
    if (prim::ClusterRank() != 3) return;
    for (int i = 0; i < 10; ++i) prim::SyncThreads();
    if (prim::ThreadIdx().x == 0) mine[0] = *prim::PeerSmem(mine, 0);
  };
  EXPECT_EXIT(apex4_emu::LaunchInClusters(dim3(1, 1, 4), dim3(1, 1, 4), dim3(kThreads), kThreads * sizeof(int32_t),
                                          kernel),
              ::testing::ExitedWithCode(3), "has exited");
}

TEST(CtaEmulatorClusters, ABarrierSomeThreadSkipsDeadlocks) {
  auto kernel = [] {
    if (prim::ClusterRank() == 1 && prim::ThreadIdx().x == 5) return;  // never arrives
    prim::ClusterSync();
  };
  EXPECT_EXIT(apex4_emu::LaunchInClusters(dim3(2), dim3(2), dim3(kThreads), 0, kernel), ::testing::ExitedWithCode(3),
              "deadlock");
}

TEST(CtaEmulatorClusters, AGridThatIsNotWholeClustersIsRefused) {
  EXPECT_EXIT(apex4_emu::LaunchInClusters(dim3(1, 1, 6), dim3(1, 1, 4), dim3(kThreads), 0, [] {}),
              ::testing::ExitedWithCode(3), "whole number");
}

}  // namespace
}  // namespace apex4::cuda::attention
