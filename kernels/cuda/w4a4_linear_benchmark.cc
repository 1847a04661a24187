// Times the W4A4 GEMM (each granularity) and the activation quantizer against cuBLAS BF16,
// cuBLASLt FP8 e4m3 (per-tensor scales, and per-token × per-channel "outer vector" scales) and
// cuBLASLt INT8, in one run on one card, on LLaMA-2-7B / LLaMA-2-70B / LLaMA-3-8B linear shapes.
// BF16 and outer-vector FP8 are the GPU engine's baselines (DenseGemm, dense/dense_linear.h);
// per-tensor FP8 and INT8 are timed here only. All operands are synthetic random data.
// atom_us: the per-channel GEMM with an Atom-style checkpoint's K · 128 / 4096 INT8 outlier
// channels (W4A4GemmArgs::outliers: in the decode kernel's epilogue at M ≤ 16, a second kernel
// otherwise); atom/pc: its time over the plain GEMM's. The quantizer's share is not in it.
// Usage: w4a4_linear_benchmark [--only=MODEL/LAYER,...] [M ...]
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/dense/dense_linear.h"
#include "kernels/cuda/w4a4_linear.h"

namespace apex4::cuda {
namespace {

#define CHECK_CUDA(call)                                                                     \
  do {                                                                                       \
    const cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                                 \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(e_), __FILE__, __LINE__, #call); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)
#define CHECK_BLAS(call)                                                                     \
  do {                                                                                       \
    const int s_ = static_cast<int>(call);                                                   \
    if (s_ != 0) {                                                                           \
      std::printf("cuBLAS status %d at %s:%d: %s\n", s_, __FILE__, __LINE__, #call);         \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)
#define CHECK_OK(expr)                                                                       \
  do {                                                                                       \
    const CudaStatus s_ = (expr);                                                            \
    if (!s_.ok()) {                                                                          \
      std::printf("%s at %s:%d: %s\n", cudaGetErrorString(s_.code), s_.file, s_.line, s_.statement); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

struct LayerShape {
  const char* model;
  const char* layer;
  int64_t n, k;
};
constexpr LayerShape kShapes[] = {
    {"llama2-7b", "qkv", 12288, 4096},      {"llama2-7b", "o", 4096, 4096},
    {"llama2-7b", "gate_up", 22016, 4096},  {"llama2-7b", "down", 4096, 11008},
    {"llama2-70b", "qkv", 10240, 8192},     {"llama2-70b", "o", 8192, 8192},
    {"llama2-70b", "gate_up", 57344, 8192}, {"llama2-70b", "down", 8192, 28672},
    {"llama3-8b", "qkv", 6144, 4096},       {"llama3-8b", "o", 4096, 4096},
    {"llama3-8b", "gate_up", 28672, 4096},  {"llama3-8b", "down", 4096, 14336},
};

void* Alloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 256)));
  return p;
}

// Synthetic random operands: a 32 MB host-generated pool of each kind, tiled over the buffer
// (the period is well past what any cache holds). Values are valid numbers of each type.
enum class Fill { kBytes, kFp8, kBf16, kScale };
class RandomPool {
 public:
  static constexpr size_t kBytes = 32 << 20;
  RandomPool() {
    std::mt19937_64 rng(20261127);
    std::vector<uint8_t> host(kBytes);
    for (int kind = 0; kind < 4; ++kind) {
      for (size_t i = 0; i < kBytes; i += 8) {
        const uint64_t r = rng();
        std::memcpy(&host[i], &r, 8);
      }
      if (kind == int(Fill::kFp8)) {
        for (uint8_t& b : host) b &= 0xBF;  // clear exponent MSB: no NaN, |v| < 2
      } else if (kind == int(Fill::kBf16)) {
        for (size_t i = 0; i < kBytes; i += 2) {
          const uint16_t v = static_cast<uint16_t>((host[i] | host[i + 1] << 8) & 0x807F) | 0x3F00;  // ±[0.5, 1)
          std::memcpy(&host[i], &v, 2);
        }
      } else if (kind == int(Fill::kScale)) {
        for (size_t i = 0; i < kBytes; i += 4) {
          const float v = 0.001f + 0.01f * (host[i] / 255.0f);
          std::memcpy(&host[i], &v, 4);
        }
      }
      pools_[kind] = Alloc(kBytes);
      CHECK_CUDA(cudaMemcpy(pools_[kind], host.data(), kBytes, cudaMemcpyHostToDevice));
    }
  }
  void* Make(size_t bytes, Fill kind) const {
    void* p = Alloc(bytes);
    for (size_t off = 0; off < bytes; off += kBytes) {
      CHECK_CUDA(cudaMemcpy(static_cast<char*>(p) + off, pools_[int(kind)], std::min(kBytes, bytes - off),
                            cudaMemcpyDeviceToDevice));
    }
    return p;
  }

 private:
  void* pools_[4] = {};
};

// Median over 9 batches of the per-launch time, in microseconds. `run(i)` launches copy i of
// the operands; copies rotate so that weights come from HBM, not L2.
template <typename F>
double TimeUs(F run, int copies) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) run(i % copies);
  CHECK_CUDA(cudaDeviceSynchronize());
  // Pick a batch of about 2 ms.
  CHECK_CUDA(cudaEventRecord(start));
  run(0);
  CHECK_CUDA(cudaEventRecord(stop));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float one_ms = 0;
  CHECK_CUDA(cudaEventElapsedTime(&one_ms, start, stop));
  const int reps = std::clamp(static_cast<int>(2.0f / std::max(one_ms, 1e-3f)), 3, 2000);
  std::vector<double> samples;
  for (int b = 0; b < 9; ++b) {
    CHECK_CUDA(cudaEventRecord(start));
    for (int r = 0; r < reps; ++r) run(r % copies);
    CHECK_CUDA(cudaEventRecord(stop));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(1000.0 * ms / reps);
  }
  CHECK_CUDA(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::nth_element(samples.begin(), samples.begin() + 4, samples.end());
  return samples[4];
}

// One cuBLASLt TN GEMM: D[n×m col-major] = op(A=W[n,k] row-major)ᵀ-view · X — i.e. Y[m, n]
// row-major = X · Wᵀ, the layout our kernel writes; per-tensor scales when a_scale is given.
// (The baselines with per-token × per-channel scales and BF16 go through DenseGemm.)
struct LtGemm {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool ok = false;

  LtGemm(cublasLtHandle_t lt, cudaDataType_t in, cudaDataType_t out, cublasComputeType_t compute,
         cudaDataType_t scale_type, int64_t m, int64_t n, int64_t k, const float* a_scale,
         const float* b_scale, size_t ws_bytes) {
    CHECK_BLAS(cublasLtMatmulDescCreate(&desc, compute, scale_type));
    const cublasOperation_t t = CUBLAS_OP_T, nop = CUBLAS_OP_N;
    CHECK_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t)));
    CHECK_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &nop, sizeof(nop)));
    if (a_scale != nullptr) {
      CHECK_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)));
      CHECK_BLAS(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)));
    }
    CHECK_BLAS(cublasLtMatrixLayoutCreate(&a, in, k, n, k));
    CHECK_BLAS(cublasLtMatrixLayoutCreate(&b, in, k, m, k));
    CHECK_BLAS(cublasLtMatrixLayoutCreate(&d, out, n, m, n));
    cublasLtMatmulPreference_t pref;
    CHECK_BLAS(cublasLtMatmulPreferenceCreate(&pref));
    CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                                    sizeof(ws_bytes)));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    ok = cublasLtMatmulAlgoGetHeuristic(lt, desc, a, b, d, d, pref, 1, &result, &found) == CUBLAS_STATUS_SUCCESS &&
         found > 0;
    if (ok) algo = result.algo;
    cublasLtMatmulPreferenceDestroy(pref);
  }
  ~LtGemm() {
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(d);
    cublasLtMatmulDescDestroy(desc);
  }
  void Run(cublasLtHandle_t lt, const void* alpha, const void* beta, const void* w, const void* x, void* y,
           void* ws, size_t ws_bytes) const {
    CHECK_BLAS(cublasLtMatmul(lt, desc, alpha, w, a, x, b, beta, y, d, y, d, &algo, ws, ws_bytes, nullptr));
  }
};

int Main(int argc, char** argv) {
  std::vector<int64_t> ms;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--only=", 0) == 0) {
      only = "," + arg.substr(7) + ",";
    } else {
      ms.push_back(std::atoll(argv[i]));
    }
  }
  if (ms.empty()) ms = {1, 16, 64, 256, 1024, 4096, 8192};
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 0;
  }
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  W4A4Backend backend;
  CHECK_OK(SelectW4A4Backend(0, &backend));
  std::printf("device %s, %d SMs, backend %s; synthetic random weights and activations\n", prop.name,
              prop.multiProcessorCount, backend == W4A4Backend::kSm90 ? "sm90" : "portable");
  std::printf("%-10s %-7s %5s %6s | %9s %9s %9s %9s %9s | %9s %9s | %7s %7s | %6s %6s %6s %6s %6s | %8s %7s\n",
              "model", "layer", "M", "N,K", "bf16_us", "fp8t_us", "fp8r_us", "int8_us", "quant_us", "w4pc_us",
              "w4g_us", "pcTOPS", "pcGB/s", "xBF16", "xFP8t", "xFP8r", "xINT8", "g/pc", "atom_us", "atom/pc");

  cublasLtHandle_t lt;
  CHECK_BLAS(cublasLtCreate(&lt));
  std::unique_ptr<DenseGemm> dense;
  CHECK_OK(DenseGemm::Create(nullptr, &dense));
  const size_t lt_ws_bytes = 64 << 20;
  void* lt_ws = Alloc(lt_ws_bytes);
  const int64_t max_m = *std::max_element(ms.begin(), ms.end());
  const float one = 1.0f, zero = 0.0f;
  const int32_t ione = 1, izero = 0;
  const RandomPool pool;

  for (const LayerShape& s : kShapes) {
    if (!only.empty() && only.find("," + std::string(s.model) + "/" + s.layer + ",") == std::string::npos) continue;
    const int64_t n = s.n, k = s.k;
    // Enough weight copies that one pass over them all exceeds L2 several times.
    const size_t w4_bytes = n * k / 2;
    const int copies = static_cast<int>(std::clamp<size_t>((size_t{4} * prop.l2CacheSize) / w4_bytes + 1, 1, 8));
    const int32_t outliers = static_cast<int32_t>(k * 128 / 4096);
    const int64_t outlier_stride = W4A4OutlierCodesStride(outliers);
    std::vector<void*> w4(copies), w4_scales_pc(copies), w4_scales_g(copies), w8(copies), wbf(copies),
        w_outliers(copies);
    for (int c = 0; c < copies; ++c) {
      w_outliers[c] = pool.Make(n * outlier_stride, Fill::kBytes);
      w4[c] = pool.Make(w4_bytes, Fill::kBytes);
      w4_scales_pc[c] = pool.Make(n * 4, Fill::kScale);
      w4_scales_g[c] = pool.Make(n * (k / 128) * 4, Fill::kScale);
      w8[c] = pool.Make(n * k, Fill::kFp8);
      wbf[c] = pool.Make(n * k * 2, Fill::kBf16);
    }
    void* xbf = pool.Make(max_m * k * 2, Fill::kBf16);
    void* x8 = pool.Make(max_m * k, Fill::kFp8);
    void* x4 = pool.Make(max_m * k / 2, Fill::kBytes);
    float* sx = static_cast<float*>(pool.Make(max_m * (k / 128) * 4, Fill::kScale));
    float* s8 = static_cast<float*>(pool.Make(std::max(max_m, n) * 4, Fill::kScale));
    void* y = Alloc(max_m * n * 4);
    CHECK_CUDA(cudaDeviceSynchronize());

    for (int64_t m : ms) {
      const LtGemm fp8t(lt, CUDA_R_8F_E4M3, CUDA_R_16BF, CUBLAS_COMPUTE_32F, CUDA_R_32F, m, n, k, s8, s8,
                        lt_ws_bytes);
      const LtGemm int8(lt, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, m, n, k, nullptr, nullptr,
                        lt_ws_bytes);
      auto time_lt = [&](const LtGemm& g, const std::vector<void*>& w, const void* x, bool integer) {
        if (!g.ok) return -1.0;
        return TimeUs([&](int c) {
          g.Run(lt, integer ? static_cast<const void*>(&ione) : &one, integer ? static_cast<const void*>(&izero) : &zero,
                w[c], x, y, lt_ws, lt_ws_bytes);
        }, copies);
      };
      auto* yb = static_cast<__nv_bfloat16*>(y);
      const double t_bf16 = TimeUs([&](int c) {
        CHECK_OK(dense->Bf16(static_cast<const __nv_bfloat16*>(xbf), k, static_cast<const __nv_bfloat16*>(wbf[c]),
                             yb, n, m, n, k));
      }, copies);
      const double t_fp8t = time_lt(fp8t, w8, x8, false);
      // s8 holds max(M, N) scales: per token and per channel. The first call picks and caches the
      // algorithm (or finds none: -1, as for the Lt variants).
      auto fp8r = [&](int c) {
        return dense->Fp8(static_cast<const __nv_fp8_e4m3*>(x8), s8, static_cast<const __nv_fp8_e4m3*>(w8[c]), s8,
                          yb, n, m, n, k);
      };
      const double t_fp8r = fp8r(0).ok() ? TimeUs([&](int c) { CHECK_OK(fp8r(c)); }, copies) : -1.0;
      const double t_int8 = time_lt(int8, w8, x8, true);

      W4A4QuantizeArgs q;
      q.x = xbf;
      q.type = ActivationType::kBFloat16;
      q.rows = m;
      q.k = k;
      q.granularity = Granularity::kPerChannel;
      q.packed = static_cast<uint8_t*>(x4);
      q.scales = sx;
      const double t_quant = TimeUs([&](int) { CHECK_OK(QuantizeW4A4Activations(q, nullptr)); }, 1);

      double t_w4[2], t_atom = 0;
      const W4A4GemmOutliers atom{static_cast<const int8_t*>(x8), sx, outliers, outlier_stride, nullptr, s8};
      for (Granularity g : {Granularity::kPerChannel, Granularity::kGroup128}) {
        const size_t ws_bytes = W4A4GemmWorkspaceBytes(backend, m, n, k, g, prop.multiProcessorCount);
        void* ws = Alloc(ws_bytes);
        CHECK_CUDA(cudaMemset(ws, 0, ws_bytes));
        W4A4GemmArgs args;
        args.x = static_cast<const uint8_t*>(x4);
        args.x_scales = sx;
        args.y = static_cast<__nv_bfloat16*>(y);
        args.m = m;
        args.n = n;
        args.k = k;
        args.granularity = g;
        args.workspace = ws;
        args.workspace_bytes = ws_bytes;
        const bool g128 = g == Granularity::kGroup128;
        t_w4[g128] = TimeUs([&](int c) {
          args.w = static_cast<const uint8_t*>(w4[c]);
          args.w_scales = static_cast<const float*>(g128 ? w4_scales_g[c] : w4_scales_pc[c]);
          CHECK_OK(W4A4Gemm(backend, args, nullptr));
        }, copies);
        if (!g128) {
          W4A4GemmOutliers with_weights = atom;
          args.outliers = &with_weights;
          t_atom = TimeUs([&](int c) {
            args.w = static_cast<const uint8_t*>(w4[c]);
            args.w_scales = static_cast<const float*>(w4_scales_pc[c]);
            with_weights.weights = static_cast<const int8_t*>(w_outliers[c]);
            CHECK_OK(W4A4Gemm(backend, args, nullptr));
          }, copies);
          args.outliers = nullptr;
        }
        CHECK_CUDA(cudaFree(ws));
      }
      const double ops = 2.0 * m * n * k;
      const double bytes = n * k / 2.0 + m * k / 2.0 + m * n * 2.0;
      auto ratio = [&](double base) { return base > 0 ? base / t_w4[0] : 0.0; };
      std::printf("%-10s %-7s %5lld %6s | %9.1f %9.1f %9.1f %9.1f %9.1f | %9.1f %9.1f | %7.0f %7.0f | %6.2f %6.2f %6.2f %6.2f %6.2f | %8.1f %7.2f\n",
                  s.model, s.layer, static_cast<long long>(m),
                  (std::to_string(n / 1024) + "k," + std::to_string(k / 1024) + "k").c_str(), t_bf16, t_fp8t,
                  t_fp8r, t_int8, t_quant, t_w4[0], t_w4[1], ops / t_w4[0] * 1e-6, bytes / t_w4[0] * 1e-3,
                  ratio(t_bf16), ratio(t_fp8t), ratio(t_fp8r), ratio(t_int8), t_w4[1] / t_w4[0], t_atom,
                  t_atom / t_w4[0]);
      std::fflush(stdout);
    }
    for (int c = 0; c < copies; ++c) {
      for (void* p : {w4[c], w4_scales_pc[c], w4_scales_g[c], w8[c], wbf[c], w_outliers[c]}) CHECK_CUDA(cudaFree(p));
    }
    for (void* p : {xbf, x8, x4, static_cast<void*>(sx), static_cast<void*>(s8), y}) CHECK_CUDA(cudaFree(p));
  }
  dense.reset();
  cublasLtDestroy(lt);
  CHECK_CUDA(cudaFree(lt_ws));
  return 0;
}

}  // namespace
}  // namespace apex4::cuda

int main(int argc, char** argv) { return apex4::cuda::Main(argc, argv); }
