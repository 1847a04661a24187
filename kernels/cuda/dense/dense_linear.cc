#include "kernels/cuda/dense/dense_linear.h"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

namespace apex4::cuda {
namespace {

// cuBLAS statuses as the nearest CUDA error; the statement text names the call.
cudaError_t ToCudaError(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return cudaSuccess;
    case CUBLAS_STATUS_NOT_INITIALIZED: return cudaErrorInitializationError;
    case CUBLAS_STATUS_ALLOC_FAILED: return cudaErrorMemoryAllocation;
    case CUBLAS_STATUS_INVALID_VALUE: return cudaErrorInvalidValue;
    case CUBLAS_STATUS_ARCH_MISMATCH: return cudaErrorNoKernelImageForDevice;
    case CUBLAS_STATUS_NOT_SUPPORTED: return cudaErrorNotSupported;
    case CUBLAS_STATUS_EXECUTION_FAILED: return cudaErrorLaunchFailure;
    default: return cudaErrorUnknown;
  }
}

#define APEX4_CUBLAS_RETURN_IF_ERROR(stmt)                                             \
  do {                                                                                 \
    const cublasStatus_t apex4_cublas_status_ = (stmt);                                \
    if (apex4_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                               \
      return CudaStatus{ToCudaError(apex4_cublas_status_), #stmt, __FILE__, __LINE__}; \
    }                                                                                  \
  } while (0)

constexpr int64_t kMaxInt = (int64_t{1} << 31) - 1;
constexpr float kFp8E4m3Max = 448.0f;

// The largest power of two (≤ 256) dividing the address: what cuBLASLt's heuristic may assume.
uint32_t Alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return a == 0 ? 256u : static_cast<uint32_t>(std::min<uintptr_t>(a & (~a + 1), 256));
}

// One cached FP8 matmul: cuBLASLt sees the column-major problem D[n × m] = op(A)·B with A = W
// ([k × n] col-major, transposed: the "TN" layout FP8 needs) and B = X ([k × m] col-major), which
// is Y[m, n] row-major with row stride ldy.
struct Fp8Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};

  Fp8Plan() = default;
  Fp8Plan(const Fp8Plan&) = delete;
  Fp8Plan& operator=(const Fp8Plan&) = delete;
  ~Fp8Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (d) cublasLtMatrixLayoutDestroy(d);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

// m, n, k, ldy, alignments of x, w, y.
using Fp8Key = std::tuple<int64_t, int64_t, int64_t, int64_t, uint32_t, uint32_t, uint32_t>;

// The scale pointers are set before the heuristic runs: with outer-vector scale modes cuBLASLt
// refuses (CUBLAS_STATUS_INVALID_VALUE) to pick an algorithm for a descriptor without them.
CudaStatus MakeFp8Plan(cublasLtHandle_t lt, const Fp8Key& key, const float* x_scales,
                       const float* w_scales, Fp8Plan* plan) {
  const auto [m, n, k, ldy, align_x, align_w, align_y] = key;
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, none = CUBLAS_OP_N;
  const cublasLtMatmulMatrixScale_t outer = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                              &transpose, sizeof(transpose)));
  APEX4_CUBLAS_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(none)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
                                                              &outer, sizeof(outer)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE,
                                                              &outer, sizeof(outer)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                              &w_scales, sizeof(w_scales)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                              &x_scales, sizeof(x_scales)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, CUDA_R_8F_E4M3, k, n, k));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, CUDA_R_8F_E4M3, k, m, k));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->d, CUDA_R_16BF, n, m, ldy));

  cublasLtMatmulPreference_t pref = nullptr;
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
  const size_t workspace = DenseGemm::kWorkspaceBytes;
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace, sizeof(workspace));
  // The heuristic assumes 256-byte aligned operands unless told otherwise.
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> alignments[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_y},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y}};
  for (const auto& [attribute, bytes] : alignments) {
    if (status == CUBLAS_STATUS_SUCCESS) {
      status = cublasLtMatmulPreferenceSetAttribute(pref, attribute, &bytes, sizeof(bytes));
    }
  }
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS) {
    status = cublasLtMatmulAlgoGetHeuristic(lt, plan->desc, plan->a, plan->b, plan->d, plan->d, pref, 1,
                                            &result, &found);
  }
  cublasLtMatmulPreferenceDestroy(pref);
  APEX4_CUBLAS_RETURN_IF_ERROR(status);
  if (found == 0) {
    return CudaStatus{cudaErrorNotSupported,
                      "cublasLtMatmulAlgoGetHeuristic: no FP8 algorithm with outer-vector scales for this "
                      "device and shape",
                      __FILE__, __LINE__};
  }
  plan->algo = result.algo;
  return OkCudaStatus();
}

}  // namespace

struct DenseGemm::State {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  std::map<Fp8Key, std::unique_ptr<Fp8Plan>> fp8_plans;

  ~State() {
    fp8_plans.clear();
    if (lt) cublasLtDestroy(lt);
    if (blas) cublasDestroy(blas);
    if (workspace) cudaFree(workspace);
  }
};

DenseGemm::DenseGemm(std::unique_ptr<State> state) : state_(std::move(state)) {}
DenseGemm::~DenseGemm() = default;

CudaStatus DenseGemm::Create(cudaStream_t stream, std::unique_ptr<DenseGemm>* out) {
  APEX4_CUDA_CHECK_ARG(out != nullptr);
  auto state = std::make_unique<State>();
  state->stream = stream;
  APEX4_CUDA_RETURN_IF_ERROR(cudaMalloc(&state->workspace, kWorkspaceBytes));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasCreate(&state->blas));
  // NOTES: cublasSetStream resets the workspace to cuBLAS's own pool, so the stream comes first.
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasSetStream(state->blas, stream));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(state->blas, state->workspace, kWorkspaceBytes));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasSetPointerMode(state->blas, CUBLAS_POINTER_MODE_HOST));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&state->lt));
  out->reset(new DenseGemm(std::move(state)));
  return OkCudaStatus();
}

CudaStatus DenseGemm::Bf16(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, __nv_bfloat16* y,
                           int64_t ldy, int64_t m, int64_t n, int64_t k) {
  return Bf16Gemm(x, ldx, w, y, CUDA_R_16BF, ldy, m, n, k);
}

CudaStatus DenseGemm::Bf16ToFloat(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w,
                                  float* y, int64_t ldy, int64_t m, int64_t n, int64_t k) {
  return Bf16Gemm(x, ldx, w, y, CUDA_R_32F, ldy, m, n, k);
}

CudaStatus DenseGemm::Bf16Gemm(const __nv_bfloat16* x, int64_t ldx, const __nv_bfloat16* w, void* y,
                               cudaDataType_t y_type, int64_t ldy, int64_t m, int64_t n, int64_t k) {
  APEX4_CUDA_CHECK_ARG(m >= 0 && m <= kMaxInt && n > 0 && n <= kMaxInt && k > 0 && k <= kMaxInt);
  APEX4_CUDA_CHECK_ARG(ldx >= k && ldx <= kMaxInt && ldy >= n && ldy <= kMaxInt);
  if (m == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && w != nullptr && y != nullptr);
  const float one = 1.0f, zero = 0.0f;
  // Column-major view: Y^T [n × m] = W [k × n]^T · X^T [k × m].
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(state_->blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                            static_cast<int>(m), static_cast<int>(k), &one, w, CUDA_R_16BF,
                                            static_cast<int>(k), x, CUDA_R_16BF, static_cast<int>(ldx), &zero,
                                            y, y_type, static_cast<int>(ldy), CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
  return OkCudaStatus();
}

CudaStatus DenseGemm::Fp8(const __nv_fp8_e4m3* x, const float* x_scales, const __nv_fp8_e4m3* w,
                          const float* w_scales, __nv_bfloat16* y, int64_t ldy, int64_t m, int64_t n,
                          int64_t k) {
  APEX4_CUDA_CHECK_ARG(m >= 0 && m <= kMaxInt && n > 0 && n <= kMaxInt && k > 0 && k <= kMaxInt);
  APEX4_CUDA_CHECK_ARG(ldy >= n && ldy <= kMaxInt);
  // cuBLASLt's FP8 requirements (16-byte aligned dimensions and pointers).
  APEX4_CUDA_CHECK_ARG(k % 16 == 0 && n % 16 == 0 && ldy % 8 == 0);
  if (m == 0) return OkCudaStatus();
  APEX4_CUDA_CHECK_ARG(x != nullptr && x_scales != nullptr && w != nullptr && w_scales != nullptr && y != nullptr);
  APEX4_CUDA_CHECK_ARG(Alignment(x) >= 16 && Alignment(w) >= 16 && Alignment(y) >= 16);
  const Fp8Key key{m, n, k, ldy, Alignment(x), Alignment(w), Alignment(y)};
  auto it = state_->fp8_plans.find(key);
  if (it == state_->fp8_plans.end()) {
    auto plan = std::make_unique<Fp8Plan>();
    APEX4_CUDA_RETURN_IF_NOT_OK(MakeFp8Plan(state_->lt, key, x_scales, w_scales, plan.get()));
    it = state_->fp8_plans.emplace(key, std::move(plan)).first;
  }
  const Fp8Plan& plan = *it->second;
  // Lt's A is W (its rows are our n: w_scales), B is X (x_scales).
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                              &w_scales, sizeof(w_scales)));
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                              &x_scales, sizeof(x_scales)));
  const float one = 1.0f, zero = 0.0f;
  APEX4_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(state_->lt, plan.desc, &one, w, plan.a, x, plan.b, &zero, y, plan.d,
                                              y, plan.d, &plan.algo, state_->workspace, kWorkspaceBytes,
                                              state_->stream));
  return OkCudaStatus();
}

void ConvertWeightsToBf16(const float* w, int64_t count, __nv_bfloat16* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = __float2bfloat16_rn(w[i]);
}

void QuantizeWeightsToFp8(const float* w, int64_t n, int64_t k, __nv_fp8_e4m3* out, float* scales) {
  for (int64_t r = 0; r < n; ++r) {
    const float* row = w + r * k;
    float absmax = 0.0f;
    for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(row[i]));
    float scale = absmax / kFp8E4m3Max;
    if (!(scale > 0.0f)) scale = 1.0f;  // zero row, or absmax / 448 underflowed
    scales[r] = scale;
    for (int64_t i = 0; i < k; ++i) {
      out[r * k + i].__x = __nv_cvt_float_to_fp8(row[i] / scale, __NV_SATFINITE, __NV_E4M3);
    }
  }
}

}  // namespace apex4::cuda
