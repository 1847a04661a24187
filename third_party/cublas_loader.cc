// cuBLAS and cuBLASLt, opened with dlopen at their first call instead of linked (-lcublas).
//
// Why: a library the executable links is loaded at start-up, and its thread-local storage joins
// the static TLS block that glibc carves out of every new thread's stack. cuBLASLt's is 94 KiB,
// cuBLAS's 12 KiB; civetweb (the Prometheus exposer of apex4_server) starts its threads with
// 100 KiB stacks, so with cuBLAS linked pthread_create fails with EINVAL and the server cannot
// serve metrics ("null context when constructing CivetServer"). A library opened with dlopen
// gets dynamic TLS instead, allocated per thread on first use, outside the stack.
//
// Each function below has the signature of its declaration in cublas_api.h / cublasLt.h (C
// linkage: a mismatch does not compile) and forwards to the real one. Only the functions apex4
// calls are here: a new cuBLAS call links once it is added to the list. Without the libraries
// every call returns CUBLAS_STATUS_NOT_INITIALIZED, which the caller reports as for any failing
// cuBLAS call (DenseGemm::Create: the first, cublasCreate).
//
// Where: libcublas.so.<major> / libcublasLt.so.<major> of the headers' major version, through
// the usual search (LD_LIBRARY_PATH, the ld.so cache, this binary's RUNPATH), then
// /usr/local/cuda/lib64.
#include <cublasLt.h>
#include <cublas_v2.h>
#include <dlfcn.h>

#include <string>

namespace {

void* OpenLibrary(const std::string& name) {
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    handle = dlopen(("/usr/local/cuda/lib64/" + name).c_str(), RTLD_NOW | RTLD_LOCAL);
  }
  return handle;
}

void* Cublas() {
  static void* const handle = OpenLibrary("libcublas.so." + std::to_string(CUBLAS_VER_MAJOR));
  return handle;
}

void* CublasLt() {
  static void* const handle = OpenLibrary("libcublasLt.so." + std::to_string(CUBLAS_VER_MAJOR));
  return handle;
}

void* Symbol(void* library, const char* name) {
  return library == nullptr ? nullptr : dlsym(library, name);
}

}  // namespace

// Defines `name` with parameters `params` forwarding `args` to the same function of `library`.
// (decltype(&name) would not do: cublas_api.h overloads cublasGemmEx for C++.)
#define APEX4_FORWARD(library, name, params, args)                                \
  cublasStatus_t CUBLASWINAPI name params {                                       \
    using Function = cublasStatus_t(CUBLASWINAPI*) params;                        \
    static const auto real = reinterpret_cast<Function>(Symbol(library(), #name)); \
    return real == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : real args;           \
  }

extern "C" {

APEX4_FORWARD(Cublas, cublasCreate_v2, (cublasHandle_t * handle), (handle))
APEX4_FORWARD(Cublas, cublasDestroy_v2, (cublasHandle_t handle), (handle))
APEX4_FORWARD(Cublas, cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream),
              (handle, stream))
APEX4_FORWARD(Cublas, cublasSetPointerMode_v2, (cublasHandle_t handle, cublasPointerMode_t mode),
              (handle, mode))
APEX4_FORWARD(Cublas, cublasSetWorkspace_v2,
              (cublasHandle_t handle, void* workspace, size_t workspace_bytes),
              (handle, workspace, workspace_bytes))
APEX4_FORWARD(Cublas, cublasGemmEx,
              (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
               int n, int k, const void* alpha, const void* A, cudaDataType Atype, int lda,
               const void* B, cudaDataType Btype, int ldb, const void* beta, void* C,
               cudaDataType Ctype, int ldc, cublasComputeType_t computeType,
               cublasGemmAlgo_t algo),
              (handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C,
               Ctype, ldc, computeType, algo))

APEX4_FORWARD(CublasLt, cublasLtCreate, (cublasLtHandle_t * handle), (handle))
APEX4_FORWARD(CublasLt, cublasLtDestroy, (cublasLtHandle_t handle), (handle))
APEX4_FORWARD(CublasLt, cublasLtMatmul,
              (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
               const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
               cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
               cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
               const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
               cudaStream_t stream),
              (handle, desc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo, workspace,
               workspace_bytes, stream))
APEX4_FORWARD(CublasLt, cublasLtMatmulDescCreate,
              (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale),
              (desc, compute, scale))
APEX4_FORWARD(CublasLt, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
APEX4_FORWARD(CublasLt, cublasLtMatmulDescSetAttribute,
              (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const void* buf,
               size_t size),
              (desc, attr, buf, size))
APEX4_FORWARD(CublasLt, cublasLtMatrixLayoutCreate,
              (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows, uint64_t cols,
               int64_t ld),
              (layout, type, rows, cols, ld))
APEX4_FORWARD(CublasLt, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))
APEX4_FORWARD(CublasLt, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * pref),
              (pref))
APEX4_FORWARD(CublasLt, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t pref),
              (pref))
APEX4_FORWARD(CublasLt, cublasLtMatmulPreferenceSetAttribute,
              (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
               const void* buf, size_t size),
              (pref, attr, buf, size))
APEX4_FORWARD(CublasLt, cublasLtMatmulAlgoGetHeuristic,
              (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t Adesc,
               cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,
               cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t pref, int requested,
               cublasLtMatmulHeuristicResult_t results[], int* returned),
              (handle, desc, Adesc, Bdesc, Cdesc, Ddesc, pref, requested, results, returned))

}  // extern "C"

#undef APEX4_FORWARD
