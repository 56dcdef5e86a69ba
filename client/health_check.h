// A client of the standard gRPC health service (grpc.health.v1.Health):
// what `asflowd health` and `asflow-worker health` run for container and
// Kubernetes probes. Thread-safe (no shared state).
#ifndef ASFLOW_CLIENT_HEALTH_CHECK_H_
#define ASFLOW_CLIENT_HEALTH_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "rpc/channel.h"

namespace asflow {

struct HealthCheckOptions {
  // Where and how to connect: options.server (HOST:PORT, with TLS and the
  // token as for asflowctl) or, when it is empty, options.socket.
  ClientOptions connection;
  // The service to ask about; "" (the default) is the server as a whole.
  std::string service;
  // Deadline for connecting and for the call together.
  absl::Duration timeout = absl::Seconds(5);
};

// OK when the server answers SERVING. Unavailable names the target when
// it cannot be reached in time or answers NOT_SERVING (or another status);
// NotFound/InvalidArgument name an unreadable TLS file; otherwise the
// call's own status (Unauthenticated when a token is wrong), with the
// target in the message.
absl::Status CheckHealth(const HealthCheckOptions& options);

// "unix:PATH" or "HOST:PORT": the target as messages name it.
std::string HealthTarget(const ClientOptions& connection);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_HEALTH_CHECK_H_
