#include "server/malformed_request_interceptor.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace apex4 {
namespace {

using grpc::experimental::InterceptionHookPoints;

class MalformedRequestInterceptor : public grpc::experimental::Interceptor {
 public:
  MalformedRequestInterceptor(const char* method, ServerMetrics* metrics)
      : method_(method != nullptr ? method : ""), metrics_(metrics), start_(absl::Now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    // The server reports the request it received here, null when deserialization failed.
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      request_unparsable_ = true;
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        request_unparsable_ &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                       absl::StrCat("request: not a valid message for ", method_,
                                    " (string fields must be valid UTF-8)")));
      // The metric's method label is the bare name ("Generate"), as the service writes it.
      const size_t slash = method_.rfind('/');
      metrics_->RecordRequest(slash == std::string::npos ? method_ : method_.substr(slash + 1),
                              grpc::StatusCode::INVALID_ARGUMENT,
                              absl::ToDoubleSeconds(absl::Now() - start_));
    }
    methods->Proceed();
  }

 private:
  const std::string method_;  // "/package.Service/Method"
  ServerMetrics* const metrics_;
  const absl::Time start_;
  bool request_unparsable_ = false;
};

}  // namespace

grpc::experimental::Interceptor* MalformedRequestInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MalformedRequestInterceptor(info->method(), metrics_);
}

}  // namespace apex4
