// The device primitives the attention kernels use (PTX wrappers, thread indices, barriers), in
// one place so that the kernels' source also compiles as host C++ over a CTA emulator: with
// APEX4_ATTENTION_EMULATION defined, every primitive forwards to
// kernels/cuda/attention/testing/cta_emulator.h (fibers for threads, warp collectives by their
// PTX definitions, cp.async bounds-checked and completed at wait_group). The CPU test
// (paged_attention_emulation_test) runs the real kernels that way; the GPU build never sees it.
#ifndef APEX4_KERNELS_CUDA_ATTENTION_ATTENTION_PRIMITIVES_CUH_
#define APEX4_KERNELS_CUDA_ATTENTION_ATTENTION_PRIMITIVES_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#ifndef APEX4_ATTENTION_EMULATION
#include "kernels/cuda/programmatic_launch.cuh"
#endif
#ifdef APEX4_ATTENTION_EMULATION
#include "kernels/cuda/attention/testing/cta_emulator.h"
#ifndef __launch_bounds__
#define __launch_bounds__(...)  // host C++: __global__ and __device__ are already empty
#endif
#endif

namespace apex4::cuda::attention::prim {

#ifndef APEX4_ATTENTION_EMULATION

using SmemAddr = uint32_t;

__device__ __forceinline__ uint3 ThreadIdx() { return threadIdx; }
__device__ __forceinline__ uint3 BlockIdx() { return blockIdx; }
__device__ __forceinline__ dim3 GridDim() { return gridDim; }
__device__ __forceinline__ void SyncThreads() { __syncthreads(); }
// Programmatic dependent launch (kernels/cuda/programmatic_launch.cuh): every attention kernel
// starts with it.
__device__ __forceinline__ void StartAfterPrerequisiteGrids() { ::apex4::cuda::StartAfterPrerequisiteGrids(); }

// The CTA's dynamic shared memory.
__device__ __forceinline__ __half* DynamicSmem() {
  extern __shared__ uint4 apex4_attention_smem[];
  return reinterpret_cast<__half*>(apex4_attention_smem);
}

__device__ __forceinline__ SmemAddr ToSmem(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ int32_t Ldg(const int32_t* p) { return __ldg(p); }
// Plain global loads and stores (bounds-checked under emulation).
template <typename T>
__device__ __forceinline__ T Load(const T* p) {
  return *p;
}
template <typename T>
__device__ __forceinline__ void Store(T* p, const T& v) {
  *p = v;
}

__device__ __forceinline__ float ShflXor(float v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

// 16 bytes global → shared, bypassing L1; zero-filled (nothing read) when !valid.
__device__ __forceinline__ void CpAsync16(SmemAddr dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void LdMatrixX4(uint32_t (&r)[4], SmemAddr addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4], SmemAddr addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// c += a · b, m16n8k16, fp16 operands, fp32 accumulators.
__device__ __forceinline__ void MmaF16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// c += a · b, m16n8k32, s8 A (row) × s8 or u8 B (col), s32 accumulators (exact).
template <bool kSignedB>
__device__ __forceinline__ void MmaS8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (kSignedB) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.u8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
        "{%8, %9}, {%0, %1, %2, %3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

__device__ __forceinline__ int ShflIdx(int v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
__device__ __forceinline__ void SyncWarp() { __syncwarp(); }
__device__ __forceinline__ bool AnyInWarp(bool predicate) { return __any_sync(0xffffffffu, predicate); }
// Byte i of the result is byte selector.nibble(i) of the pair {hi, lo} (PRMT; bytes 0-3 of lo).
__device__ __forceinline__ uint32_t BytePerm(uint32_t lo, uint32_t hi, uint32_t selector) {
  return __byte_perm(lo, hi, selector);
}
// Round to nearest even, to unsigned (values here are in [0, 65535.5)).
__device__ __forceinline__ uint32_t FloatToUintRn(float x) { return __float2uint_rn(x); }

// 2^x (MUFU.EX2, relative error ~2^-22, subnormal results flushed); 2^-inf = +0.
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Thread block clusters (sm_90+; a kernel that uses these is launched in clusters only there):
// the CTA's rank in its cluster, a barrier over all its threads (shared-memory writes before it
// are visible to the whole cluster after it), and a peer CTA's copy of a shared-memory object.
__device__ __forceinline__ int ClusterRank() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  return static_cast<int>(rank);
#else
  __trap();
  return 0;
#endif
}
__device__ __forceinline__ void ClusterSync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}
template <typename T>
__device__ __forceinline__ const T* PeerSmem(const T* p, int rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint64_t peer;
  asm volatile("mapa.u64 %0, %1, %2;\n" : "=l"(peer) : "l"(reinterpret_cast<uint64_t>(p)), "r"(rank));
  return reinterpret_cast<const T*>(peer);
#else
  __trap();
  return p;
#endif
}

__device__ __forceinline__ float UintAsFloat(uint32_t u) { return __uint_as_float(u); }
__device__ __forceinline__ float MulRn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float AddRn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float SubRn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float DivRn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float Rint(float x) { return rintf(x); }  // round half to even
// Two INT4 codes held as fp16 1032 + code, or 1024 + 16 · (code + 8) (see Int4WordToHalfs in
// paged_attention_kernels.cuh) → the codes as an fp16 pair; exact either way.
__device__ __forceinline__ uint32_t UnbiasCodes(uint32_t biased_bits) {
  const __half2 codes = __hsub2(*reinterpret_cast<const __half2*>(&biased_bits), __float2half2_rn(1032.0f));
  return *reinterpret_cast<const uint32_t*>(&codes);
}
__device__ __forceinline__ uint32_t UnbiasCodesTimes16(uint32_t biased_bits) {
  const __half2 codes = __hfma2(*reinterpret_cast<const __half2*>(&biased_bits), __float2half2_rn(0.0625f),
                                __float2half2_rn(-72.0f));
  return *reinterpret_cast<const uint32_t*>(&codes);
}

#else  // APEX4_ATTENTION_EMULATION

using SmemAddr = const void*;

inline uint3 ThreadIdx() { return ::apex4_emu::ThreadIdx(); }
inline uint3 BlockIdx() { return ::apex4_emu::BlockIdx(); }
inline dim3 GridDim() { return ::apex4_emu::GridDim(); }
inline void SyncThreads() { ::apex4_emu::SyncThreads(); }
inline void StartAfterPrerequisiteGrids() {}  // the emulator runs one kernel at a time
inline __half* DynamicSmem() { return static_cast<__half*>(::apex4_emu::DynamicSmem()); }
inline SmemAddr ToSmem(const void* p) { return p; }
inline int32_t Ldg(const int32_t* p) {
  ::apex4_emu::CheckGlobalAccess(p, sizeof(int32_t), "ldg");
  return *p;
}
template <typename T>
inline T Load(const T* p) {
  ::apex4_emu::CheckGlobalAccess(p, sizeof(T), "load");
  return *p;
}
template <typename T>
inline void Store(T* p, const T& v) {
  ::apex4_emu::CheckGlobalAccess(p, sizeof(T), "store");
  *p = v;
}
inline float ShflXor(float v, int lane_mask) { return ::apex4_emu::ShflXor(v, lane_mask); }
inline void CpAsync16(SmemAddr dst, const void* src, bool valid) {
  ::apex4_emu::CpAsync16(const_cast<void*>(dst), src, valid);
}
inline void CpAsyncCommit() { ::apex4_emu::CpAsyncCommit(); }
template <int kPending>
inline void CpAsyncWait() {
  ::apex4_emu::CpAsyncWait(kPending);
}
inline void LdMatrixX4(uint32_t (&r)[4], SmemAddr addr) { ::apex4_emu::LdMatrixX4(r, addr, false); }
inline void LdMatrixX4Trans(uint32_t (&r)[4], SmemAddr addr) { ::apex4_emu::LdMatrixX4(r, addr, true); }
inline void MmaF16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::apex4_emu::MmaF16(c, a, b0, b1);
}
inline float Exp2(float x) { return ::apex4_emu::Exp2(x); }
template <bool kSignedB>
inline void MmaS8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::apex4_emu::MmaS8(c, a, b0, b1, kSignedB);
}
inline int ShflIdx(int v, int src_lane) { return ::apex4_emu::ShflIdx(v, src_lane); }
inline void SyncWarp() { ::apex4_emu::SyncWarp(); }
inline bool AnyInWarp(bool predicate) { return ::apex4_emu::AnyInWarp(predicate); }
inline uint32_t BytePerm(uint32_t lo, uint32_t hi, uint32_t selector) {
  const uint64_t bytes = (uint64_t{hi} << 32) | lo;
  uint32_t r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<uint32_t>((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xff) << (8 * i);
  return r;
}
inline uint32_t FloatToUintRn(float x) { return static_cast<uint32_t>(std::nearbyint(x)); }

inline int ClusterRank() { return ::apex4_emu::ClusterRank(); }
inline void ClusterSync() { ::apex4_emu::ClusterSync(); }
template <typename T>
inline const T* PeerSmem(const T* p, int rank) {
  return static_cast<const T*>(::apex4_emu::PeerSmem(p, sizeof(T), rank));
}

inline float UintAsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float MulRn(float a, float b) { return a * b; }
inline float AddRn(float a, float b) { return a + b; }
inline float SubRn(float a, float b) { return a - b; }
inline float DivRn(float a, float b) { return a / b; }
inline float Rint(float x) { return std::nearbyint(x); }  // default rounding: half to even
inline float HalfBitsToFloat(uint16_t bits) {
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}
inline uint16_t FloatToHalfBits(float x) {
  const __half h = __float2half_rn(x);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}
inline uint32_t UnbiasCodes(uint32_t biased_bits) {
  auto unbias = [](uint32_t bits) { return uint32_t{FloatToHalfBits(HalfBitsToFloat(bits) - 1032.0f)}; };
  return unbias(biased_bits & 0xffff) | (unbias(biased_bits >> 16) << 16);
}
inline uint32_t UnbiasCodesTimes16(uint32_t biased_bits) {
  auto unbias = [](uint32_t bits) { return uint32_t{FloatToHalfBits(HalfBitsToFloat(bits) * 0.0625f - 72.0f)}; };
  return unbias(biased_bits & 0xffff) | (unbias(biased_bits >> 16) << 16);
}

#endif  // APEX4_ATTENTION_EMULATION

__host__ __device__ __forceinline__ int IMin(int a, int b) { return a < b ? a : b; }

__host__ __device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  uint32_t u;
  std::memcpy(&u, &h, 4);
  return u;
}

}  // namespace apex4::cuda::attention::prim

#endif  // APEX4_KERNELS_CUDA_ATTENTION_ATTENTION_PRIMITIVES_CUH_
