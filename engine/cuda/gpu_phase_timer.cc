#include "engine/cuda/gpu_phase_timer.h"

#include <iterator>

#include "engine/cuda/device_memory.h"
#include "engine/status_macros.h"

namespace apex4 {

absl::StatusOr<std::unique_ptr<GpuPhaseTimer>> GpuPhaseTimer::Create(int max_phases) {
  std::unique_ptr<GpuPhaseTimer> timer(new GpuPhaseTimer());
  timer->events_.resize(max_phases + 1);
  timer->kinds_.resize(max_phases);
  for (cudaEvent_t& event : timer->events_) {
    RETURN_IF_ERROR(CudaCall(cudaEventCreate(&event), "creating a timing event"));
  }
  return timer;
}

GpuPhaseTimer::~GpuPhaseTimer() {
  for (cudaEvent_t event : events_) {
    if (event != nullptr) cudaEventDestroy(event);
  }
}

void GpuPhaseTimer::Begin(cudaStream_t stream) {
  used_ = 1;
  cudaEventRecord(events_[0], stream);
}

void GpuPhaseTimer::Mark(KernelKind kind, cudaStream_t stream) {
  if (used_ == 0 || used_ >= events_.size()) return;  // not begun, or out of room: unrecorded
  kinds_[used_ - 1] = kind;
  cudaEventRecord(events_[used_++], stream);
}

absl::Status GpuPhaseTimer::Report(KernelTimer* timer) {
  if (used_ < 2) return absl::OkStatus();
  RETURN_IF_ERROR(CudaCall(cudaEventSynchronize(events_[used_ - 1]), "waiting for a timed step"));
  double seconds[std::size(kAllKernelKinds)] = {};
  for (size_t i = 0; i + 1 < used_; ++i) {
    float ms = 0;
    RETURN_IF_ERROR(
        CudaCall(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]), "reading a timing event"));
    seconds[static_cast<int>(kinds_[i])] += ms * 1e-3;
  }
  used_ = 0;
  if (timer == nullptr) return absl::OkStatus();
  for (KernelKind kind : kAllKernelKinds) {
    if (seconds[static_cast<int>(kind)] > 0) timer->Record(kind, seconds[static_cast<int>(kind)]);
  }
  return absl::OkStatus();
}

}  // namespace apex4
