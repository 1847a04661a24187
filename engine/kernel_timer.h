// Kernel timing hook: the engine reports how long each kind of kernel took, the server turns it
// into the Prometheus kernel-time histogram. Kernels themselves know nothing of it.
#ifndef APEX4_ENGINE_KERNEL_TIMER_H_
#define APEX4_ENGINE_KERNEL_TIMER_H_

namespace apex4 {

// Fixed set of kernel kinds (the metric's label values).
enum class KernelKind {
  kGemmFp32,        // full-precision linear layers
  kGemmW4A4,        // 4-bit linear layers
  kQuantizeActivations,
  kAttention,
  kNorm,            // RMSNorm
  kLmHead,          // final projection to the vocabulary
};

inline const char* KernelKindName(KernelKind kind) {
  switch (kind) {
    case KernelKind::kGemmFp32: return "gemm_fp32";
    case KernelKind::kGemmW4A4: return "gemm_w4a4";
    case KernelKind::kQuantizeActivations: return "quantize_activations";
    case KernelKind::kAttention: return "attention";
    case KernelKind::kNorm: return "norm";
    case KernelKind::kLmHead: return "lm_head";
  }
  return "unknown";
}

inline constexpr KernelKind kAllKernelKinds[] = {
    KernelKind::kGemmFp32, KernelKind::kGemmW4A4, KernelKind::kQuantizeActivations,
    KernelKind::kAttention, KernelKind::kNorm, KernelKind::kLmHead};

// Implementations must be thread-safe: the engine may record from worker threads.
class KernelTimer {
 public:
  virtual ~KernelTimer() = default;
  virtual void Record(KernelKind kind, double seconds) = 0;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_KERNEL_TIMER_H_
