// asflowd: the asflow daemon. Flags fill ServerOptions; everything else
// lives in the server library.
#include <signal.h>

#include <cstdio>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "client/health_command.h"
#include "common/config_flags.h"
#include "common/paths.h"
#include "common/signals.h"
#include "common/version.h"
#include "grpc/grpc.h"
#include "server/server.h"
#include "spdlog/spdlog.h"

int main(int argc, char** argv) {
  // No Mutex deadlock detection (on in Debian's Abseil): see client/main.cc.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  asflow::ServerOptions options;
  options.socket_path = asflow::DefaultSocketPath();
  options.state_path = asflow::DefaultStatePath();
  std::string log_level = "info";

  CLI::App app{"asflowd: the asflow daemon (resumable data extraction over gRPC)"};
  app.set_version_flag("--version", asflow::VersionLine("asflowd"));
  // Every flag below can be set in the file (docs/configuration.md).
  asflow::AddConfigFlag(&app, "/etc/asflow/asflowd.conf");
  app.add_option("--socket", options.socket_path, "Unix socket to serve on")->capture_default_str();
  app.add_option("--state", options.state_path, "SQLite state file")->capture_default_str();
  app.add_option("--allow-root", options.allowed_roots,
                 "Directory under which workspaces are accepted (repeatable; default: $HOME)");
  app.add_option("--pool-size", options.pool_size,
                 "Slots of the in-process worker pool (default: max(8, 4 x CPUs))")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--default-limit", options.default_limit,
                 "limit of tasks that set none (default: CPU count)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--kill-grace", options.kill_grace_seconds,
                 "Seconds from SIGTERM to SIGKILL when instances are cancelled")
      ->capture_default_str();
  app.add_option("--stop-grace", options.stop_grace_seconds,
                 "Seconds running instances get to finish when the daemon is asked to stop (nothing new "
                 "starts meanwhile; a second SIGTERM ends the wait); 0: kill them at once")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("!--no-sync", options.sync_outputs, "Do not fsync outputs (faster, less durable)");
  app.add_option("--listen", options.listen.address,
                 "Also serve TCP on HOST:PORT (port 0: any free port, logged); needs --token-file or "
                 "mutual TLS, and a non-loopback address --tls-cert/--tls-key, unless --insecure");
  app.add_option("--tls-cert", options.listen.tls_cert, "PEM certificate chain for --listen");
  app.add_option("--tls-key", options.listen.tls_key, "PEM private key for --listen");
  app.add_option("--tls-client-ca", options.listen.tls_client_ca,
                 "PEM CA that client certificates must chain to (mutual TLS)");
  app.add_flag("--insecure", options.listen.insecure,
               "Serve --listen without a token or client certificate, or plaintext off loopback "
               "(logs a warning: anyone who can connect may run commands)");
  app.add_option("--token-file", options.listen.token_file,
                 "File whose first line is the bearer token TCP clients must send");
  app.add_option("--worker-token-file", options.listen.worker_token_file,
                 "File whose first line is the bearer token remote workers must send (default: "
                 "--token-file's)");
  app.add_option("--worker-lease", options.worker_lease_seconds,
                 "Seconds a remote worker may stay silent before its instances are queued again")
      ->check(CLI::Range(0.3, 3600.0))
      ->capture_default_str();
  app.add_option("--http", options.http.address,
                 "Also serve the web dashboard, the JSON API and /metrics on HOST:PORT (port 0: any free port, "
                 "logged); same rules and flags as --listen: --token-file or mutual TLS, and TLS off loopback, "
                 "or --insecure");
  app.add_option("--stderr-tail", options.stderr_tail_bytes,
                 "Bytes of each attempt's stderr kept (its tail, successes included) for asflowctl show and "
                 "logs; 0 keeps none")
      ->check(CLI::Range(int64_t{0}, int64_t{16} << 20))
      ->capture_default_str();
  app.add_option("--max-watchers", options.max_watchers, "Most Watch streams open at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--throttle", options.throttle,
                 "A throttle key every flow may use, as in a flow's throttle: "
                 "'youtube: {limit: 4, rate: 2/s}' (repeatable)");
  app.add_option("--keep-runs", options.keep_runs,
                 "History of finished runs to keep: a count (100), an age (30d, 12h), both (30d,100: a run "
                 "goes when past either), or all; older runs' instance rows are pruned in the background, "
                 "keeping suppressed and failed ones")
      ->capture_default_str();
  app.add_option("--prune-every", options.prune_every_seconds, "Seconds between --keep-runs pruning passes")
      ->check(CLI::Range(0.05, 86400.0))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  asflow::HealthFlags health_flags;
  CLI::App* health = asflow::AddHealthCommand(&app, &health_flags, /*connection_flags=*/true);
  if (auto code = asflow::ParseFlags(&app, "asflowd", argc, argv)) return *code;
  if (*health) {
    health_flags.connection.socket = options.socket_path;
    return asflow::RunHealthCommand("asflowd", health_flags);
  }

  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::info("{}{}", asflow::VersionLine("asflowd"),
               asflow::ConfigFileUsed(&app).empty() ? "" : ", config " + asflow::ConfigFileUsed(&app));
  sigset_t sigs = asflow::BlockTerminationSignals();

  // The process holds a reference to the gRPC library until it exits and
  // never gives it back (no grpc_shutdown). Otherwise destroying the
  // grpc::Server drops the last reference and runs gRPC's global teardown,
  // which joins gRPC's executor threads; one of them may be running the TCP
  // "backup poller" (armed by any write that met a full socket buffer, e.g.
  // a busy Watch stream), parked in epoll_wait with a fixed 10 s deadline
  // that nothing wakes once every connection is closed: exit then took up to
  // 10 s. By then the server is shut down and destroyed, the store flushed
  // and closed, the socket removed and the lock released; what is skipped is
  // only freeing gRPC's global state and joining its idle threads, which
  // the exit does anyway. See docs/behaviour.md, "Stopping".
  grpc_init();

  auto daemon = asflow::Daemon::Start(options);
  if (!daemon.ok()) {
    std::fprintf(stderr, "asflowd: %s\n", std::string(daemon.status().message()).c_str());
    return 1;
  }
  // The first SIGTERM/SIGINT starts a graceful stop, the next ends its
  // grace.
  std::thread([&sigs, d = daemon->get()] {
    for (;;) {
      int sig = 0;
      sigwait(&sigs, &sig);
      spdlog::info("asflowd: got signal {}", sig);
      d->RequestShutdown();
    }
  }).detach();
  (*daemon)->Wait();
  return 0;
}
