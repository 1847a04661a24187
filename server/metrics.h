// Every Prometheus metric the server exports, declared once with fixed label sets, and the
// exposer that serves them on their own port. Also the engine's KernelTimer, so kernel time
// lands in the same registry. Thread-safe: prometheus-cpp metrics are atomic.
#ifndef APEX4_SERVER_METRICS_H_
#define APEX4_SERVER_METRICS_H_

#include <array>
#include <cstdint>
#include <iterator>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/kernel_timer.h"
#include "engine/planner/node_profile.h"
#include "engine/planner/planner.h"
#include "grpcpp/support/status_code_enum.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace apex4 {

class ServerMetrics : public KernelTimer {
 public:
  ServerMetrics();
  ~ServerMetrics() override;

  // Serves the registry at http://<all interfaces>:port/metrics. Port 0 picks a free one.
  // UNAVAILABLE when the port cannot be bound.
  absl::Status StartExposer(int port);
  // The bound port once StartExposer succeeded, else 0.
  int exposer_port() const;

  // One finished RPC: counted by method and final code, and timed.
  void RecordRequest(absl::string_view method, grpc::StatusCode code, double seconds);
  void AddPromptTokens(int64_t count) { prompt_tokens_->Increment(count); }
  void AddGeneratedTokens(int64_t count) { generated_tokens_->Increment(count); }
  void ObserveTimeToFirstToken(double seconds) { time_to_first_token_->Observe(seconds); }
  void ObserveTimePerOutputToken(double seconds) { time_per_output_token_->Observe(seconds); }
  void SetQueueDepth(int64_t depth) { queue_depth_->Set(depth); }
  void SetBatchSize(int64_t size) { batch_size_->Set(size); }
  void SetKvCacheBlocksInUse(int64_t blocks) { kv_cache_blocks_in_use_->Set(blocks); }

  // The node's profile and plan, set once at start-up: apex4_node_rho{device, source} and one
  // apex4_layer_plan_info{layer, granularity, kernel} = 1 series per planned layer.
  void SetNodePlan(const NodeProfile& profile, bool probed, const ExecutionPlan& plan);

  // KernelTimer: called by the engine, possibly from its worker threads.
  void Record(KernelKind kind, double seconds) override;

  const std::shared_ptr<prometheus::Registry>& registry() const { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;

  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* request_duration_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generated_tokens_;
  prometheus::Histogram* time_to_first_token_;
  prometheus::Histogram* time_per_output_token_;
  prometheus::Gauge* queue_depth_;
  prometheus::Gauge* batch_size_;
  prometheus::Gauge* kv_cache_blocks_in_use_;
  prometheus::Family<prometheus::Gauge>* node_rho_;
  prometheus::Family<prometheus::Gauge>* layer_plan_;
  // Indexed by KernelKind, one series per kind created up front.
  std::array<prometheus::Histogram*, std::size(kAllKernelKinds)> kernel_seconds_;
};

}  // namespace apex4

#endif  // APEX4_SERVER_METRICS_H_
