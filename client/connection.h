// How asflowctl reaches asflowd: --server/ASFLOW_SERVER (TCP), else the
// unix socket (default $XDG_RUNTIME_DIR/asflow/asflowd.sock), starting a
// local asflowd in the background when nothing listens there, the way
// Bazel's client starts its server.
#ifndef ASFLOW_CLIENT_CONNECTION_H_
#define ASFLOW_CLIENT_CONNECTION_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/security/credentials.h"

namespace asflow {

struct ClientOptions {
  // HOST:PORT of a remote daemon; empty: the unix socket.
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

// Connects, waiting up to `wait` for the channel. With `autostart`, a local
// daemon is started if none answers. Unavailable says where it looked and,
// if a daemon was started but did not come up, the tail of its log.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ClientOptions& options, bool autostart);

// Where an auto-started daemon's output goes.
std::string DaemonLogPath();

}  // namespace asflow

#endif  // ASFLOW_CLIENT_CONNECTION_H_
