#include "kernels/cpu/thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace apex4 {
namespace {

// Every index covered exactly once, chunk bounds on the grain, for several pool sizes and
// ranges that do and do not divide evenly.
TEST(ThreadPool, CoversRangeExactlyOnceOnGrainBoundaries) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (int64_t n : {1, 7, 64, 1000, 4099}) {
      for (int64_t grain : {1, 4, 16}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<bool> misaligned{false};
        pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
          if (begin % grain != 0 || (end != n && end % grain != 0)) misaligned = true;
          for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
        });
        EXPECT_FALSE(misaligned) << threads << " " << n << " " << grain;
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << i;
      }
    }
  }
}

// Many back-to-back jobs (the decode pattern) and jobs after the workers have gone to sleep.
TEST(ThreadPool, ManyJobsInARowAndAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int job = 0; job < 2000; ++job) {
    pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
    });
  }
  EXPECT_EQ(sum.load(), 2000 * 4950);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  sum = 0;
  pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  EXPECT_EQ(sum.load(), 4950);
}

TEST(ThreadPool, UsesMoreThanOneThread) {
  ThreadPool pool(2);
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  // Each chunk waits (up to 2 s, for a loaded machine) for another to be running: only
  // possible with two threads.
  pool.ParallelFor(8, 1, [&](int64_t, int64_t) {
    inside.fetch_add(1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!overlapped && std::chrono::steady_clock::now() < deadline) {
      if (inside.load() > 1) overlapped = true;
    }
    inside.fetch_sub(1);
  });
  EXPECT_TRUE(overlapped);
}

}  // namespace
}  // namespace apex4
