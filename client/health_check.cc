#include "client/health_check.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"

namespace asflow {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::string HealthTarget(const ClientOptions& connection) {
  return connection.server.empty() ? absl::StrCat("unix:", connection.socket) : connection.server;
}

absl::Status CheckHealth(const HealthCheckOptions& options) {
  std::string target = HealthTarget(options.connection);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.connection.server.empty()) {
    auto tls = ChannelCredentialsFor(options.connection);
    if (!tls.ok()) return tls.status();
    creds = *tls;
  }
  // A probe is one attempt: no waiting for a channel in reconnect backoff
  // beyond the deadline, no retries.
  auto channel = grpc::CreateChannel(target, creds);
  auto deadline = absl::ToChronoTime(absl::Now() + options.timeout);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(deadline);
  ctx.set_wait_for_ready(true);  // connect within the deadline rather than fail at once
  PrepareContext(options.connection, &ctx);
  HealthCheckRequest request;
  request.set_service(options.service);
  HealthCheckResponse response;
  grpc::Status status = stub->Check(&ctx, request, &response);
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return absl::UnavailableError(absl::StrCat(target, ": no answer within ",
                                               absl::FormatDuration(options.timeout)));
  }
  if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
    return absl::UnavailableError(absl::StrCat(target, ": service '", options.service, "' is unknown to the server"));
  }
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat(target, ": ", status.error_message()));
  }
  if (response.status() != HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat(target, ": ", HealthCheckResponse::ServingStatus_Name(response.status())));
  }
  return absl::OkStatus();
}

}  // namespace asflow
