// Kernel timing hook: the engine reports how long each kind of kernel took, the server turns it
// into the Prometheus kernel-time histogram. Kernels themselves know nothing of it.
#ifndef APEX4_ENGINE_KERNEL_TIMER_H_
#define APEX4_ENGINE_KERNEL_TIMER_H_

namespace apex4 {

// Fixed set of kernel kinds (the metric's label values).
enum class KernelKind {
  kGemmFp32,        // full-precision linear layers
  kGemmW4A4,        // 4-bit linear layers
  kGemmBf16,        // the GPU engine's BF16 baseline (cuBLAS)
  kGemmFp8,         // the GPU engine's FP8 W8A8 baseline (cuBLASLt)
  kQuantizeActivations,
  kAttention,       // on the GPU with RoPE and the KV-cache write
  kNorm,            // RMSNorm
  kElementwise,     // embedding, residual adds, SwiGLU's gate
  kLmHead,          // final projection to the vocabulary
};

inline const char* KernelKindName(KernelKind kind) {
  switch (kind) {
    case KernelKind::kGemmFp32: return "gemm_fp32";
    case KernelKind::kGemmW4A4: return "gemm_w4a4";
    case KernelKind::kGemmBf16: return "gemm_bf16";
    case KernelKind::kGemmFp8: return "gemm_fp8";
    case KernelKind::kQuantizeActivations: return "quantize_activations";
    case KernelKind::kAttention: return "attention";
    case KernelKind::kNorm: return "norm";
    case KernelKind::kElementwise: return "elementwise";
    case KernelKind::kLmHead: return "lm_head";
  }
  return "unknown";
}

inline constexpr KernelKind kAllKernelKinds[] = {
    KernelKind::kGemmFp32,  KernelKind::kGemmW4A4,  KernelKind::kGemmBf16,
    KernelKind::kGemmFp8,   KernelKind::kQuantizeActivations, KernelKind::kAttention,
    KernelKind::kNorm,      KernelKind::kElementwise, KernelKind::kLmHead};

// Implementations must be thread-safe: the engine may record from worker threads.
class KernelTimer {
 public:
  virtual ~KernelTimer() = default;
  virtual void Record(KernelKind kind, double seconds) = 0;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_KERNEL_TIMER_H_
