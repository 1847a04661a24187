// apex4_server: serves one model over gRPC (apex4.v1.Generation, grpc.health.v1, reflection) with
// Prometheus metrics on a separate port. Start-up: validate flags, open both ports (health says
// NOT_SERVING), load the model, then SERVING. SIGTERM or SIGINT: NOT_SERVING, refuse new
// streams, let in-flight ones finish within --shutdown_grace_seconds, exit 0. With
// --tls_cert_file and --tls_key_file the gRPC port speaks TLS (and with --tls_client_ca_file
// requires client certificates); the metrics port is always plain HTTP. The model runs on one
// CUDA GPU or on the CPU (--backend; auto picks the GPU when this binary can use one).
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
#include "engine/cuda/cuda_engine.h"
#include "engine/planner/cuda_probe.h"
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
ABSL_FLAG(std::string, backend, "auto",
          "Where the model runs: cuda (one GPU, --cuda_device), cpu, or auto: cuda when a CUDA "
          "device is present that this binary has kernels for (sm_80/86/89/90), else cpu. The "
          "start-up log names the choice and why.");
ABSL_FLAG(int, cuda_device, 0, "CUDA device index (--backend=cuda or auto).");
ABSL_FLAG(std::string, gpu_weights, "",
          "CUDA: format of the linear layers: w4a4, bf16 (cuBLAS) or fp8 (cuBLASLt W8A8). Empty: "
          "the model's own (apex4 checkpoint: w4a4; GGUF: bf16; synthetic: w4a4).");
ABSL_FLAG(std::string, tokenizer, "",
          "CUDA: GGUF file whose tokenizer a --model=synthetic:<shape> model uses (shapes "
          "llama-2-7b, llama-2-70b, llama-3-8b: random weights, for speed measurements).");
ABSL_FLAG(int, kv_cache_mb, -1,
          "Memory for the KV cache of all sequences, in MiB. -1: the backend's default, 512 on "
          "the CPU and 0 on CUDA. CUDA: 0 sizes it from the GPU memory left after the weights "
          "and buffers (keeping max(1 GiB, 5%) of the card free).");
ABSL_FLAG(int, kv_cache_bits, 0,
          "Bits per key and value in the KV cache. 0: the model's own choice: a checkpoint's "
          "kv_cache (tools/quantizer --kv-bits), 16-bit otherwise; 4 or 16 overrides it. 4: INT4 "
          "per token and KV head (the CPU keeps the dequantized values in FP32, so it saves no "
          "memory there).");
ABSL_FLAG(int, prefill_chunk_tokens, 256,
          "Prompt tokens one sequence feeds per step: bounds the stall a long prompt causes the "
          "other sequences.");
ABSL_FLAG(int64_t, max_step_tokens, 0,
          "Most tokens of one forward step, all sequences together (at least --max_batch_size); "
          "the scheduler never sends more, and CUDA sizes its step buffers for it. 0: "
          "--max_batch_size x --prefill_chunk_tokens.");
ABSL_FLAG(bool, cuda_graphs, true, "CUDA: replay decode steps (one token per sequence) as graphs.");
ABSL_FLAG(int, threads, 0, "Compute threads of the CPU engine (0: all cores).");
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
  RETURN_IF_ERROR(CheckRange("threads", absl::GetFlag(FLAGS_threads), 0, 4096));
  const std::string backend = absl::GetFlag(FLAGS_backend);
  if (backend != "auto" && backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be auto, cpu or cuda, got '", backend, "'"));
  }
  const std::string gpu_weights = absl::GetFlag(FLAGS_gpu_weights);
  if (!gpu_weights.empty() && gpu_weights != "w4a4" && gpu_weights != "bf16" &&
      gpu_weights != "fp8") {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu_weights must be empty, w4a4, bf16 or fp8, got '", gpu_weights, "'"));
  }
  if (backend == "cpu" && !gpu_weights.empty()) {
    return absl::InvalidArgumentError("--gpu_weights is for the CUDA backend, not --backend=cpu");
  }
  if (backend == "cpu" && !absl::GetFlag(FLAGS_tokenizer).empty()) {
    return absl::InvalidArgumentError("--tokenizer is for the CUDA backend, not --backend=cpu");
  }
  RETURN_IF_ERROR(CheckRange("cuda_device", absl::GetFlag(FLAGS_cuda_device), 0, 1023));
  const int kv_cache_bits = absl::GetFlag(FLAGS_kv_cache_bits);
  if (kv_cache_bits != 0 && kv_cache_bits != 4 && kv_cache_bits != 16) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--kv_cache_bits must be 0 (the model's own choice), 4 or 16, got ", kv_cache_bits));
  }
  RETURN_IF_ERROR(
      CheckRange("prefill_chunk_tokens", absl::GetFlag(FLAGS_prefill_chunk_tokens), 1, 1 << 20));
  const int64_t max_step_tokens = absl::GetFlag(FLAGS_max_step_tokens);
  if (max_step_tokens != 0 &&
      (max_step_tokens < absl::GetFlag(FLAGS_max_batch_size) || max_step_tokens > (1 << 24))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_step_tokens=", max_step_tokens, " must be 0 or in [--max_batch_size (",
        absl::GetFlag(FLAGS_max_batch_size), "), ", 1 << 24, "]: every running sequence "
        "advances by at least one token per step"));
  }
  RETURN_IF_ERROR(
      CheckRange("shutdown_grace_seconds", absl::GetFlag(FLAGS_shutdown_grace_seconds), 0, 3600));
  RETURN_IF_ERROR(
      CheckRange("max_message_bytes", absl::GetFlag(FLAGS_max_message_bytes), 1024, INT_MAX));
  return absl::OkStatus();
}

// The backend that serves, after --backend=auto is resolved, and why.
struct BackendChoice {
  bool cuda = false;
  std::string reason;
};

BackendChoice ChooseBackend() {
  const std::string flag = absl::GetFlag(FLAGS_backend);
  if (flag == "cpu") return {false, "--backend=cpu"};
  if (flag == "cuda") return {true, "--backend=cuda"};
  const int device = absl::GetFlag(FLAGS_cuda_device);
  absl::StatusOr<CudaDeviceFacts> gpu = FindUsableCudaDevice(device);
  if (gpu.ok()) {
    return {true, absl::StrCat("--backend=auto found CUDA device ", device, ": ", gpu->name,
                               " (sm_", gpu->compute_capability, ", driver ", gpu->driver, ")")};
  }
  return {false, absl::StrCat("--backend=auto found no GPU to use (", gpu.status().message(),
                              ")")};
}

// --kv_cache_mb for the chosen backend: -1 is the backend's default (CPU 512 MiB, CUDA 0: from
// free memory); 0 is only meaningful on CUDA.
absl::StatusOr<int> KvCacheMb(bool cuda) {
  const int flag = absl::GetFlag(FLAGS_kv_cache_mb);
  if (flag == -1) return cuda ? 0 : 512;
  if (cuda) {
    RETURN_IF_ERROR(CheckRange("kv_cache_mb", flag, 0, 1 << 24));
  } else if (flag < 1 || flag > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--kv_cache_mb=", flag, " is outside [1, ", 1 << 20,
                     "] for the CPU backend (0, sized from free GPU memory, is for CUDA)"));
  }
  return flag;
}

int64_t MaxStepTokens() {
  const int64_t flag = absl::GetFlag(FLAGS_max_step_tokens);
  return flag > 0 ? flag
                  : int64_t{absl::GetFlag(FLAGS_max_batch_size)} *
                        absl::GetFlag(FLAGS_prefill_chunk_tokens);
}

absl::StatusOr<std::unique_ptr<InferenceEngine>> LoadEngine(bool cuda, int kv_cache_mb,
                                                            int threads) {
  if (cuda) {
    CudaEngineOptions options;
    options.model_path = absl::GetFlag(FLAGS_model);
    options.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
    options.weight_format = absl::GetFlag(FLAGS_gpu_weights);
    options.device = absl::GetFlag(FLAGS_cuda_device);
    options.kv_cache_mb = kv_cache_mb;
    options.kv_cache_bits = absl::GetFlag(FLAGS_kv_cache_bits);
    options.max_batch_size = absl::GetFlag(FLAGS_max_batch_size);
    options.max_step_tokens = MaxStepTokens();
    options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
    return LoadCudaEngine(options);
  }
  EngineOptions options;
  options.model_path = absl::GetFlag(FLAGS_model);
  options.threads = threads;
  options.kv_cache_mb = kv_cache_mb;
  options.kv_cache_bits = absl::GetFlag(FLAGS_kv_cache_bits);
  return LoadCpuEngine(options);
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
  const BackendChoice backend = ChooseBackend();
  ASSIGN_OR_RETURN(const int kv_cache_mb, KvCacheMb(backend.cuda));
  if (!backend.cuda) {  // only --backend=auto gets here with them (ValidateFlags)
    if (!absl::GetFlag(FLAGS_gpu_weights).empty()) {
      std::fprintf(stderr, "[apex4] --gpu_weights ignored on the CPU\n");
    }
    if (!absl::GetFlag(FLAGS_tokenizer).empty()) {
      std::fprintf(stderr, "[apex4] --tokenizer ignored on the CPU\n");
    }
  }
  std::fprintf(stderr, "[apex4] backend %s: %s\n", backend.cuda ? "cuda" : "cpu",
               backend.reason.c_str());
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

  const int threads = absl::GetFlag(FLAGS_threads) > 0
                          ? absl::GetFlag(FLAGS_threads)
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  absl::StatusOr<std::unique_ptr<InferenceEngine>> engine =
      LoadEngine(backend.cuda, kv_cache_mb, threads);
  if (!engine.ok()) {
    server->Shutdown();
    return engine.status();
  }
  (*engine)->set_kernel_timer(&metrics);
  NodePlanningOptions planning;
  planning.profile_path = profile;
  planning.threads = threads;
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
  scheduler_options.prefill_chunk_tokens = absl::GetFlag(FLAGS_prefill_chunk_tokens);
  scheduler_options.max_step_tokens = MaxStepTokens();
  Scheduler scheduler(engine->get(), &metrics, scheduler_options);
  service.StartServing(engine->get(), &scheduler, std::move(node->plan));
  SetHealth(*server, true);
  const EngineInfo& info = (*engine)->info();
  std::fprintf(stderr, "[apex4] serving %s (%s, %s, %s, %d-bit KV cache)\n", info.name.c_str(),
               info.format.c_str(), info.quantization.c_str(), info.backend.c_str(),
               info.kv_cache_bits);

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
