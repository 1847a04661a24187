// The engine's linear layers behind one interface, so that full-precision and 4-bit
// implementations plug into the same model: Y[M, N] = X[M, K] · W[N, K]^T.
#ifndef APEX4_ENGINE_LINEAR_LAYER_H_
#define APEX4_ENGINE_LINEAR_LAYER_H_

#include <cstdint>

#include "engine/kernel_timer.h"

namespace apex4 {

// Thread-safety: Forward is const but may use a shared thread pool, so calls on layers sharing
// a pool must come from one thread at a time (the engine's step).
class LinearLayer {
 public:
  virtual ~LinearLayer() = default;

  virtual int64_t in_features() const = 0;   // K
  virtual int64_t out_features() const = 0;  // N

  // y[i * N + j] = Σ_k x[i * K + k] · W[j, k] for i < m. x and y do not overlap.
  virtual void Forward(const float* x, int64_t m, float* y) const = 0;

  // The kernel-time label Forward's time is recorded under.
  virtual KernelKind kernel_kind() const = 0;
};

}  // namespace apex4

#endif  // APEX4_ENGINE_LINEAR_LAYER_H_
