#include "server/generation_service.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/chat_template.h"
#include "engine/status_macros.h"
#include "server/grpc_status.h"

namespace apex4 {
namespace {

// How often a streaming RPC looks at its client while waiting for tokens: the bound on how long
// a cancelled stream keeps its place in the batch.
constexpr absl::Duration kCancellationPollInterval = absl::Milliseconds(20);

// A client's deadline clock starts before ours (by the network latency), so it hangs up slightly
// before our copy of the deadline passes; within this margin the hang-up is the deadline's doing.
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(100);

absl::Time DeadlineOf(const grpc::ServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

// Why a stream ended early from the client's side: its deadline, or the client itself.
absl::Status Abandoned(const grpc::ServerContext& context) {
  if (absl::Now() + kDeadlineSlack >= DeadlineOf(context)) {
    return absl::DeadlineExceededError("the request's deadline passed");
  }
  return absl::CancelledError("the client cancelled the request or went away");
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kContextFull: return v1::FINISH_REASON_CONTEXT_FULL;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

SamplerConfig ToSamplerConfig(const v1::SamplingParams& params) {
  SamplerConfig config;
  config.temperature = params.temperature();
  config.top_p = params.top_p() == 0 ? 1.0f : params.top_p();
  config.top_k = params.top_k();
  // Without a seed, each request draws its own; with one, the same request repeats exactly.
  config.seed = params.has_seed() ? params.seed() : absl::Uniform<uint64_t>(absl::BitGen());
  return config;
}

// The conversation as prompt tokens: rendered by the template (which writes BOS itself where the
// model wants one); control tokens come only from the template's markup, the messages are text.
absl::StatusOr<std::vector<int32_t>> EncodeChat(const absl::StatusOr<ChatTemplate>& chat_template,
                                                const Tokenizer& tokenizer,
                                                const v1::ChatMessages& chat) {
  if (!chat_template.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("chat: this model has no usable chat template (",
                     chat_template.status().message(), "); send text or token_ids"));
  }
  std::vector<ChatMessage> messages;
  messages.reserve(chat.messages_size());
  for (const v1::ChatMessage& message : chat.messages()) {
    messages.push_back({message.role(), message.content()});
  }
  return chat_template->Encode(messages, /*add_generation_prompt=*/true, tokenizer);
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(const absl::StatusOr<ChatTemplate>& chat_template,
                                                  const Tokenizer& tokenizer,
                                                  const v1::GenerateRequest& request) {
  switch (request.input_case()) {
    case v1::GenerateRequest::kTokenIds:
      return std::vector<int32_t>(request.token_ids().ids().begin(),
                                  request.token_ids().ids().end());
    case v1::GenerateRequest::kChat: return EncodeChat(chat_template, tokenizer, request.chat());
    case v1::GenerateRequest::kText:
      // Raw prompts may write control tokens (generation.proto documents it).
      return tokenizer.Encode(request.text(), tokenizer.add_bos(), /*parse_special=*/true);
    case v1::GenerateRequest::INPUT_NOT_SET: break;
  }
  return absl::InvalidArgumentError("input: one of text, token_ids or chat is required");
}

}  // namespace

GenerationService::GenerationService(ServerMetrics* metrics, GenerationServiceOptions options)
    : metrics_(metrics), options_(std::move(options)) {}

GenerationService::~GenerationService() = default;

void GenerationService::StartServing(const InferenceEngine* engine, Scheduler* scheduler,
                                     ExecutionPlan plan) {
  RequestLimits limits = options_.limits;
  limits.vocab_size = engine->info().vocab_size;
  const Tokenizer& tokenizer = engine->tokenizer();
  absl::StatusOr<std::string> bos_text = tokenizer.TokenPiece(tokenizer.bos_id(), true);
  served_model_.reset(
      new ServedModel{engine, scheduler, limits,
                      ChatTemplate::FromJinja(tokenizer.chat_template(), bos_text.value_or("")),
                      std::move(plan)});
  model_.store(served_model_.get(), std::memory_order_release);
}

grpc::Status GenerationService::Serve(absl::string_view method, absl::string_view request_id,
                                      absl::FunctionRef<absl::Status(const ServedModel&)> handler) {
  const absl::Time start = absl::Now();
  const ServedModel* model = model_.load(std::memory_order_acquire);
  const absl::Status status =
      model != nullptr ? handler(*model) : absl::UnavailableError("the model is still loading");
  const grpc::Status grpc_status = ToGrpcStatus(status);
  metrics_->RecordRequest(method, grpc_status.error_code(),
                          absl::ToDoubleSeconds(absl::Now() - start));
  if (!status.ok()) {
    std::fprintf(stderr, "[apex4] %s request_id=\"%s\" failed: %s\n", std::string(method).c_str(),
                 std::string(request_id.substr(0, 64)).c_str(), status.ToString().c_str());
  }
  return grpc_status;
}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const v1::GenerateRequest* request,
                                         grpc::ServerWriter<v1::GenerateResponse>* writer) {
  return Serve("Generate", request->request_id(), [&](const ServedModel& model) {
    return StreamGeneration(model, context, *request, writer);
  });
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext* context,
                                         const v1::TokenizeRequest* request,
                                         v1::TokenizeResponse* response) {
  return Serve("Tokenize", "",
               [&](const ServedModel& model) { return TokenizeText(model, *request, response); });
}

grpc::Status GenerationService::GetModelInfo(grpc::ServerContext* context,
                                             const v1::GetModelInfoRequest* request,
                                             v1::ModelInfo* response) {
  return Serve("GetModelInfo", "", [&](const ServedModel& model) {
    DescribeModel(model, response);
    return absl::OkStatus();
  });
}

absl::Status GenerationService::TokenizeText(const ServedModel& model,
                                             const v1::TokenizeRequest& request,
                                             v1::TokenizeResponse* response) const {
  RETURN_IF_ERROR(ValidateTokenizeRequest(request, model.limits));
  const Tokenizer& tokenizer = model.engine->tokenizer();
  const bool add_bos = (!request.has_add_bos() || request.add_bos()) && tokenizer.add_bos();
  std::vector<int32_t> ids;
  if (request.has_chat()) {
    ASSIGN_OR_RETURN(ids, EncodeChat(model.chat_template, tokenizer, request.chat()));
  } else {
    ASSIGN_OR_RETURN(ids, tokenizer.Encode(request.text(), add_bos, /*parse_special=*/true));
  }
  for (int32_t id : ids) {
    response->add_token_ids(id);
    ASSIGN_OR_RETURN(*response->add_tokens(), tokenizer.TokenText(id));
  }
  return absl::OkStatus();
}

void GenerationService::DescribeModel(const ServedModel& model, v1::ModelInfo* response) const {
  const EngineInfo& info = model.engine->info();
  response->set_name(info.name);
  response->set_architecture(info.architecture);
  response->set_format(info.format);
  response->set_quantization(info.quantization);
  response->set_vocab_size(info.vocab_size);
  response->set_context_length(info.context_length);
  response->set_num_layers(info.num_layers);
  response->set_hidden_size(info.hidden_size);
  response->set_backend(info.backend);
  response->set_kv_cache_bits(info.kv_cache_bits);
  response->set_max_batch_size(options_.max_batch_size);
  response->set_max_tokens_limit(model.limits.max_tokens_limit);
  response->set_rho(model.plan.rho);
  for (const LayerPlanDecision& layer : model.plan.layers) {
    v1::LayerPlan* entry = response->add_plan();
    entry->set_layer(layer.name);
    // The decode kernel (smallest M bucket): what a streaming request runs most of the time.
    entry->set_kernel(layer.buckets.empty() ? "" : layer.buckets.front().kernel);
    entry->set_weight_granularity(layer.granularity);
    entry->set_reason(layer.reason);
  }
}

absl::Status GenerationService::StreamGeneration(
    const ServedModel& model, grpc::ServerContext* context, const v1::GenerateRequest& request,
    grpc::ServerWriter<v1::GenerateResponse>* writer) const {
  RETURN_IF_ERROR(ValidateGenerateRequest(request, model.limits));
  GenerationOptions options;
  ASSIGN_OR_RETURN(options.prompt,
                   PromptTokens(model.chat_template, model.engine->tokenizer(), request));
  const v1::SamplingParams& sampling = request.sampling();
  options.sampling = ToSamplerConfig(sampling);
  options.max_tokens =
      sampling.max_tokens() > 0 ? sampling.max_tokens() : options_.default_max_tokens;
  options.stop.assign(sampling.stop().begin(), sampling.stop().end());
  options.stop_at_end_of_generation = !sampling.ignore_eos();
  options.deadline = DeadlineOf(*context);
  ASSIGN_OR_RETURN(std::shared_ptr<GenerationStream> stream,
                   model.scheduler->Submit(std::move(options)));
  v1::GenerateResponse response;
  while (true) {
    GenerationStream::Output output = stream->Next(kCancellationPollInterval);
    for (GenerationChunk& chunk : output.chunks) {
      response.Clear();
      response.set_text(std::move(chunk.text));
      response.mutable_token_ids()->Add(chunk.token_ids.begin(), chunk.token_ids.end());
      if (!writer->Write(response)) {
        stream->Cancel();
        return Abandoned(*context);
      }
    }
    if (output.end.has_value()) {
      RETURN_IF_ERROR(output.end->status());
      const GenerationSummary& summary = **output.end;
      response.Clear();
      response.set_finish_reason(ToProto(summary.finish_reason));
      v1::Usage* usage = response.mutable_usage();
      usage->set_prompt_tokens(summary.prompt_tokens);
      usage->set_completion_tokens(summary.completion_tokens);
      usage->set_time_to_first_token_seconds(summary.time_to_first_token_seconds);
      usage->set_total_seconds(summary.total_seconds);
      if (!writer->Write(response)) return Abandoned(*context);
      return absl::OkStatus();
    }
    if (context->IsCancelled()) {
      stream->Cancel();
      return Abandoned(*context);
    }
  }
}

}  // namespace apex4
