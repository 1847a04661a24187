// apex4_server: serves one model over gRPC (apex4.v1.Generation, grpc.health.v1, reflection) with
// Prometheus metrics on a separate port. Start-up: validate flags, open both ports (health says
// NOT_SERVING), load the model, then SERVING. SIGTERM or SIGINT: NOT_SERVING, refuse new
// streams, let in-flight ones finish within --shutdown_grace_seconds, exit 0. With
// --tls_cert_file and --tls_key_file the gRPC port speaks TLS (and with --tls_client_ca_file
// requires client certificates); the metrics port is always plain HTTP.
#include <signal.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/cpu_engine.h"
#include "engine/planner/node_planning.h"
#include "engine/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "server/generation_service.h"
#include "server/malformed_request_interceptor.h"
#include "server/metrics.h"
#include "server/scheduler.h"
#include "server/tls_credentials.h"

ABSL_FLAG(int, grpc_port, 50051, "Port of the gRPC API, health and reflection (0: any free one).");
ABSL_FLAG(int, metrics_port, 9090, "Port of the Prometheus /metrics endpoint (0: any free one).");
ABSL_FLAG(std::string, model, "models/SmolLM2-135M-Instruct.Q4_1.gguf",
          "Model to serve: a .gguf file, a Hugging Face directory or an apex4 checkpoint.");
ABSL_FLAG(int, max_batch_size, 8, "Most sequences advanced together in one forward step.");
ABSL_FLAG(int, max_queue_size, 64,
          "Most Generate requests waiting for a batch slot; more get RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_tokens_limit, 2048, "Largest sampling.max_tokens a request may ask for.");
ABSL_FLAG(int, default_max_tokens, 256, "max_tokens of requests that leave it 0.");
ABSL_FLAG(int, kv_cache_mb, 512, "Memory for the KV cache of all sequences, in MiB.");
ABSL_FLAG(int, threads, 0, "Compute threads of the engine (0: all cores).");
ABSL_FLAG(std::string, profile, "",
          "Node compute profile (JSON). Empty: the APEX4_PROFILE environment variable, if set.");
ABSL_FLAG(
    int, shutdown_grace_seconds, 25,
    "After SIGTERM, how long in-flight streams may take to finish before they are cancelled.");
ABSL_FLAG(int, max_message_bytes, 4 << 20, "Largest gRPC message accepted or sent, in bytes.");
ABSL_FLAG(std::string, tls_cert_file, "",
          "PEM certificate chain (leaf first) of the gRPC port; with --tls_key_file turns on TLS. "
          "Empty: plaintext. The metrics port stays plain HTTP.");
ABSL_FLAG(std::string, tls_key_file, "",
          "PEM private key (not encrypted) of --tls_cert_file; the two go together.");
ABSL_FLAG(std::string, tls_client_ca_file, "",
          "PEM CA certificate(s): when set, every gRPC client must present a certificate they "
          "signed (mutual TLS). Needs --tls_cert_file and --tls_key_file.");

namespace apex4 {
namespace {

// The sync gRPC server runs each call on its own thread, within a thread quota that caps the
// threads a flood of calls can create. Generate calls are bounded by the scheduler (running plus
// queued), and the quota leaves room for health checks, Tokenize, GetModelInfo and reflection.
// gRPC 1.51 charges its polling threads to the same quota and, measured, admitted only about 41
// concurrent streams under a quota of 88: hence two units per admissible stream.
constexpr int kThreadQuotaPerStream = 2;
constexpr int kExtraRpcThreads = 16;

absl::Status CheckRange(const char* flag, int value, int low, int high) {
  if (value >= low && value <= high) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, "=", value, " is outside [", low, ", ", high, "]"));
}

absl::Status ValidateFlags() {
  RETURN_IF_ERROR(CheckRange("grpc_port", absl::GetFlag(FLAGS_grpc_port), 0, 65535));
  RETURN_IF_ERROR(CheckRange("metrics_port", absl::GetFlag(FLAGS_metrics_port), 0, 65535));
  if (absl::GetFlag(FLAGS_grpc_port) != 0 &&
      absl::GetFlag(FLAGS_grpc_port) == absl::GetFlag(FLAGS_metrics_port)) {
    return absl::InvalidArgumentError("--grpc_port and --metrics_port must differ");
  }
  if (absl::GetFlag(FLAGS_model).empty()) return absl::InvalidArgumentError("--model is empty");
  RETURN_IF_ERROR(CheckRange("max_batch_size", absl::GetFlag(FLAGS_max_batch_size), 1, 256));
  RETURN_IF_ERROR(CheckRange("max_queue_size", absl::GetFlag(FLAGS_max_queue_size), 0, 65536));
  RETURN_IF_ERROR(
      CheckRange("max_tokens_limit", absl::GetFlag(FLAGS_max_tokens_limit), 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("default_max_tokens", absl::GetFlag(FLAGS_default_max_tokens), 1,
                             absl::GetFlag(FLAGS_max_tokens_limit)));
  RETURN_IF_ERROR(CheckRange("kv_cache_mb", absl::GetFlag(FLAGS_kv_cache_mb), 1, 1 << 20));
  RETURN_IF_ERROR(CheckRange("threads", absl::GetFlag(FLAGS_threads), 0, 4096));
  RETURN_IF_ERROR(
      CheckRange("shutdown_grace_seconds", absl::GetFlag(FLAGS_shutdown_grace_seconds), 0, 3600));
  RETURN_IF_ERROR(
      CheckRange("max_message_bytes", absl::GetFlag(FLAGS_max_message_bytes), 1024, INT_MAX));
  return absl::OkStatus();
}

std::string ProfilePath() {
  std::string path = absl::GetFlag(FLAGS_profile);
  if (path.empty()) {
    if (const char* env = std::getenv("APEX4_PROFILE")) path = env;
  }
  return path;
}

// Blocks SIGTERM and SIGINT in this thread and every thread started after it, so that only the
// sigwait() in Serve() receives them.
sigset_t BlockShutdownSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  health->SetServingStatus(serving);  // the server as a whole ("")
  health->SetServingStatus(v1::Generation::service_full_name(), serving);
}

void LogNodePlan(const NodePlan& node) {
  std::fprintf(stderr, "[apex4] node profile: %s; rho %.1f\n", node.resolved.explanation.c_str(),
               node.plan.rho);
  for (const LayerPlanDecision& layer : node.plan.layers) {
    std::fprintf(stderr, "[apex4] plan %s: %s, decode kernel %s (%s)\n", layer.name.c_str(),
                 layer.granularity.c_str(),
                 layer.buckets.empty() ? "-" : layer.buckets.front().kernel.c_str(),
                 layer.reason.c_str());
  }
}

absl::Status Serve(const sigset_t& shutdown_signals) {
  RETURN_IF_ERROR(ValidateFlags());
  const std::string profile = ProfilePath();
  ASSIGN_OR_RETURN(
      const ServerTransport transport,
      MakeServerTransport({absl::GetFlag(FLAGS_tls_cert_file), absl::GetFlag(FLAGS_tls_key_file),
                           absl::GetFlag(FLAGS_tls_client_ca_file)}));

  ServerMetrics metrics;
  RETURN_IF_ERROR(metrics.StartExposer(absl::GetFlag(FLAGS_metrics_port)));

  GenerationServiceOptions service_options;
  service_options.limits.max_tokens_limit = absl::GetFlag(FLAGS_max_tokens_limit);
  service_options.default_max_tokens = absl::GetFlag(FLAGS_default_max_tokens);
  service_options.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  GenerationService service(&metrics, service_options);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ResourceQuota quota("apex4_server");
  quota.SetMaxThreads(kThreadQuotaPerStream * (absl::GetFlag(FLAGS_max_batch_size) +
                                               absl::GetFlag(FLAGS_max_queue_size)) +
                      kExtraRpcThreads);
  int grpc_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("0.0.0.0:", absl::GetFlag(FLAGS_grpc_port)),
                           transport.credentials, &grpc_port);
  builder.SetResourceQuota(quota);
  // Without this a second server on the same port would silently share its traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.SetMaxSendMessageSize(absl::GetFlag(FLAGS_max_message_bytes));
  builder.RegisterService(&service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<MalformedRequestInterceptorFactory>(&metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || grpc_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on port ", absl::GetFlag(FLAGS_grpc_port)));
  }
  SetHealth(*server, false);
  std::fprintf(stderr,
               "[apex4] gRPC on port %d (%s), metrics on port %d (plain HTTP); loading %s\n",
               grpc_port, transport.description.c_str(), metrics.exposer_port(),
               absl::GetFlag(FLAGS_model).c_str());

  EngineOptions engine_options;
  engine_options.model_path = absl::GetFlag(FLAGS_model);
  engine_options.threads =
      absl::GetFlag(FLAGS_threads) > 0
          ? absl::GetFlag(FLAGS_threads)
          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  engine_options.kv_cache_mb = absl::GetFlag(FLAGS_kv_cache_mb);
  engine_options.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  absl::StatusOr<std::unique_ptr<InferenceEngine>> engine = LoadCpuEngine(engine_options);
  if (!engine.ok()) {
    server->Shutdown();
    return engine.status();
  }
  (*engine)->set_kernel_timer(&metrics);
  NodePlanningOptions planning;
  planning.profile_path = profile;
  planning.threads = engine_options.threads;
  absl::StatusOr<NodePlan> node = PlanAndApply(**engine, planning);
  if (!node.ok()) {
    server->Shutdown();
    return node.status();
  }
  LogNodePlan(*node);
  metrics.SetNodePlan(node->resolved.profile, node->resolved.probed, node->plan);
  SchedulerOptions scheduler_options;
  scheduler_options.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
  scheduler_options.max_queue_size = absl::GetFlag(FLAGS_max_queue_size);
  Scheduler scheduler(engine->get(), &metrics, scheduler_options);
  service.StartServing(engine->get(), &scheduler, std::move(node->plan));
  SetHealth(*server, true);
  const EngineInfo& info = (*engine)->info();
  std::fprintf(stderr, "[apex4] serving %s (%s, %s, %s)\n", info.name.c_str(), info.format.c_str(),
               info.quantization.c_str(), info.backend.c_str());

  int signal_number = 0;
  sigwait(&shutdown_signals, &signal_number);
  const int grace_seconds = absl::GetFlag(FLAGS_shutdown_grace_seconds);
  std::fprintf(stderr, "[apex4] %s: draining for up to %d s\n", strsignal(signal_number),
               grace_seconds);
  SetHealth(*server, false);
  // Refuses new calls at once, waits for running ones until the deadline, then cancels them.
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(grace_seconds)));
  scheduler.Stop();
  std::fprintf(stderr, "[apex4] stopped\n");
  return absl::OkStatus();
}

}  // namespace
}  // namespace apex4

int main(int argc, char** argv) {
  const sigset_t shutdown_signals = apex4::BlockShutdownSignals();
  absl::SetProgramUsageMessage("Serves a W4A4 language model over gRPC. Flags: --helpfull.");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = apex4::Serve(shutdown_signals);
  if (!status.ok()) {
    std::fprintf(stderr, "[apex4] error: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
