#include "engine/planner/cpu_probe.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kernels/cpu/cpu_isa.h"
#include "kernels/cpu/w4a4_gemm.h"
#include "kernels/w4a4_format.h"

namespace apex4 {
namespace {

// NOTES: each loop keeps 8 independent dependency chains so the measurement sees the units'
// throughput, not one instruction's latency. The asm barrier keeps results live.
constexpr int kChains = 8;
constexpr int64_t kInnerIterations = 1 << 14;

template <typename V>
void KeepAlive(V& v) { asm volatile("" : "+x"(v)); }

__attribute__((target("avx2,fma"))) double Fp32FmaAvx2(int64_t rounds) {
  __m256 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(0.001f * c);
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.0001f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < kInnerIterations; ++i) {
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
  }
  for (int c = 0; c < kChains; ++c) KeepAlive(acc[c]);
  return 2.0 * 8 * kChains * kInnerIterations * rounds;  // flops
}

__attribute__((target("avx512f"))) double Fp32FmaAvx512(int64_t rounds) {
  __m512 acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < kInnerIterations; ++i) {
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
  }
  for (int c = 0; c < kChains; ++c) KeepAlive(acc[c]);
  return 2.0 * 16 * kChains * kInnerIterations * rounds;
}

// AVX2 int8 dot: maddubs (u8 x s8 -> s16 pairs) then madd to s32, as the W4A4 kernels do.
__attribute__((target("avx2"))) double Int8DotAvx2(int64_t rounds) {
  __m256i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_epi32(c);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < kInnerIterations; ++i) {
      for (int c = 0; c < kChains; ++c) {
        acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
      }
    }
  }
  for (int c = 0; c < kChains; ++c) KeepAlive(acc[c]);
  return 2.0 * 32 * kChains * kInnerIterations * rounds;  // multiply-adds of int8 pairs, x2
}

__attribute__((target("avx512f,avx512vnni"))) double Int8DotVnni(int64_t rounds) {
  __m512i acc[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_epi32(c);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < kInnerIterations; ++i) {
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], a, b);
    }
  }
  for (int c = 0; c < kChains; ++c) KeepAlive(acc[c]);
  return 2.0 * 64 * kChains * kInnerIterations * rounds;
}

__attribute__((target("avx2"))) double IntToFloatAvx2(int64_t rounds) {
  __m256 acc[kChains];
  __m256i v[kChains];
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_setzero_ps(), v[c] = _mm256_set1_epi32(c);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int64_t i = 0; i < kInnerIterations; ++i) {
      for (int c = 0; c < kChains; ++c) {
        KeepAlive(v[c]);
        acc[c] = _mm256_cvtepi32_ps(v[c]);
        KeepAlive(acc[c]);
      }
    }
  }
  return 8.0 * kChains * kInnerIterations * rounds;
}

// Runs `kernel` on `threads` threads for about `seconds` and returns total work per second.
double RatePerSecond(const std::function<double(int64_t)>& kernel, int threads, double seconds) {
  using Clock = std::chrono::steady_clock;
  // Calibrate rounds on one thread so that each thread runs about `seconds`.
  const auto t0 = Clock::now();
  kernel(1);
  const double one_round = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t rounds = std::max<int64_t>(1, static_cast<int64_t>(seconds / one_round));
  std::vector<std::thread> workers;
  std::atomic<double> work{0.0};
  const auto start = Clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      const double w = kernel(rounds);
      double expected = work.load();
      while (!work.compare_exchange_weak(expected, expected + w)) {}
    });
  }
  for (auto& w : workers) w.join();
  return work.load() / std::chrono::duration<double>(Clock::now() - start).count();
}

// Streams a buffer far larger than the caches and returns bytes read per second.
double ReadBandwidth(int threads, double seconds) {
  constexpr size_t kBytesPerThread = size_t{128} << 20;
  const size_t floats = kBytesPerThread / sizeof(float);
  std::vector<std::vector<float>> buffers(threads, std::vector<float>(floats, 1.0f));
  std::atomic<double> bytes{0.0};
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      const float* data = buffers[t].data();
      double total = 0;
      float sums[8] = {};
      const auto begin = std::chrono::steady_clock::now();
      do {
        for (size_t i = 0; i < floats; i += 8) {
          for (int j = 0; j < 8; ++j) sums[j] += data[i + j];
        }
        total += kBytesPerThread;
      } while (std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() <
               seconds);
      asm volatile("" : : "r"(sums) : "memory");
      double expected = bytes.load();
      while (!bytes.compare_exchange_weak(expected, expected + total)) {}
    });
  }
  for (auto& w : workers) w.join();
  return bytes.load() /
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string CpuModelName() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
      }
    }
  }
  return "unknown CPU";
}

// FNV-1a: stable across processes and builds (absl::Hash is salted per process).
uint64_t StableHash(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Random packed INT4 operand (never zeros) with positive scales.
struct RandomOperand {
  std::vector<uint8_t> packed;
  std::vector<float> scales;
  W4A4Operand view;

  RandomOperand(int64_t rows, int64_t k, int group_size, uint32_t seed) {
    packed.resize(rows * PackedRowBytes(k));
    scales.resize(rows * (k / group_size));
    uint32_t state = seed;
    for (uint8_t& b : packed) b = static_cast<uint8_t>((state = state * 1664525u + 1013904223u) >> 24);
    for (float& s : scales) s = 0.01f + ((state = state * 1664525u + 1013904223u) >> 8) * 1e-9f;
    view = {packed.data(), scales.data(), rows, k, group_size};
  }
};

// Median of `repeats` timed calls after one warm-up call.
double MedianSeconds(const std::function<void()>& call, int repeats) {
  call();
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    call();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + repeats / 2, times.end());
  return times[repeats / 2];
}

}  // namespace

std::vector<KernelTiming> TimeCpuW4A4Kernels(const std::vector<GemmShape>& shapes,
                                             const std::vector<int64_t>& m_buckets,
                                             ThreadPool* pool) {
  std::vector<CpuIsa> isas = {CpuIsa::kAvx2, CpuIsa::kAvx512Vnni};
  std::vector<KernelTiming> timings;
  for (const GemmShape& shape : shapes) {
    for (const char* granularity : {"per_channel", "g128"}) {
      const bool g128 = std::string(granularity) == "g128";
      const int group = g128 ? kGroupSize128 : static_cast<int>(shape.k);
      const RandomOperand w(shape.n, shape.k, group, 7);
      for (int64_t m : m_buckets) {
        const RandomOperand x(m, shape.k, group, 11);
        std::vector<float> y(m * shape.n);
        for (CpuIsa isa : isas) {
          if (!CpuSupports(isa)) continue;
          const W4A4GemmOptions options{isa, pool};
          // Aim for ~20 ms per measurement: fewer repeats for larger problems.
          const double work = double(m) * shape.n * shape.k;
          const int repeats = std::clamp(static_cast<int>(2e8 / std::max(work, 1.0)), 3, 50);
          const double seconds = MedianSeconds(
              [&] { (void)W4A4Gemm(x.view, w.view, y.data(), options); }, repeats);
          timings.push_back({absl::StrCat("cpu_", CpuIsaName(isa), "_w4a4"), granularity, m,
                             shape.n, shape.k, seconds});
        }
      }
    }
  }
  return timings;
}

DeviceIdentity CpuIdentity() {
  DeviceIdentity id;
  id.backend = "cpu";
  id.name = CpuModelName();
  id.driver = CpuIsaName(BestCpuIsa());
  const unsigned cores = std::thread::hardware_concurrency();
  id.uuid = absl::StrFormat("cpu-%016x", StableHash(absl::StrCat(id.name, "/", cores, "/", id.driver)));
  return id;
}

DeviceThroughput MeasureCpuThroughput(int threads, double seconds_each) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  DeviceThroughput t;
  const bool avx512 = __builtin_cpu_supports("avx512f");
  t.fp32_fma_flops = RatePerSecond(avx512 ? Fp32FmaAvx512 : Fp32FmaAvx2, threads, seconds_each);
  const bool vnni = BestCpuIsa() == CpuIsa::kAvx512Vnni;
  t.matrix_int8_ops = RatePerSecond(vnni ? Int8DotVnni : Int8DotAvx2, threads, seconds_each);
  t.int_to_float_ops = RatePerSecond(IntToFloatAvx2, threads, seconds_each);
  t.memory_bytes_per_s = ReadBandwidth(threads, seconds_each * 2);
  return t;
}

NodeProfile ProbeCpuNode(const std::vector<GemmShape>& shapes,
                         const std::vector<int64_t>& m_buckets, int threads) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  const auto start = std::chrono::steady_clock::now();
  NodeProfile profile;
  profile.created_utc = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  profile.device = CpuIdentity();
  profile.throughput = MeasureCpuThroughput(threads);
  ThreadPool pool(threads);
  profile.timings = TimeCpuW4A4Kernels(shapes, m_buckets, &pool);
  profile.probe_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return profile;
}

}  // namespace apex4
