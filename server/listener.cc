#include "server/listener.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/small_file.h"
#include "grpc/grpc_security.h"
#include "server/call_gate.h"
#include "grpcpp/security/server_credentials.h"
#include "spdlog/spdlog.h"

namespace asflow {

bool IsLoopbackHost(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || absl::StartsWith(host, "127.");
}

absl::Status CheckTcpAddress(const TcpListenerTerms& terms, const std::string& address, const ListenOptions& options) {
  const std::string flag(terms.flag);
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", address, ": expected HOST:PORT"));
  }
  std::string host = address.substr(0, colon);
  bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  if (tls && (options.tls_cert.empty() || options.tls_key.empty())) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!options.tls_client_ca.empty() && !tls) {
    return absl::InvalidArgumentError("--tls-client-ca needs --tls-cert and --tls-key");
  }
  if (!tls && !IsLoopbackHost(host)) {
    if (!options.insecure) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", address,
          " is not a loopback address: anyone on the network could submit commands. Give "
          "--tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or --insecure to serve "
          "plaintext anyway"));
    }
    spdlog::warn("INSECURE: {} {} serves plaintext on a non-loopback address (--insecure): "
                 "tokens and everything else cross the network unencrypted",
                 flag, address);
  }
  if (options.tls_client_ca.empty() && options.token_file.empty()) {
    if (!options.insecure) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", address, ": TCP callers must prove who they are, even on loopback (any ",
          "local user can connect to a loopback port). Give ", terms.token_flags,
          " or mutual TLS (--tls-cert, --tls-key, --tls-client-ca), or --insecure to let anyone who can connect ",
          terms.risk));
    }
    spdlog::warn("INSECURE: {} {} accepts {} without a token or client certificate (--insecure): anyone who can "
                 "connect can {}",
                 flag, address, std::string(terms.callers), std::string(terms.risk));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenCredentials(const ListenOptions& options,
                                                                           std::shared_ptr<const CallGate> gate) {
  // Workers are checked against --worker-token-file, else --token-file's
  // token: a client token (or mutual TLS) covers both.
  TcpListenerTerms terms{"--listen", options.worker_token_file.empty() ? "clients and workers" : "clients",
                         "--token-file (and optionally --worker-token-file)", "run commands as this user"};
  if (absl::Status s = CheckTcpAddress(terms, options.address, options); !s.ok()) return s;
  bool tls = !options.tls_cert.empty();
  // Tokens are checked from the headers, before gRPC reads a request's
  // body (CallGate).
  if (!tls) return std::make_shared<GatedCredentials>(grpc_insecure_server_credentials_create(), std::move(gate));
  auto cert = ReadSmallFile(options.tls_cert);
  if (!cert.ok()) return cert.status();
  auto key = ReadSmallFile(options.tls_key);
  if (!key.ok()) return key.status();
  std::string ca;
  if (!options.tls_client_ca.empty()) {
    auto read = ReadSmallFile(options.tls_client_ca);
    if (!read.ok()) return read.status();
    ca = std::move(*read);
  }
  grpc_ssl_pem_key_cert_pair pair{key->c_str(), cert->c_str()};
  grpc_server_credentials* ssl = grpc_ssl_server_credentials_create_ex(
      ca.empty() ? nullptr : ca.c_str(), &pair, 1,
      ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
      nullptr);
  if (ssl == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot use ", options.tls_cert, " and ", options.tls_key));
  }
  return std::make_shared<GatedCredentials>(ssl, std::move(gate));
}

absl::StatusOr<std::unique_ptr<TokenCheck>> TokenCheck::Load(const std::string& token_file) {
  auto check = std::unique_ptr<TokenCheck>(new TokenCheck());
  if (token_file.empty()) return check;
  auto token = ReadTokenFile(token_file);
  if (!token.ok()) return token.status();
  check->token_ = std::move(*token);
  return check;
}

bool TokenCheck::Matches(absl::string_view presented) const { return ConstantTimeEquals(presented, token_); }

absl::Status TokenCheck::Check(const grpc::ServerContextBase& ctx) const {
  if (token_.empty() || absl::StartsWith(ctx.peer(), "unix:")) return absl::OkStatus();
  auto range = ctx.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    absl::string_view value(it->second.data(), it->second.size());
    if (absl::ConsumePrefix(&value, "Bearer ") && Matches(value)) {
      return absl::OkStatus();
    }
  }
  return absl::UnauthenticatedError("");
}

}  // namespace asflow
