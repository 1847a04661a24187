// The one place where an absl::Status becomes a grpc::Status (TF Serving's ToGRPCStatus). Every
// RPC handler returns through it, so codes map identically everywhere and no message can grow
// without bound (a status message travels in HTTP/2 trailers, whose size peers limit).
#ifndef APEX4_SERVER_GRPC_STATUS_H_
#define APEX4_SERVER_GRPC_STATUS_H_

#include <cstddef>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace apex4 {

// Longest status message sent to a client, in bytes; longer ones are cut and marked "...".
inline constexpr size_t kMaxGrpcStatusMessageBytes = 1024;

grpc::Status ToGrpcStatus(const absl::Status& status);

// Canonical upper-case name of a gRPC code ("OK", "INVALID_ARGUMENT", ...), for metric labels.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace apex4

#endif  // APEX4_SERVER_GRPC_STATUS_H_
