#include "kernels/cpu/thread_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>

namespace apex4 {
namespace {

// How long an idle worker polls for the next job before it sleeps: longer than the gap between
// two GEMMs of one decode step, short enough not to burn a core between requests.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(300);
// Chunks per thread: enough to rebalance around a preempted thread, few enough to keep each
// chunk's weight rows streaming.
constexpr int64_t kChunksPerThread = 4;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(wake_mu_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t grains = (n + grain - 1) / grain;
  if (workers_.empty() || grains == 1) {
    fn(0, n);
    return;
  }
  std::lock_guard<std::mutex> call_lock(call_mu_);
  const int64_t chunks = std::min<int64_t>(grains, kChunksPerThread * num_threads());
  fn_ = &fn;
  n_ = n;
  chunk_ = (grains + chunks - 1) / chunks * grain;
  next_begin_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    // Under the lock so that a worker deciding to sleep cannot miss this job.
    std::lock_guard<std::mutex> lock(wake_mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_cv_.notify_all();
  RunChunks();
  while (busy_workers_.load(std::memory_order_acquire) != 0) _mm_pause();
  fn_ = nullptr;
}

void ThreadPool::RunChunks() {
  for (;;) {
    const int64_t begin = next_begin_.fetch_add(chunk_, std::memory_order_relaxed);
    if (begin >= n_) return;
    (*fn_)(begin, std::min(begin + chunk_, n_));
  }
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t generation = generation_.load(std::memory_order_acquire);
    const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
    for (int i = 0; generation == seen; ++i) {
      _mm_pause();
      if (i % 64 == 63 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(wake_mu_);
        wake_cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      generation = generation_.load(std::memory_order_acquire);
    }
    seen = generation;
    if (stop_.load(std::memory_order_relaxed)) return;
    RunChunks();
    busy_workers_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace apex4
