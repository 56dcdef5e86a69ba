#include "rpc/channel.h"

#include "absl/strings/str_cat.h"
#include "common/small_file.h"

namespace asflow {

void PrepareContext(const ClientOptions& options, grpc::ClientContext* ctx) {
  if (!options.token.empty()) ctx->AddMetadata("authorization", absl::StrCat("Bearer ", options.token));
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const ClientOptions& options) {
  if (options.tls_ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadSmallFile(options.tls_ca);
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *ca;
  if (!options.tls_cert.empty()) {
    auto cert = ReadSmallFile(options.tls_cert);
    if (!cert.ok()) return cert.status();
    auto key = ReadSmallFile(options.tls_key);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace asflow
