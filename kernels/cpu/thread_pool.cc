#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#include <immintrin.h>

namespace apex4 {
namespace {

// How long an idle worker polls for the next job before it sleeps: longer than the gap between
// two GEMMs of one decode step, short enough not to burn a core between requests.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(300);
// Chunks per thread: enough to rebalance around a preempted thread, few enough to keep each
// chunk's weight rows streaming.
constexpr int64_t kChunksPerThread = 4;

}  // namespace

// One ParallelFor call. Shared with the workers, so that one waking late finds its job with no
// chunk left instead of the state of the next call.
struct ThreadPool::Job {
  const std::function<void(int64_t, int64_t)>* fn;  // valid while a chunk is unfinished
  int64_t n, chunk, chunks;
  std::atomic<int64_t> next_chunk{0};
  std::atomic<int64_t> done_chunks{0};

  void RunChunks() {
    for (int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed); c < chunks;
         c = next_chunk.fetch_add(1, std::memory_order_relaxed)) {
      (*fn)(c * chunk, std::min(n, (c + 1) * chunk));
      done_chunks.fetch_add(1, std::memory_order_release);
    }
  }
};

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(job_mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  job_cv_.notify_all();
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
  auto job = std::make_shared<Job>();
  job->fn = &fn;
  job->n = n;
  job->chunks = std::min<int64_t>(grains, kChunksPerThread * num_threads());
  job->chunk = (grains + job->chunks - 1) / job->chunks * grain;
  job->chunks = (n + job->chunk - 1) / job->chunk;
  {
    std::lock_guard<std::mutex> lock(job_mu_);
    job_ = job;
    generation_.fetch_add(1, std::memory_order_release);
  }
  job_cv_.notify_all();
  job->RunChunks();
  // Only chunks a worker has claimed can still be running.
  while (job->done_chunks.load(std::memory_order_acquire) != job->chunks) _mm_pause();
}

void ThreadPool::WorkerLoop() {
  uint64_t seen = 0;
  for (;;) {
    const auto spin_until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
    for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
      _mm_pause();
      if (i % 64 == 63 && std::chrono::steady_clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(job_mu_);
        job_cv_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
      }
    }
    std::shared_ptr<Job> job;
    {
      std::lock_guard<std::mutex> lock(job_mu_);
      if (stop_) return;
      job = job_;
      seen = generation_.load(std::memory_order_relaxed);
    }
    job->RunChunks();
  }
}

}  // namespace apex4
