#include "client/health_command.h"

#include <cstdio>

#include "client/health_check.h"
#include "common/small_file.h"

namespace asflow {

CLI::App* AddHealthCommand(CLI::App* app, HealthFlags* flags, bool connection_flags) {
  CLI::App* health = app->add_subcommand(
      "health", "Ask the daemon's gRPC health service whether it serves (exit 0) or not (exit 1)");
  // Flags of the parent (--socket, --config, the worker's --server...) may
  // follow `health`.
  health->fallthrough();
  if (connection_flags) {
    health->add_option("--server", flags->connection.server,
                       "HOST:PORT of a TCP listener to check instead of the unix socket");
    health->add_option("--token-file", flags->token_file, "File with the bearer token for --server");
    health->add_option("--tls-ca", flags->connection.tls_ca, "PEM CA of the --server's certificate: use TLS");
    health->add_option("--tls-cert", flags->connection.tls_cert, "PEM client certificate for mutual TLS");
    health->add_option("--tls-key", flags->connection.tls_key, "PEM client key for mutual TLS");
  }
  health->add_option("--service", flags->service, "Service to ask about (default: the whole server)");
  health->add_option("--timeout", flags->timeout_seconds, "Seconds to wait for connecting and the answer")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  return health;
}

int RunHealthCommand(const std::string& program, const HealthFlags& flags) {
  HealthCheckOptions options;
  options.connection = flags.connection;
  options.service = flags.service;
  options.timeout = absl::Seconds(flags.timeout_seconds);
  if (options.connection.tls_cert.empty() != options.connection.tls_key.empty()) {
    std::fprintf(stderr, "%s health: --tls-cert and --tls-key go together\n", program.c_str());
    return 2;
  }
  if (!flags.token_file.empty()) {
    auto token = ReadTokenFile(flags.token_file);
    if (!token.ok()) {
      std::fprintf(stderr, "%s health: %s\n", program.c_str(), std::string(token.status().message()).c_str());
      return 2;
    }
    options.connection.token = *token;
  }
  absl::Status status = CheckHealth(options);
  if (!status.ok()) {
    std::fprintf(stderr, "%s health: %s\n", program.c_str(), std::string(status.message()).c_str());
    return absl::IsNotFound(status) || absl::IsInvalidArgument(status) ? 2 : 1;
  }
  std::printf("%s health: SERVING (%s)\n", program.c_str(), HealthTarget(options.connection).c_str());
  return 0;
}

}  // namespace asflow
