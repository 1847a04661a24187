#include "server/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace apex4 {
namespace {

// Plain HTTP/1.0 GET against the loopback exposer: the bytes Prometheus would scrape.
std::string Scrape(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return "";
  }
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
  send(fd, request.data(), request.size(), 0);
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = recv(fd, buffer, sizeof(buffer), 0)) > 0;) response.append(buffer, n);
  close(fd);
  return response;
}

TEST(ServerMetricsTest, ExposesEveryMetricWithItsValue) {
  ServerMetrics metrics;
  ASSERT_TRUE(metrics.StartExposer(0).ok());
  ASSERT_GT(metrics.exposer_port(), 0);

  metrics.AddGeneratedTokens(7);
  metrics.AddPromptTokens(3);
  metrics.RecordRequest("Generate", grpc::StatusCode::INVALID_ARGUMENT, 0.01);
  metrics.SetQueueDepth(5);
  metrics.SetBatchSize(2);
  metrics.SetKvCacheBlocksInUse(11);
  metrics.ObserveTimeToFirstToken(0.2);
  metrics.ObserveTimePerOutputToken(0.02);
  static_cast<KernelTimer&>(metrics).Record(KernelKind::kAttention, 0.001);

  const std::string page = Scrape(metrics.exposer_port());
  for (const char* expected : {
           "apex4_generated_tokens_total 7",
           "apex4_prompt_tokens_total 3",
           "apex4_requests_total{code=\"INVALID_ARGUMENT\",method=\"Generate\"} 1",
           "apex4_request_duration_seconds_count{method=\"Generate\"} 1",
           "apex4_queue_depth 5",
           "apex4_batch_size 2",
           "apex4_kv_cache_blocks_in_use 11",
           "apex4_time_to_first_token_seconds_count 1",
           "apex4_time_per_output_token_seconds_count 1",
           "apex4_kernel_seconds_count{kernel=\"attention\"} 1",
           "apex4_kernel_seconds_count{kernel=\"gemm_w4a4\"} 0",
       }) {
    EXPECT_NE(page.find(expected), std::string::npos) << expected << "\n" << page;
  }
}

TEST(ServerMetricsTest, BusyPortIsAnErrorNotACrash) {
  ServerMetrics first;
  ASSERT_TRUE(first.StartExposer(0).ok());
  ServerMetrics second;
  absl::Status status = second.StartExposer(first.exposer_port());
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(second.exposer_port(), 0);
}

}  // namespace
}  // namespace apex4
