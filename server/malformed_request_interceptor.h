// Turns "the request bytes do not parse" into INVALID_ARGUMENT. gRPC's generated handlers answer
// a request they cannot deserialize (for instance a proto3 string that is not UTF-8) with an
// INTERNAL status and an empty message before any service code runs; that blames the server for
// the client's input. This interceptor notices the failed parse, rewrites the status and counts
// the call in apex4_requests_total (the service's own accounting never sees it).
#ifndef APEX4_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_
#define APEX4_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_

#include "grpcpp/support/server_interceptor.h"
#include "server/metrics.h"

namespace apex4 {

class MalformedRequestInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `metrics` must outlive the server.
  explicit MalformedRequestInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  ServerMetrics* const metrics_;
};

}  // namespace apex4

#endif  // APEX4_SERVER_MALFORMED_REQUEST_INTERCEPTOR_H_
