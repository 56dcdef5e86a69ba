// asflow-worker: joins a pool of a (remote) asflowd and runs its instances.
// SIGTERM or SIGINT drains (finishes running instances, takes no new ones,
// up to --drain-grace); a second one stops at once.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "client/health_command.h"
#include "common/config_flags.h"
#include "common/signals.h"
#include "common/version.h"
#include "absl/strings/str_cat.h"
#include "common/small_file.h"
#include "common/spec_validator.h"
#include "grpc/grpc.h"
#include "spdlog/spdlog.h"
#include "exec/protocol.h"
#include "worker/remote_worker.h"

int main(int argc, char** argv) {
  // No Mutex deadlock detection (on in Debian's Abseil): see client/main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  asflow::RemoteWorkerOptions options;
  std::string token_file;
  if (const char* env = std::getenv("ASFLOW_TOKEN_FILE")) token_file = env;
  if (const char* env = std::getenv("ASFLOW_TLS_CA")) options.connect.tls_ca = env;
  options.slots = std::max(1u, std::thread::hardware_concurrency());
  const char* tmp = std::getenv("TMPDIR");
  options.scratch_dir = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/asflow-worker.", getpid());
  double drain_grace = 60;
  std::string log_level = "info";

  CLI::App app{"asflow-worker: runs instances of one pool for an asflowd"};
  app.set_version_flag("--version", asflow::VersionLine("asflow-worker"));
  // Every flag below can be set in the file (docs/configuration.md); no
  // default file, since one host may run a worker per pool.
  asflow::AddConfigFlag(&app, "");
  app.add_option("--server", options.connect.server,
                 "HOST:PORT of asflowd's --listen address, or unix:PATH (env ASFLOW_SERVER)")
      ->required()
      ->envname("ASFLOW_SERVER");
  app.add_option("--pool", options.pool, "Pool to serve (tasks choose it with `pool:`); required");
  app.add_option("--slots", options.slots, "Instances to run at once (default: CPU count)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--name", options.name, "Name in `asflowctl workers` (default: hostname:pid)");
  app.add_option("--token-file", token_file, "File with the worker token (env ASFLOW_TOKEN_FILE)");
  app.add_option("--tls-ca", options.connect.tls_ca, "PEM CA of asflowd's certificate: use TLS (env ASFLOW_TLS_CA)");
  app.add_option("--tls-cert", options.connect.tls_cert, "PEM client certificate for mutual TLS");
  app.add_option("--tls-key", options.connect.tls_key, "PEM client key for mutual TLS");
  app.add_option("--scratch", options.scratch_dir,
                 "Directory for the commands' working directories (removed at exit)")
      ->capture_default_str();
  app.add_option("--drain-grace", drain_grace,
                 "Seconds a drain (SIGTERM) waits for running instances before handing them back")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  asflow::HealthFlags health_flags;
  CLI::App* health = asflow::AddHealthCommand(&app, &health_flags, /*connection_flags=*/false);
  if (auto code = asflow::ParseFlags(&app, "asflow-worker", argc, argv)) return *code;
  if (*health) {
    // The daemon this worker is configured for, with its credentials.
    health_flags.connection = options.connect;
    health_flags.token_file = token_file;
    return asflow::RunHealthCommand("asflow-worker", health_flags);
  }
  if (options.pool.empty()) {
    std::fprintf(stderr, "asflow-worker: --pool is required\nRun with --help for more information.\n");
    return 2;
  }
  options.drain_grace = absl::Seconds(drain_grace);
  spdlog::set_level(spdlog::level::from_str(log_level));
  // Debug only: a refused worker's stderr is its one line of refusal.
  spdlog::debug("{}{}", asflow::VersionLine("asflow-worker"),
               asflow::ConfigFileUsed(&app).empty() ? "" : ", config " + asflow::ConfigFileUsed(&app));
  if (!asflow::IsPoolName(options.pool) || options.pool == "local") {
    std::fprintf(stderr, "asflow-worker: --pool %s: expected a name of [A-Za-z0-9_.-]+ other than \"local\" "
                 "(the daemon's in-process pool)\n", options.pool.c_str());
    return 2;
  }
  if (!options.connect.tls_cert.empty() != !options.connect.tls_key.empty()) {
    std::fprintf(stderr, "asflow-worker: --tls-cert and --tls-key go together\n");
    return 2;
  }
  if (!token_file.empty()) {
    auto token = asflow::ReadTokenFile(token_file);
    if (!token.ok()) {
      std::fprintf(stderr, "asflow-worker: %s\n", std::string(token.status().message()).c_str());
      return 2;
    }
    options.connect.token = *token;
  }

  sigset_t sigs = asflow::BlockTerminationSignals();
  // Keeps the gRPC library initialized until exit, as asflowd does (see
  // server/main.cc): a worker streams output, and gRPC 1.51's global
  // teardown can wait up to 10 s for its TCP backup poller.
  grpc_init();

  asflow::RemoteWorker worker(options);
  std::thread([&sigs, &worker] {
    for (;;) {
      int sig = 0;
      sigwait(&sigs, &sig);
      worker.RequestDrain();
    }
  }).detach();
  absl::Status status = worker.Run();
  if (!status.ok()) {
    std::fprintf(stderr, "asflow-worker: %s\n", std::string(status.message()).c_str());
    return asflow::IsRefusal(status) ? 2 : 1;
  }
  return 0;
}
