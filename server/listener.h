// The TCP listener of asflowd (--listen): who may be served how. Every TCP
// address, loopback included (on a shared host a loopback port is open to
// every local user), needs a bearer token (--token-file; workers may have
// their own) or mutual TLS (--tls-client-ca); a non-loopback address also
// needs TLS. Only an explicit --insecure lifts either rule, with a loud
// warning. Tokens are compared in constant time. The unix socket stays the
// local way in, protected by its file mode.
#ifndef ASFLOW_SERVER_LISTENER_H_
#define ASFLOW_SERVER_LISTENER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_context.h"

namespace asflow {

class CallGate;

struct ListenOptions {
  // HOST:PORT to listen on (port 0 picks a free one); empty: unix only.
  std::string address;
  // PEM files: server certificate chain and key; with client_ca, clients
  // must present a certificate signed by it (mutual TLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Serve plaintext on a non-loopback address, or TCP without a token or
  // mutual TLS, anyway.
  bool insecure = false;
  // File whose first line is the bearer token TCP clients must send.
  std::string token_file;
  // The same for workers (WorkerService); empty: workers need token_file's
  // token, if any.
  std::string worker_token_file;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopbackHost(const std::string& host);

// Credentials for `options.address`, or InvalidArgument saying why this
// address may not be served: no TLS off loopback, or no way to tell who
// calls (neither a client token nor mutual TLS), without --insecure;
// a certificate file that cannot be read. What --insecure lets through
// is logged as a warning.
// Every call over them passes `gate` (checked from its headers, before its
// body is read).
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ListenCredentials(const ListenOptions& options,
                                                                           std::shared_ptr<const CallGate> gate);

// How a TCP listener names itself in CheckTcpAddress' refusals and warnings.
struct TcpListenerTerms {
  absl::string_view flag;         // "--listen", "--http"
  absl::string_view callers;      // who connects: "callers", "clients and workers"
  absl::string_view token_flags;  // where a token comes from: "--token-file"
  absl::string_view risk;         // what anyone could do: "see and cancel runs"
};

// Whether `address` may be served with `options`' TLS, token and --insecure
// settings: every TCP address needs a client token or mutual TLS, and a
// non-loopback one needs TLS, unless --insecure (then a warning is logged).
// InvalidArgument says why not, naming the flag; also for a malformed
// HOST:PORT or TLS flags that do not go together. Shared by --listen and
// --http.
absl::Status CheckTcpAddress(const TcpListenerTerms& terms, const std::string& address, const ListenOptions& options);

// Checks calls against the token. Thread-safe; immutable after Load.
class TokenCheck {
 public:
  // An empty path means no token is required. NotFound/InvalidArgument name
  // the file.
  static absl::StatusOr<std::unique_ptr<TokenCheck>> Load(const std::string& token_file);
  // OK for calls over the unix socket and for calls with the right
  // "authorization: Bearer TOKEN"; Unauthenticated (no detail) otherwise.
  absl::Status Check(const grpc::ServerContextBase& ctx) const;
  // Whether a token is required at all (--token-file was given).
  bool required() const { return !token_.empty(); }
  // True if `presented` is the token, compared in constant time (the
  // HTTP listener's check; Check uses it too). False when none is required.
  bool Matches(absl::string_view presented) const;
  // The token ("" if none is required).
  const std::string& token() const { return token_; }

 private:
  std::string token_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LISTENER_H_
