// A small fork-join pool for the CPU kernels: ParallelFor splits a range over the pool's worker
// threads and the calling thread, and returns when all of it is done. Decode-time GEMMs last
// tens of microseconds, so idle workers spin briefly before sleeping: a futex wake-up per call
// would cost as much as the work.
#ifndef APEX4_KERNELS_CPU_THREAD_POOL_H_
#define APEX4_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace apex4 {

// Thread-safety: ParallelFor may be called from any thread; concurrent calls run one after the
// other. `fn` must not call ParallelFor on the same pool (that would deadlock).
class ThreadPool {
 public:
  // `num_threads` counts the caller: 1 runs everything inline, 2 adds one worker thread.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n); each chunk's bounds are multiples
  // of `grain` (except the end of the range). Chunks are handed out dynamically, so a thread
  // slowed by a neighbour on the core does not hold up the others.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  void RunChunks();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time

  // The current job; written by the caller before generation_ is bumped (release).
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t chunk_ = 0;
  std::atomic<int64_t> next_begin_{0};
  std::atomic<int> busy_workers_{0};

  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_THREAD_POOL_H_
