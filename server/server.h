// Daemon: asflowd assembled — the store, the event hub, the scheduler and
// the gRPC server on a unix socket — with an ordered shutdown.
#ifndef ASFLOW_SERVER_SERVER_H_
#define ASFLOW_SERVER_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/event_hub.h"
#include "server/flow_service.h"
#include "server/http_server.h"
#include "server/listener.h"
#include "server/local_pool.h"
#include "server/retention.h"
#include "server/scheduler.h"
#include "server/schedules.h"
#include "server/store.h"
#include "server/session_hub.h"
#include "server/log_hub.h"
#include "server/worker_hub.h"
#include "server/worker_service.h"
#include "server/workspace_fs.h"

namespace grpc {
class Server;
}

namespace asflow {

struct ServerOptions {
  // Unix socket to listen on (created mode 0600, its directory 0700).
  std::string socket_path;
  // SQLite state file. STATE.lock next to it is held (flock) while the
  // daemon runs and contains its PID.
  std::string state_path;
  // Workspaces must be under one of these; empty: the user's home.
  std::vector<std::string> allowed_roots;
  // In-process pool slots; 0: max(8, 4 x CPU count).
  int pool_size = 0;
  // Default `limit` per task definition; 0: the CPU count.
  int default_limit = 0;
  // Seconds between SIGTERM and SIGKILL for cancelled instances.
  double kill_grace_seconds = 5;
  // On a stop request, how long running instances get to finish (nothing
  // new starts meanwhile) before they are killed; 0: killed at once.
  double stop_grace_seconds = 20;
  // fsync outputs and their directories on commit.
  bool sync_outputs = true;
  // The optional TCP listener, its TLS and its tokens.
  ListenOptions listen;
  // A remote worker silent this long loses its running instances.
  double worker_lease_seconds = 10;
  // The optional HTTP listener (dashboard, JSON API, /metrics); its TLS,
  // token and --insecure are listen's.
  HttpOptions http;
  // Most Watch streams open at once.
  int max_watchers = 1024;
  // Throttle keys shared by every flow, each "NAME: {limit: N, rate: R}"
  // (asflowd --throttle, repeatable).
  std::vector<std::string> throttle;
  // History kept of finished runs (asflowd --keep-runs): "30d,1000", "100",
  // "30d", "all" (server/retention.h).
  std::string keep_runs = "30d,1000";
  // Seconds between pruning passes (a pass also runs at start).
  double prune_every_seconds = 60;
  // Bytes of each attempt's stderr kept (its tail): stored in SQLite for
  // `asflowctl show` and `logs`, and held for live readers while it runs.
  int64_t stderr_tail_bytes = 16 * 1024;
};

class Daemon {
 public:
  // Opens the state, resumes interrupted runs and starts serving. Fails
  // with the reason (socket in use, state locked by another asflowd, ...).
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(const ServerOptions& options);
  ~Daemon();

  // Blocks until RequestShutdown, then stops in order: start nothing new
  // and refuse new runs while running instances finish (up to the stop
  // grace, or until a second RequestShutdown), stop accepting, stop the
  // scheduler (what still runs is killed; its runs resume at the next
  // start), flush the store, remove the socket.
  void Wait();
  // Thread-safe, non-blocking. The first call starts the graceful stop;
  // a second one, or one with `now`, ends its grace at once.
  void RequestShutdown(bool now = false);
  // The HTTP listener's port (0: none).
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }

 private:
  Daemon() = default;
  // The graceful part of stopping: waits (up to the stop grace, or a
  // second RequestShutdown) for the scheduler's running attempts to end.
  void Drain();

  ServerOptions options_;
  int lock_fd_ = -1;
  std::unique_ptr<Store> store_;
  std::unique_ptr<EventHub> hub_;
  std::unique_ptr<LogHub> logs_;
  RealClock clock_;
  std::unique_ptr<RealWorkspaceFs> fs_;
  std::unique_ptr<RunMetrics> run_metrics_;
  std::unique_ptr<Scheduler> scheduler_;
  // Submit through the scheduler: stopped before it.
  std::unique_ptr<Schedules> schedules_;
  std::unique_ptr<Retention> retention_;
  // The runners report to the scheduler: destroyed before it.
  std::unique_ptr<LocalPool> local_pool_;
  std::unique_ptr<WorkerHub> workers_;
  std::unique_ptr<SessionHub> sessions_;
  std::unique_ptr<TokenCheck> auth_;
  std::unique_ptr<TokenCheck> worker_auth_;
  std::unique_ptr<FlowServiceImpl> service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<HttpServer> http_;
  absl::Mutex stop_mu_;
  int stop_requests_ ABSL_GUARDED_BY(stop_mu_) = 0;
  bool drained_ ABSL_GUARDED_BY(stop_mu_) = false;  // nothing runs any more
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SERVER_H_
