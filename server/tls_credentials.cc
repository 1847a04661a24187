#include "server/tls_credentials.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/status_macros.h"
#include "grpcpp/security/server_credentials.h"

namespace apex4 {
namespace {

// PEM files of certificates and keys are a few KiB; this bounds what a wrong path (a device, a
// model file) makes the server read.
constexpr size_t kMaxPemFileBytes = 1 << 20;

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;
struct FileClose {
  void operator()(std::FILE* file) const { std::fclose(file); }
};

absl::Status FlagError(const char* flag, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", message));
}

// OpenSSL's reason for the last failure, and an empty error queue afterwards.
std::string TakeOpenSslError() {
  const unsigned long code = ERR_peek_last_error();
  const char* reason = code != 0 ? ERR_reason_error_string(code) : nullptr;
  std::string text = reason != nullptr ? reason : (code != 0 ? "unknown error" : "no details");
  ERR_clear_error();
  return text;
}

absl::StatusOr<std::string> ReadPemFile(const char* flag, const std::string& path) {
  errno = 0;
  std::unique_ptr<std::FILE, FileClose> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return FlagError(flag, absl::StrCat("cannot open ", path, ": ", std::strerror(errno)));
  }
  std::string contents;
  char buffer[8192];
  while (true) {
    const size_t read = std::fread(buffer, 1, sizeof(buffer), file.get());
    contents.append(buffer, read);
    if (contents.size() > kMaxPemFileBytes) {
      return FlagError(
          flag, absl::StrCat(path, " is larger than ", kMaxPemFileBytes, " bytes; not a PEM file"));
    }
    if (read < sizeof(buffer)) break;
  }
  if (std::ferror(file.get())) {
    return FlagError(flag, absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  if (contents.empty()) return FlagError(flag, absl::StrCat(path, " is empty"));
  return contents;
}

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& contents) {
  return std::unique_ptr<BIO, BioFree>(
      BIO_new_mem_buf(contents.data(), static_cast<int>(contents.size())));
}

// A passphrase callback that has none: an encrypted key fails to load instead of OpenSSL's
// default callback prompting on the terminal.
int NoPassphrase(char*, int, int, void*) { return -1; }

// The first certificate of a PEM file, after checking that every PEM certificate in it parses.
absl::StatusOr<X509Ptr> ReadCertificates(const char* flag, const std::string& path,
                                         const std::string& contents) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> bio = MemoryBio(contents);
  X509Ptr first;
  int count = 0;
  while (true) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, NoPassphrase, nullptr));
    if (cert == nullptr) break;
    if (first == nullptr) first = std::move(cert);
    ++count;
  }
  const unsigned long error = ERR_peek_last_error();
  const bool at_end =
      ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
  const std::string reason = TakeOpenSslError();
  if (count == 0 && at_end) {
    return FlagError(flag, absl::StrCat(path, " holds no PEM certificate"));
  }
  if (!at_end) {
    return FlagError(
        flag, absl::StrCat("certificate ", count + 1, " in ", path, " does not parse: ", reason));
  }
  return first;
}

absl::StatusOr<KeyPtr> ReadPrivateKey(const char* flag, const std::string& path,
                                      const std::string& contents) {
  ERR_clear_error();
  std::unique_ptr<BIO, BioFree> bio = MemoryBio(contents);
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
  const std::string reason = TakeOpenSslError();
  if (key == nullptr && contents.find("PRIVATE KEY-----") == std::string::npos) {
    return FlagError(flag, absl::StrCat(path, " holds no PEM private key"));
  }
  if (key == nullptr) {
    return FlagError(flag,
                     absl::StrCat("the private key in ", path,
                                  " cannot be read (encrypted keys are not supported): ", reason));
  }
  return key;
}

}  // namespace

absl::StatusOr<ServerTransport> MakeServerTransport(const TlsFiles& files) {
  if (files.cert_file.empty() && files.key_file.empty()) {
    if (!files.client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls_client_ca_file needs TLS: give --tls_cert_file and --tls_key_file too");
    }
    return ServerTransport{grpc::InsecureServerCredentials(), "plaintext"};
  }
  if (files.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_key_file is missing: --tls_cert_file and --tls_key_file go together");
  }
  if (files.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert_file is missing: --tls_cert_file and --tls_key_file go together");
  }
  ASSIGN_OR_RETURN(std::string cert_chain, ReadPemFile("tls_cert_file", files.cert_file));
  ASSIGN_OR_RETURN(X509Ptr leaf, ReadCertificates("tls_cert_file", files.cert_file, cert_chain));
  ASSIGN_OR_RETURN(std::string private_key, ReadPemFile("tls_key_file", files.key_file));
  ASSIGN_OR_RETURN(KeyPtr key, ReadPrivateKey("tls_key_file", files.key_file, private_key));
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    TakeOpenSslError();
    return FlagError("tls_key_file",
                     absl::StrCat("the key in ", files.key_file,
                                  " does not belong to the certificate in --tls_cert_file (",
                                  files.cert_file, ")"));
  }

  grpc::SslServerCredentialsOptions options(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  std::string description = "TLS";
  if (!files.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(options.pem_root_certs,
                     ReadPemFile("tls_client_ca_file", files.client_ca_file));
    RETURN_IF_ERROR(
        ReadCertificates("tls_client_ca_file", files.client_ca_file, options.pem_root_certs)
            .status());
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    description = "TLS, client certificates required";
  }
  options.pem_key_cert_pairs.push_back({std::move(private_key), std::move(cert_chain)});
  return ServerTransport{grpc::SslServerCredentials(options), std::move(description)};
}

}  // namespace apex4
