// RemoteWorker: asflow-worker's engine. Joins one pool of an asflowd over
// WorkerService.Connect, runs what it is assigned with the exec library
// (each command in its own scratch directory, `slots` at once), streams
// stdout back in chunks and reports results. Reconnects with backoff when
// the stream breaks (a new session: the daemon has already queued the old
// session's instances again, so the worker kills them). Drains on request:
// takes nothing new, finishes what runs (up to a grace period), then says
// goodbye.
#ifndef ASFLOW_WORKER_REMOTE_WORKER_H_
#define ASFLOW_WORKER_REMOTE_WORKER_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rpc/channel.h"

namespace asflow {

struct RemoteWorkerOptions {
  // How to reach the daemon (server = HOST:PORT or unix:PATH, TLS, token).
  ClientOptions connect;
  std::string pool;
  int slots = 1;
  // Label in listings; empty: hostname:pid.
  std::string name;
  // Commands run in a fresh directory below this one, removed afterwards.
  std::string scratch_dir;
  // How long a drain waits for running instances before handing them back.
  absl::Duration drain_grace = absl::Seconds(60);
  // Reconnect backoff: doubles from min to max.
  absl::Duration min_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(5);
};

// The daemon (or the configuration) refuses this worker: a wrong token, a
// bad hello, a daemon without WorkerService, unreadable TLS files.
// Retrying would not help.
bool IsRefusal(const absl::Status& status);

class RemoteWorker {
 public:
  explicit RemoteWorker(RemoteWorkerOptions options);
  ~RemoteWorker();
  RemoteWorker(const RemoteWorker&) = delete;
  RemoteWorker& operator=(const RemoteWorker&) = delete;

  // Serves sessions until a drain completes or a stop: OK; an IsRefusal
  // status when this worker is refused.
  absl::Status Run();
  // Thread-safe. First call: drain. Later calls: stop now (running
  // commands are killed; the daemon queues them again).
  void RequestDrain();

 private:
  struct Assignment;
  struct Session;
  // One connected session, until its stream ends; returns the final
  // status and whether the session got as far as the welcome.
  absl::Status Serve(const std::shared_ptr<grpc::ChannelCredentials>& creds, bool* welcomed);
  void SlotLoop();
  void RunAssignment(Session& session, Assignment& assignment);

  const RemoteWorkerOptions options_;
  std::string name_;
  std::string hostname_;

  absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_now_ ABSL_GUARDED_BY(mu_) = false;
  bool quit_slots_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::shared_ptr<Session> current_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> slots_;
};

}  // namespace asflow

#endif  // ASFLOW_WORKER_REMOTE_WORKER_H_
