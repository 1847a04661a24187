#include "kernels/cuda/attention/testing/cta_emulator.h"

#include <cuda_fp16.h>
#include <ucontext.h>

#include <cfloat>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace apex4_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr size_t kSmemGuardBytes = 256;
constexpr unsigned char kSmemGuardByte = 0xA5;

struct Copy {
  void* dst;
  const void* src;
  bool valid;
};

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  uint3 thread_idx;
  bool done = false;
  std::vector<Copy> uncommitted;
  std::deque<std::vector<Copy>> groups;  // committed, oldest first
};

struct Warp {
  int arrived = 0;
  uint64_t generation = 0;
  uint32_t slots[32][8];
};

struct Block {
  uint3 block_idx;
  int cluster_rank = 0;
  dim3 grid;
  dim3 block;
  std::vector<unsigned char> smem;  // dynamic shared memory, then a guard
  size_t smem_bytes = 0;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  int arrived = 0;
  uint64_t generation = 0;
  int alive = 0;
  int current = -1;
  uint64_t progress = 0;
  ucontext_t scheduler;
  const std::function<void()>* kernel = nullptr;
};

// The CTAs of one thread block cluster, run together; their threads share a cluster barrier.
struct Cluster {
  std::vector<Block> blocks;
  int threads = 0;  // in all its blocks
  int arrived = 0;
  uint64_t generation = 0;
};

Block* g_block = nullptr;  // the block of the running thread
Cluster* g_cluster = nullptr;
std::map<uintptr_t, size_t> g_allocations;
LaunchStats g_stats;
std::mt19937 g_schedule_rng(12345);  // warp speeds; fixed seed, so runs are reproducible

[[noreturn]] void Fail(const char* format, ...) {
  std::fflush(stdout);
  std::fprintf(stderr, "EMULATOR FAIL");
  if (g_block != nullptr && g_block->current >= 0) {
    const uint3 b = g_block->block_idx;
    const uint3 t = g_block->fibers[g_block->current].thread_idx;
    std::fprintf(stderr, " (block %u,%u,%u thread %u)", b.x, b.y, b.z, t.x);
  }
  std::fprintf(stderr, ": ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::_Exit(3);
}

Block& B() {
  if (g_block == nullptr || g_block->current < 0) Fail("device primitive called outside a kernel");
  return *g_block;
}
Fiber& Self() { return B().fibers[B().current]; }
int LinearTid() {
  const uint3 t = Self().thread_idx;
  return static_cast<int>(t.x + B().block.x * (t.y + B().block.y * t.z));
}
Warp& MyWarp() { return B().warps[LinearTid() / 32]; }
int Lane() { return LinearTid() % 32; }

void Yield() {
  Fiber& f = Self();
  swapcontext(&f.context, &B().scheduler);
}

void ReleaseBlockBarrier() {
  Block& b = B();
  b.arrived = 0;
  ++b.generation;
  ++b.progress;
}

void WarpBarrier() {
  Warp& w = MyWarp();
  const uint64_t generation = w.generation;
  ++B().progress;
  if (++w.arrived == 32) {
    w.arrived = 0;
    ++w.generation;
  } else {
    while (w.generation == generation) Yield();
  }
}

void CheckSmem(const void* p, size_t bytes, size_t alignment, const char* what) {
  const Block& b = B();
  const auto* c = static_cast<const unsigned char*>(p);
  if (c < b.smem.data() || c + bytes > b.smem.data() + b.smem_bytes) {
    Fail("%s: shared address %p (+%zu) outside the %zu bytes of dynamic shared memory", what, p, bytes,
         b.smem_bytes);
  }
  if ((c - b.smem.data()) % alignment != 0)
    Fail("%s: shared address %p not %zu-byte aligned", what, p, alignment);
}

void RunCopies(const std::vector<Copy>& copies) {
  for (const Copy& c : copies) {
    if (c.valid) {
      std::memcpy(c.dst, c.src, 16);
    } else {
      std::memset(c.dst, 0, 16);
    }
  }
}

float HalfBits(uint32_t bits16) {
  __half_raw raw;
  raw.x = static_cast<unsigned short>(bits16 & 0xffffu);
  return __half2float(__half(raw));
}

void FiberEntry() {
  Block& b = *g_block;
  (*b.kernel)();
  Fiber& f = b.fibers[b.current];
  f.done = true;
  --b.alive;
  ++b.progress;
  // Exited threads no longer count at __syncthreads (as on sm_70+).
  if (b.arrived > 0 && b.arrived == b.alive) ReleaseBlockBarrier();
  // Returning resumes the scheduler (uc_link).
}

void RunCluster(Cluster& cluster, std::vector<std::unique_ptr<char[]>>& stacks) {
  int stack = 0;
  for (Block& b : cluster.blocks) {
    const int threads = static_cast<int>(b.block.x * b.block.y * b.block.z);
    b.fibers.clear();
    b.fibers.resize(threads);
    b.warps.assign((threads + 31) / 32, Warp{});
    for (int i = 0; i < threads; ++i) {
      Fiber& f = b.fibers[i];
      f.thread_idx =
          uint3{static_cast<unsigned>(i % b.block.x), static_cast<unsigned>(i / b.block.x % b.block.y),
                static_cast<unsigned>(i / (b.block.x * b.block.y))};
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = stacks[stack++].get();
      f.context.uc_stack.ss_size = kStackBytes;
      f.context.uc_link = &b.scheduler;
      makecontext(&f.context, &FiberEntry, 0);
    }
    b.alive = threads;
  }
  // Warps run at different speeds (a warp of period p is resumed every p-th round), so that one
  // warp can run ahead of another up to the next barrier, as on hardware: a missing barrier
  // before a shared-memory stage is reloaded then shows up as poisoned (NaN) reads.
  static constexpr int kPeriods[] = {1, 1, 2, 3, 5};
  std::vector<std::vector<int>> period(cluster.blocks.size());
  for (size_t c = 0; c < cluster.blocks.size(); ++c) {
    period[c].resize(cluster.blocks[c].warps.size());
    for (int& p : period[c]) p = kPeriods[g_schedule_rng() % 5];
  }
  auto alive = [&] {
    int n = 0;
    for (const Block& b : cluster.blocks) n += b.alive;
    return n;
  };
  auto progress = [&] {
    uint64_t n = 0;
    for (const Block& b : cluster.blocks) n += b.progress;
    return n;
  };
  int idle_rounds = 0;
  for (int64_t round = 0; alive() > 0; ++round) {
    const uint64_t before = progress();
    for (size_t c = 0; c < cluster.blocks.size(); ++c) {
      Block& b = cluster.blocks[c];
      g_block = &b;
      for (int i = 0; i < static_cast<int>(b.fibers.size()); ++i) {
        if (b.fibers[i].done || round % period[c][i / 32] != 0) continue;
        b.current = i;
        swapcontext(&b.scheduler, &b.fibers[i].context);
      }
      b.current = -1;
    }
    if (progress() == before) {
      if (++idle_rounds > 16) {
        const Block& b = cluster.blocks[0];
        Fail("deadlock in the cluster of block %u,%u,%u: a barrier or warp collective that not every thread reaches",
             b.block_idx.x, b.block_idx.y, b.block_idx.z);
      }
    } else {
      idle_rounds = 0;
    }
  }
  for (Block& b : cluster.blocks) {
    for (size_t i = 0; i < kSmemGuardBytes; ++i) {
      if (b.smem[b.smem_bytes + i] != kSmemGuardByte) {
        Fail("block %u,%u,%u wrote past its %zu bytes of dynamic shared memory", b.block_idx.x, b.block_idx.y,
             b.block_idx.z, b.smem_bytes);
      }
    }
  }
}

}  // namespace

void RegisterGlobal(const void* p, size_t bytes) { g_allocations[reinterpret_cast<uintptr_t>(p)] = bytes; }
void UnregisterGlobal(const void* p) { g_allocations.erase(reinterpret_cast<uintptr_t>(p)); }

void CheckGlobalAccess(const void* p, size_t bytes, const char* what) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % bytes != 0 && (bytes == 2 || bytes == 4 || bytes == 8 || bytes == 16)) {
    Fail("%s: global address %p not %zu-byte aligned", what, p, bytes);
  }
  auto it = g_allocations.upper_bound(a);
  if (it != g_allocations.begin()) {
    --it;
    if (a >= it->first && a + bytes <= it->first + it->second) return;
  }
  Fail("%s: global address %p (+%zu) outside every allocation", what, p, bytes);
}

void LaunchInClusters(dim3 grid, dim3 cluster_dims, dim3 block, size_t dynamic_smem_bytes,
                      const std::function<void()>& kernel) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads <= 0 || threads % 32 != 0)
    Fail("block of %d threads (the emulator wants whole warps)", threads);
  if (grid.x % cluster_dims.x != 0 || grid.y % cluster_dims.y != 0 || grid.z % cluster_dims.z != 0)
    Fail("grid %u,%u,%u is not a whole number of %u,%u,%u clusters", grid.x, grid.y, grid.z, cluster_dims.x,
         cluster_dims.y, cluster_dims.z);
  const int cluster_size = static_cast<int>(cluster_dims.x * cluster_dims.y * cluster_dims.z);
  std::vector<std::unique_ptr<char[]>> stacks(static_cast<size_t>(threads) * cluster_size);
  for (auto& s : stacks) s.reset(new char[kStackBytes]);
  g_stats = LaunchStats{};
  Cluster cluster;
  cluster.blocks.resize(cluster_size);
  cluster.threads = threads * cluster_size;
  g_cluster = &cluster;
  for (unsigned z = 0; z < grid.z; z += cluster_dims.z) {
    for (unsigned y = 0; y < grid.y; y += cluster_dims.y) {
      for (unsigned x = 0; x < grid.x; x += cluster_dims.x) {
        for (int rank = 0; rank < cluster_size; ++rank) {
          Block& b = cluster.blocks[rank];
          b.grid = grid;
          b.block = block;
          b.kernel = &kernel;
          b.cluster_rank = rank;
          b.block_idx = uint3{x + rank % cluster_dims.x, y + rank / cluster_dims.x % cluster_dims.y,
                              z + rank / (cluster_dims.x * cluster_dims.y)};
          // Shared memory starts as NaN garbage; the guard after it must survive.
          b.smem_bytes = dynamic_smem_bytes;
          b.smem.assign(dynamic_smem_bytes + kSmemGuardBytes, 0xff);
          std::memset(b.smem.data() + dynamic_smem_bytes, kSmemGuardByte, kSmemGuardBytes);
          b.arrived = 0;
          b.generation = 0;
          b.progress = 0;
          b.current = -1;
        }
        cluster.arrived = 0;
        cluster.generation = 0;
        RunCluster(cluster, stacks);
        g_stats.blocks += cluster_size;
      }
    }
  }
  g_block = nullptr;
  g_cluster = nullptr;
}

void Launch(dim3 grid, dim3 block, size_t dynamic_smem_bytes, const std::function<void()>& kernel) {
  LaunchInClusters(grid, dim3(1, 1, 1), block, dynamic_smem_bytes, kernel);
}

LaunchStats LastLaunchStats() { return g_stats; }

uint3 ThreadIdx() { return Self().thread_idx; }
uint3 BlockIdx() { return B().block_idx; }
dim3 GridDim() { return B().grid; }
void* DynamicSmem() { return B().smem.data(); }

void SyncThreads() {
  Block& b = B();
  const uint64_t generation = b.generation;
  ++b.progress;
  if (++b.arrived == b.alive) {
    ReleaseBlockBarrier();
  } else {
    while (b.generation == generation) Yield();
  }
}

int ClusterRank() { return B().cluster_rank; }

void ClusterSync() {
  Cluster& c = *g_cluster;
  const uint64_t generation = c.generation;
  ++B().progress;
  if (++c.arrived == c.threads) {
    c.arrived = 0;
    ++c.generation;
  } else {
    while (c.generation == generation) Yield();
  }
}

const void* PeerSmem(const void* p, size_t bytes, int rank) {
  CheckSmem(p, bytes, bytes, "mapa");
  Cluster& c = *g_cluster;
  if (rank < 0 || rank >= static_cast<int>(c.blocks.size()))
    Fail("mapa: rank %d outside the cluster of %zu blocks", rank, c.blocks.size());
  const Block& peer = c.blocks[rank];
  if (peer.alive == 0) Fail("mapa: block of rank %d has exited (its shared memory is gone)", rank);
  return peer.smem.data() + (static_cast<const unsigned char*>(p) - B().smem.data());
}

float ShflXor(float v, int lane_mask) {
  Warp& w = MyWarp();
  const int lane = Lane();
  std::memcpy(&w.slots[lane][0], &v, 4);
  WarpBarrier();
  float r;
  std::memcpy(&r, &w.slots[lane ^ lane_mask][0], 4);
  WarpBarrier();
  return r;
}

int ShflIdx(int v, int src_lane) {
  Warp& w = MyWarp();
  const int lane = Lane();
  if (src_lane < 0 || src_lane > 31) Fail("shfl.idx from lane %d", src_lane);
  w.slots[lane][0] = static_cast<uint32_t>(v);
  WarpBarrier();
  const int r = static_cast<int>(w.slots[src_lane][0]);
  WarpBarrier();
  return r;
}

void CpAsync16(void* smem_dst, const void* global_src, bool valid) {
  CheckSmem(smem_dst, 16, 16, "cp.async destination");
  if (valid) CheckGlobalAccess(global_src, 16, "cp.async source");
  std::memset(smem_dst, 0xff, 16);  // poison until the group completes
  Self().uncommitted.push_back(Copy{smem_dst, global_src, valid});
  ++g_stats.cp_async;
}

void CpAsyncCommit() {
  Fiber& f = Self();
  f.groups.push_back(std::move(f.uncommitted));
  f.uncommitted.clear();
}

void CpAsyncWait(int pending) {
  Fiber& f = Self();
  while (static_cast<int>(f.groups.size()) > pending) {
    RunCopies(f.groups.front());
    f.groups.pop_front();
  }
}

void LdMatrixX4(uint32_t (&r)[4], const void* smem_row_address, bool trans) {
  CheckSmem(smem_row_address, 16, 16, trans ? "ldmatrix.trans row" : "ldmatrix row");
  Warp& w = MyWarp();
  const int lane = Lane();
  const uintptr_t a = reinterpret_cast<uintptr_t>(smem_row_address);
  w.slots[lane][0] = static_cast<uint32_t>(a);
  w.slots[lane][1] = static_cast<uint32_t>(a >> 32);
  WarpBarrier();
  auto row_ptr = [&](int src_lane) {
    const uintptr_t p = uintptr_t{w.slots[src_lane][0]} | (uintptr_t{w.slots[src_lane][1]} << 32);
    return reinterpret_cast<const uint16_t*>(p);
  };
  for (int m = 0; m < 4; ++m) {
    uint16_t lo, hi;
    if (!trans) {
      // Thread t holds row t/4, columns 2(t%4), 2(t%4)+1 of matrix m (rows addressed by lanes 8m..8m+7).
      const uint16_t* row = row_ptr(8 * m + lane / 4);
      lo = row[2 * (lane % 4)];
      hi = row[2 * (lane % 4) + 1];
    } else {
      // Transposed: thread t holds rows 2(t%4), 2(t%4)+1 of column t/4.
      lo = row_ptr(8 * m + 2 * (lane % 4))[lane / 4];
      hi = row_ptr(8 * m + 2 * (lane % 4) + 1)[lane / 4];
    }
    r[m] = uint32_t{lo} | (uint32_t{hi} << 16);
  }
  WarpBarrier();
}

// Publishes this lane's mma fragments (slots 0-3: A, 4-5: B) and waits until every lane's are
// there. The caller reads them, then calls WarpBarrier before the slots are reused.
Warp& ShareMmaFragments(const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Warp& w = MyWarp();
  const int lane = Lane();
  for (int i = 0; i < 4; ++i) w.slots[lane][i] = a[i];
  w.slots[lane][4] = b0;
  w.slots[lane][5] = b1;
  WarpBarrier();
  return w;
}

void MmaF16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  Warp& w = ShareMmaFragments(a, b0, b1);
  const int lane = Lane();
  // A: 16×16 row-major, B: 16(k)×8(n), from every lane's fragments (PTX ISA, m16n8k16 .f16).
  float A[16][16], Bm[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const uint32_t* s = w.slots[l];
    for (int h = 0; h < 2; ++h) {
      const int shift = 16 * h;
      A[g][2 * t + h] = HalfBits(s[0] >> shift);
      A[g + 8][2 * t + h] = HalfBits(s[1] >> shift);
      A[g][2 * t + 8 + h] = HalfBits(s[2] >> shift);
      A[g + 8][2 * t + 8 + h] = HalfBits(s[3] >> shift);
      Bm[2 * t + h][g] = HalfBits(s[4] >> shift);
      Bm[2 * t + 8 + h][g] = HalfBits(s[5] >> shift);
    }
  }
  const int g = lane / 4, t = lane % 4;
  const int rows[4] = {g, g, g + 8, g + 8};
  const int cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    float sum = c[i];
    for (int k = 0; k < 16; ++k) sum += A[rows[i]][k] * Bm[k][cols[i]];
    c[i] = sum;
  }
  if (lane == 0) ++g_stats.mma;
  WarpBarrier();
}

void MmaS8(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1, bool signed_b) {
  Warp& w = ShareMmaFragments(a, b0, b1);
  const int lane = Lane();
  // A: 16×32 row-major s8, B: 32(k)×8(n), four 8-bit elements a register (PTX ISA, m16n8k32 .u8/.s8).
  int32_t A[16][32], Bm[32][8];
  auto element = [](uint32_t reg, int i, bool is_signed) {
    const uint32_t byte = (reg >> (8 * i)) & 0xffu;
    return is_signed ? static_cast<int32_t>(static_cast<int8_t>(byte)) : static_cast<int32_t>(byte);
  };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const uint32_t* s = w.slots[l];
    for (int i = 0; i < 4; ++i) {
      A[g][4 * t + i] = element(s[0], i, true);
      A[g + 8][4 * t + i] = element(s[1], i, true);
      A[g][4 * t + 16 + i] = element(s[2], i, true);
      A[g + 8][4 * t + 16 + i] = element(s[3], i, true);
      Bm[4 * t + i][g] = element(s[4], i, signed_b);
      Bm[4 * t + 16 + i][g] = element(s[5], i, signed_b);
    }
  }
  const int g = lane / 4, t = lane % 4;
  const int rows[4] = {g, g, g + 8, g + 8};
  const int cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    int64_t sum = c[i];
    for (int k = 0; k < 32; ++k) sum += int64_t{A[rows[i]][k]} * Bm[k][cols[i]];
    if (sum > INT32_MAX || sum < INT32_MIN) Fail("mma.sync s32 accumulator overflow");
    c[i] = static_cast<int32_t>(sum);
  }
  if (lane == 0) ++g_stats.mma;
  WarpBarrier();
}

void SyncWarp() { WarpBarrier(); }

bool AnyInWarp(bool predicate) {
  Warp& w = MyWarp();
  const int lane = Lane();
  w.slots[lane][0] = predicate ? 1 : 0;
  WarpBarrier();
  bool any = false;
  for (int l = 0; l < 32; ++l) any = any || w.slots[l][0] != 0;
  WarpBarrier();
  return any;
}

float Exp2(float x) {
  const float y = std::exp2(x);
  return y < FLT_MIN ? 0.0f : y;
}

}  // namespace apex4_emu
