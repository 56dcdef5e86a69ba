// CallGate: who may call which method over TCP, decided from a call's
// headers alone, before gRPC reads its request message. It runs as the
// auth metadata processor of the TCP listener's credentials
// (GatedCredentials), so a call without the right token is refused with
// UNAUTHENTICATED while its body is still on the wire: an unauthenticated
// caller costs the daemon at most one HTTP/2 stream window, never the
// message (up to 16 MiB) it sends. The rules, by the call's path:
//   /grpc.health.v1.Health/...     open (probes carry no token)
//   /asflow.v1.WorkerService/...   the worker token
//   anything else (FlowService, reflection, unknown methods)
//                                   the client token
// A role without a token (mutual TLS, or --insecure) lets every call of that
// role through. Thread-safe; immutable after construction.
#ifndef ASFLOW_SERVER_CALL_GATE_H_
#define ASFLOW_SERVER_CALL_GATE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpc/grpc_security.h"
#include "grpcpp/security/server_credentials.h"

namespace asflow {

class CallGate {
 public:
  CallGate(std::string client_token, std::string worker_token)
      : client_token_(std::move(client_token)), worker_token_(std::move(worker_token)) {}

  // OK if a call of `path` carrying these "authorization" header values
  // may proceed; Unauthenticated (no detail) otherwise.
  absl::Status Check(absl::string_view path, const std::vector<absl::string_view>& authorization) const;

  // The token a call of `path` needs ("" when none is needed).
  const std::string& TokenFor(absl::string_view path) const;
  // True for the health service's methods.
  static bool IsOpen(absl::string_view path);

 private:
  const std::string client_token_;
  const std::string worker_token_;
};

// Server credentials (plaintext when `c_credentials` is insecure ones, or
// TLS) whose every call passes `gate` first. Takes ownership of
// `c_credentials`.
class GatedCredentials final : public grpc::ServerCredentials {
 public:
  GatedCredentials(grpc_server_credentials* c_credentials, std::shared_ptr<const CallGate> gate);
  ~GatedCredentials() override;
  GatedCredentials(const GatedCredentials&) = delete;
  GatedCredentials& operator=(const GatedCredentials&) = delete;

  // The gate is the processor; another cannot be installed (logged, ignored).
  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>& processor) override;

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override;

  grpc_server_credentials* const c_credentials_;
  const std::shared_ptr<const CallGate> gate_;
};

// Equal without revealing, through timing, where two strings differ; an
// empty `expected` matches nothing.
bool ConstantTimeEquals(absl::string_view given, absl::string_view expected);

}  // namespace asflow

#endif  // ASFLOW_SERVER_CALL_GATE_H_
