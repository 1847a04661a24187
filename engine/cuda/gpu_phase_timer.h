// Kernel time on the GPU without cost on the hot path: on the steps the engine samples, CUDA
// events are recorded between the phases of the forward pass (a GEMM, an attention, a norm...);
// after the step the time between consecutive events is summed per kernel kind and reported
// once per kind. Unsampled steps (and CUDA-graph replays) record nothing.
#ifndef APEX4_ENGINE_CUDA_GPU_PHASE_TIMER_H_
#define APEX4_ENGINE_CUDA_GPU_PHASE_TIMER_H_

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/kernel_timer.h"

namespace apex4 {

class GpuPhaseTimer {
 public:
  // Room for `max_phases` phases per step.
  static absl::StatusOr<std::unique_ptr<GpuPhaseTimer>> Create(int max_phases);
  ~GpuPhaseTimer();

  // Starts a step's timeline on `stream`.
  void Begin(cudaStream_t stream);
  // The work enqueued on `stream` since the previous mark was of `kind`.
  void Mark(KernelKind kind, cudaStream_t stream);
  // Waits for the step's last event, then records each kind's summed time into `timer`.
  absl::Status Report(KernelTimer* timer);

 private:
  GpuPhaseTimer() = default;

  std::vector<cudaEvent_t> events_;
  std::vector<KernelKind> kinds_;  // kinds_[i]: the work between events_[i] and events_[i + 1]
  size_t used_ = 0;                // events recorded this step
};

}  // namespace apex4

#endif  // APEX4_ENGINE_CUDA_GPU_PHASE_TIMER_H_
