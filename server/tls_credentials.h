// Transport security of the gRPC port: plaintext, TLS, or TLS with client certificates. The
// files named by the flags are read and checked at start-up (PEM, a key that belongs to the
// certificate), so that a wrong path or file stops the server with a message naming the flag
// instead of failing at every client's handshake.
#ifndef APEX4_SERVER_TLS_CREDENTIALS_H_
#define APEX4_SERVER_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/security/server_credentials.h"

namespace apex4 {

// The paths given by --tls_cert_file, --tls_key_file and --tls_client_ca_file ("" when unset).
struct TlsFiles {
  std::string cert_file;       // the server's certificate chain, leaf first (PEM)
  std::string key_file;        // its private key (PEM, not encrypted)
  std::string client_ca_file;  // CA certificates that sign client certificates (PEM)
};

struct ServerTransport {
  std::shared_ptr<grpc::ServerCredentials> credentials;
  // For the start-up log: "plaintext", "TLS" or "TLS, client certificates required".
  std::string description;
};

// Plaintext credentials when no file is named. INVALID_ARGUMENT, naming the flag, when only one
// of cert and key is given, when a client CA is given without them, when a file cannot be read
// or holds no PEM certificate / private key, or when the key does not match the certificate.
absl::StatusOr<ServerTransport> MakeServerTransport(const TlsFiles& files);

}  // namespace apex4

#endif  // APEX4_SERVER_TLS_CREDENTIALS_H_
