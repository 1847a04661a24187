// A small fork-join pool for the CPU kernels: ParallelFor splits a range over the pool's worker
// threads and the calling thread, and returns when all of it is done. Decode-time GEMMs last
// microseconds, so idle workers spin briefly before sleeping (a futex wake-up per call would
// cost as much as the work), and the caller never waits for a worker that has not started: on a
// busy machine a descheduled worker simply takes no chunk.
#ifndef APEX4_KERNELS_CPU_THREAD_POOL_H_
#define APEX4_KERNELS_CPU_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
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
  struct Job;

  void WorkerLoop();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one ParallelFor at a time

  std::mutex job_mu_;
  std::condition_variable job_cv_;
  std::shared_ptr<Job> job_;  // the latest job; guarded by job_mu_
  std::atomic<uint64_t> generation_{0};  // bumped under job_mu_ with each new job_
  bool stop_ = false;                    // guarded by job_mu_
};

}  // namespace apex4

#endif  // APEX4_KERNELS_CPU_THREAD_POOL_H_
