#include "server/metrics.h"

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace apex4 {
namespace {

// Bucket upper bounds growing by `factor` from `start`: `count` of them.
prometheus::Histogram::BucketBoundaries ExponentialBuckets(double start, double factor, int count) {
  prometheus::Histogram::BucketBoundaries bounds;
  for (double bound = start; count-- > 0; bound *= factor) bounds.push_back(bound);
  return bounds;
}

// Request latency spans a Tokenize call (~1 ms) to a long generation (minutes).
const prometheus::Histogram::BucketBoundaries& RequestBuckets() {
  static const auto* buckets = new auto(ExponentialBuckets(0.001, 2.5, 14));  // 1 ms .. ~150 s
  return *buckets;
}
const prometheus::Histogram::BucketBoundaries& TokenLatencyBuckets() {
  static const auto* buckets = new auto(ExponentialBuckets(0.0005, 2, 16));  // 0.5 ms .. ~16 s
  return *buckets;
}
const prometheus::Histogram::BucketBoundaries& KernelBuckets() {
  static const auto* buckets = new auto(ExponentialBuckets(1e-6, 4, 12));  // 1 us .. ~4 s
  return *buckets;
}

}  // namespace

ServerMetrics::ServerMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("apex4_requests_total")
                   .Help("Finished RPCs by method and gRPC status code.")
                   .Register(*registry_);
  request_duration_ = &prometheus::BuildHistogram()
                           .Name("apex4_request_duration_seconds")
                           .Help("Wall time of an RPC from arrival to its final status.")
                           .Register(*registry_);
  prompt_tokens_ = &prometheus::BuildCounter()
                        .Name("apex4_prompt_tokens_total")
                        .Help("Prompt tokens prefilled.")
                        .Register(*registry_)
                        .Add({});
  generated_tokens_ = &prometheus::BuildCounter()
                           .Name("apex4_generated_tokens_total")
                           .Help("Tokens generated (sampled) for all requests.")
                           .Register(*registry_)
                           .Add({});
  time_to_first_token_ = &prometheus::BuildHistogram()
                              .Name("apex4_time_to_first_token_seconds")
                              .Help("From a Generate's arrival in the queue to its first token.")
                              .Register(*registry_)
                              .Add({}, TokenLatencyBuckets());
  time_per_output_token_ = &prometheus::BuildHistogram()
                                .Name("apex4_time_per_output_token_seconds")
                                .Help("Mean time between tokens after the first, per request.")
                                .Register(*registry_)
                                .Add({}, TokenLatencyBuckets());
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("apex4_queue_depth")
                      .Help("Generate requests waiting to join the running batch.")
                      .Register(*registry_)
                      .Add({});
  batch_size_ = &prometheus::BuildGauge()
                     .Name("apex4_batch_size")
                     .Help("Sequences in the running batch.")
                     .Register(*registry_)
                     .Add({});
  kv_cache_blocks_in_use_ = &prometheus::BuildGauge()
                                 .Name("apex4_kv_cache_blocks_in_use")
                                 .Help("KV-cache blocks held by live sequences.")
                                 .Register(*registry_)
                                 .Add({});
  node_rho_ = &prometheus::BuildGauge()
                   .Name("apex4_node_rho")
                   .Help("Tensor-core integer throughput over FP32 FMA throughput of this node's "
                         "device (APEX4's rho), from its profile; source is 'file' or 'probe'.")
                   .Register(*registry_);
  layer_plan_ = &prometheus::BuildGauge()
                     .Name("apex4_layer_plan_info")
                     .Help("The planner's choice for each 4-bit layer: granularity and decode "
                           "kernel (value 1).")
                     .Register(*registry_);
  auto& kernel_family = prometheus::BuildHistogram()
                            .Name("apex4_kernel_seconds")
                            .Help("Time spent in each kind of kernel, per call.")
                            .Register(*registry_);
  for (KernelKind kind : kAllKernelKinds) {
    kernel_seconds_[static_cast<size_t>(kind)] =
        &kernel_family.Add({{"kernel", KernelKindName(kind)}}, KernelBuckets());
  }
}

ServerMetrics::~ServerMetrics() = default;

void ServerMetrics::SetNodePlan(const NodeProfile& profile, bool probed,
                                const ExecutionPlan& plan) {
  node_rho_->Add({{"device", profile.device.name}, {"source", probed ? "probe" : "file"}})
      .Set(plan.rho);
  for (const LayerPlanDecision& layer : plan.layers) {
    const std::string kernel = layer.buckets.empty() ? "" : layer.buckets.front().kernel;
    layer_plan_->Add({{"layer", layer.name}, {"granularity", layer.granularity}, {"kernel", kernel}})
        .Set(1);
  }
}

absl::Status ServerMetrics::StartExposer(int port) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(absl::StrCat("0.0.0.0:", port));
  } catch (const std::exception& e) {  // civetweb reports a busy port by throwing
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on port ", port, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  return absl::OkStatus();
}

int ServerMetrics::exposer_port() const {
  if (exposer_ == nullptr) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

void ServerMetrics::RecordRequest(absl::string_view method, grpc::StatusCode code, double seconds) {
  const std::string method_label(method);
  requests_->Add({{"method", method_label}, {"code", GrpcCodeName(code)}}).Increment();
  request_duration_->Add({{"method", method_label}}, RequestBuckets()).Observe(seconds);
}

void ServerMetrics::Record(KernelKind kind, double seconds) {
  kernel_seconds_[static_cast<size_t>(kind)]->Observe(seconds);
}

}  // namespace apex4
