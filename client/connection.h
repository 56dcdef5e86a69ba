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
#include "rpc/channel.h"

namespace asflow {

// Connects, waiting up to `wait` for the channel. With `autostart`, a local
// daemon is started if none answers. Unavailable says where it looked and,
// if a daemon was started but did not come up, the tail of its log.
absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ClientOptions& options, bool autostart);

// Where an auto-started daemon's output goes.
std::string DaemonLogPath();

}  // namespace asflow

#endif  // ASFLOW_CLIENT_CONNECTION_H_
