// The apex4.v1.Generation gRPC service: turns requests into scheduler submissions and tokenizer
// calls, and results back into responses. Every RPC goes through one wrapper that times it,
// converts its status once, counts it by code and logs failures. The service is registered before
// the model loads (so health can say NOT_SERVING meanwhile) and answers UNAVAILABLE until
// StartServing().
#ifndef APEX4_SERVER_GENERATION_SERVICE_H_
#define APEX4_SERVER_GENERATION_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "apex4/v1/generation.grpc.pb.h"
#include "engine/chat_template.h"
#include "engine/inference_engine.h"
#include "server/metrics.h"
#include "server/request_validation.h"
#include "server/scheduler.h"

namespace apex4 {

struct GenerationServiceOptions {
  RequestLimits limits;  // vocab_size comes from the engine
  int32_t default_max_tokens = 256;
  int32_t max_batch_size = 8;  // reported by GetModelInfo
};

class GenerationService final : public v1::Generation::Service {
 public:
  // `metrics` must outlive the service.
  GenerationService(ServerMetrics* metrics, GenerationServiceOptions options);
  ~GenerationService() override;

  // Serves `engine` (read only through its thread-safe info() and tokenizer()) through
  // `scheduler` from now on; GetModelInfo reports `plan` (the node planner's choices). Call once;
  // engine and scheduler must outlive the service.
  void StartServing(const InferenceEngine* engine, Scheduler* scheduler, ExecutionPlan plan);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

 private:
  struct ServedModel {
    const InferenceEngine* engine;
    Scheduler* scheduler;
    RequestLimits limits;
    absl::StatusOr<ChatTemplate> chat_template;  // error: chat requests get it
    ExecutionPlan plan;
  };

  // The cross-cutting part of every RPC; `handler` runs only once a model is served.
  grpc::Status Serve(absl::string_view method, absl::string_view request_id,
                     absl::FunctionRef<absl::Status(const ServedModel&)> handler);

  absl::Status StreamGeneration(const ServedModel& model, grpc::ServerContext* context,
                                const v1::GenerateRequest& request,
                                grpc::ServerWriter<v1::GenerateResponse>* writer) const;
  absl::Status TokenizeText(const ServedModel& model, const v1::TokenizeRequest& request,
                            v1::TokenizeResponse* response) const;
  void DescribeModel(const ServedModel& model, v1::ModelInfo* response) const;

  ServerMetrics* const metrics_;
  const GenerationServiceOptions options_;
  std::unique_ptr<const ServedModel> served_model_;  // owns what model_ points to
  std::atomic<const ServedModel*> model_{nullptr};   // published once by StartServing
};

}  // namespace apex4

#endif  // APEX4_SERVER_GENERATION_SERVICE_H_
