// The `health` subcommand of asflowd and asflow-worker: asks a daemon's
// gRPC health service whether it serves, for container HEALTHCHECKs and
// Kubernetes exec probes. Exit 0 when it does, 1 when it does not or
// cannot be reached, 2 for bad usage. Not thread-safe (runs in main).
#ifndef ASFLOW_CLIENT_HEALTH_COMMAND_H_
#define ASFLOW_CLIENT_HEALTH_COMMAND_H_

#include <string>

#include "CLI/CLI.hpp"
#include "rpc/channel.h"

namespace asflow {

struct HealthFlags {
  // Target and credentials (server empty: the unix socket).
  ClientOptions connection;
  // File whose first line is the bearer token (TCP).
  std::string token_file;
  // Service to ask about ("": the server as a whole).
  std::string service;
  // Seconds for connecting and answering.
  double timeout_seconds = 5;
};

// Adds `health` to `app`. With `connection_flags`, the subcommand has its
// own --server, --token-file and --tls-* flags (asflowd, whose own flags of
// those names configure its listener); without, the caller fills
// `flags->connection` from its own flags (asflow-worker checks the daemon
// it is configured for).
CLI::App* AddHealthCommand(CLI::App* app, HealthFlags* flags, bool connection_flags);

// Runs the check and prints one line: "PROGRAM health: SERVING (TARGET)"
// on stdout, or the reason on stderr. Returns the exit code.
int RunHealthCommand(const std::string& program, const HealthFlags& flags);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_HEALTH_COMMAND_H_
