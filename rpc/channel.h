// How a client of asflowd (asflowctl, asflow-worker) proves who it is and
// talks securely: the options shared by both, the TLS channel credentials
// they make, and the bearer token every call carries. Thread-safe (pure
// functions of their arguments; reading PEM files).
#ifndef ASFLOW_RPC_CHANNEL_H_
#define ASFLOW_RPC_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"

namespace asflow {

struct ClientOptions {
  // HOST:PORT of a remote daemon (or unix:PATH); empty: the unix socket.
  std::string server;
  // Unix socket of the local daemon.
  std::string socket;
  // Bearer token sent with every call (from --token-file); empty: none.
  std::string token;
  // PEM files for TLS to a remote daemon: the CA that signed its
  // certificate; a client certificate and key for mutual TLS. An empty CA
  // means plaintext.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
};

// Adds what every call carries (the bearer token).
void PrepareContext(const ClientOptions& options, grpc::ClientContext* ctx);

// Plaintext, or TLS (with a client certificate for mutual TLS) when
// options.tls_ca is set. NotFound/InvalidArgument name an unreadable file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFor(const ClientOptions& options);

}  // namespace asflow

#endif  // ASFLOW_RPC_CHANNEL_H_
