// A CPU emulator of one CUDA thread block (or thread block cluster) at a time, enough to run the attention kernels' real
// source (kernels/cuda/attention/*.cuh compiled as host C++ with APEX4_ATTENTION_EMULATION) on a
// machine without a GPU:
//
// - every thread is a fiber (ucontext) on one OS thread, scheduled round-robin; __syncthreads
//   and the warp collectives are barriers (a collective that not all 32 lanes reach, or a barrier
//   not every live thread reaches, is reported as a deadlock);
// - a cluster's blocks run together: its barrier waits for every thread of every block (one that
//   exited never arrives), and a peer's shared memory is reachable (mapa) while that block lives;
// - ldmatrix (.x4, .trans), mma.sync m16n8k16 (f16 → f32) and m16n8k32 (u8 × s8/u8 → s32),
//   shfl (xor, idx) and vote.any follow their PTX fragment
//   definitions lane by lane;
// - cp.async poisons its 16 shared-memory bytes (NaN) when issued and copies them only when
//   the issuing thread's wait_group retires its group, so reading a stage too early, or reloading
//   one that another warp still reads, shows up as NaN;
// - global accesses (cp.async sources, Ldg, Load, Store) must fall inside a registered
//   allocation, shared-memory accesses inside the launch's dynamic shared memory, with the
//   alignment the instruction needs. Any violation prints the block, thread and address and exits.
//
// Not modelled: timing, concurrency between CTAs of different clusters (clusters run one after
// another), L1/L2, and anything the kernels do not use.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_TESTING_CTA_EMULATOR_H_
#define APEX4_KERNELS_CUDA_ATTENTION_TESTING_CTA_EMULATOR_H_

#include <cuda_runtime.h>  // uint3, dim3

#include <cstddef>
#include <cstdint>
#include <functional>

namespace apex4_emu {

// Memory the emulated kernels may touch ("device" memory is host memory here).
void RegisterGlobal(const void* p, size_t bytes);
void UnregisterGlobal(const void* p);

// Runs `kernel` once per thread of every block of `grid`, blocks in x, y, z order.
void Launch(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const std::function<void()>& kernel);
// The same with the blocks in clusters of `cluster` (each grid dimension a multiple of its).
void LaunchInClusters(dim3 grid, dim3 cluster, dim3 block, size_t dynamic_smem_bytes,
                      const std::function<void()>& kernel);

// Inside a kernel.
uint3 ThreadIdx();
uint3 BlockIdx();
dim3 GridDim();
void* DynamicSmem();
void SyncThreads();
int ClusterRank();
void ClusterSync();  // barrier.cluster arrive + wait
// mapa: the address of the `bytes` at shared address p in the cluster's block of rank `rank`.
const void* PeerSmem(const void* p, size_t bytes, int rank);
float ShflXor(float v, int lane_mask);
int ShflIdx(int v, int src_lane);
void CpAsync16(void* smem_dst, const void* global_src, bool valid);
void CpAsyncCommit();
void CpAsyncWait(int pending);
void LdMatrixX4(uint32_t (&r)[4], const void* smem_row_address, bool trans);
void MmaF16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
// mma.sync m16n8k32 s8 A × (s8 or u8) B → s32.
void MmaS8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool signed_b);
void SyncWarp();  // __syncwarp: every lane must reach it
bool AnyInWarp(bool predicate);
float Exp2(float x);  // ex2.approx.ftz: subnormal results flushed to 0
void CheckGlobalAccess(const void* p, size_t bytes, const char* what);

// Statistics of the last Launch (for tests that want to see that something ran).
struct LaunchStats {
  int64_t blocks = 0;
  int64_t mma = 0;
  int64_t cp_async = 0;
};
LaunchStats LastLaunchStats();

}  // namespace apex4_emu

#endif  // APEX4_KERNELS_CUDA_ATTENTION_TESTING_CTA_EMULATOR_H_
