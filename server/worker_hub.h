// WorkerHub: the daemon's side of remote worker pools. Each connected
// asflow-worker is a Session (one WorkerService.Connect stream); the hub is
// the Runner for every pool other than "local": it places each job on the
// session of its pool with the most free slots, turns the worker's output
// chunks into the job's atomic output file (StdoutSink, exactly as for
// local jobs) and its result into an ExecResult. A session that ends or
// stays silent past its lease loses its open assignments: their partial
// outputs are discarded and they come back as ExecResult::Infra::kLost.
//
// Threads: the scheduler calls Start/Cancel; each session's gRPC handler
// calls Handle/Leave (its reader) and NextOutgoing (its writer); a
// watchdog thread sends heartbeats and expires leases. Thread-safe.
#ifndef ASFLOW_SERVER_WORKER_HUB_H_
#define ASFLOW_SERVER_WORKER_HUB_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/worker.pb.h"
#include "common/atomic_file.h"
#include "server/local_pool.h"
#include "server/remote_output.h"
#include "server/runner.h"

namespace asflow {

struct WorkerHubOptions {
  // A worker silent this long loses its assignments.
  absl::Duration lease = absl::Seconds(10);
  // Most sessions at once.
  int max_sessions = 1024;
  // Most slots one worker may offer.
  int max_slots = 4096;
  // Threads that finish outputs (fsync, rename) for all sessions.
  int commit_threads = 4;
  // Largest output chunk a worker may send (docs/workers.md); a larger one
  // fails its instance, naming it, and is never written.
  int64_t max_chunk_bytes = 256 << 10;
};

class WorkerHub : public Runner {
 public:
  // `events`: every job's result exactly once (lost and unplaced
  // included), progress, and each remote pool's slots as workers come and
  // go (called under the hub's lock, so in order; it must only queue work).
  WorkerHub(WorkerHubOptions options, AtomicFileOptions file_options, RunnerEvents events);
  ~WorkerHub() override;
  WorkerHub(const WorkerHub&) = delete;
  WorkerHub& operator=(const WorkerHub&) = delete;

  // Runner.
  void Start(ExecJob job) override;
  void Cancel(ExecId id) override;

  class Session;
  // A worker said hello from `peer`: InvalidArgument if the hello is
  // malformed (no pool, "local", slots out of range), ResourceExhausted
  // past max_sessions. `abort` ends the session's stream; the watchdog
  // calls it when the lease expires. The welcome is queued to send.
  absl::StatusOr<std::shared_ptr<Session>> Join(const v1::WorkerHello& hello, const std::string& peer,
                                                std::function<void()> abort);
  // The next message from the session's worker (its reader thread only).
  // InvalidArgument on a protocol violation: the caller ends the stream.
  absl::Status Handle(Session& session, const v1::WorkerMessage& message);
  // The session's stream ended (its reader thread, once): its open
  // assignments are lost for `reason` and NextOutgoing returns false.
  void Leave(Session& session, const std::string& reason);
  // Blocks until there is a message for the worker (true) or the session
  // is over (false). The session's writer thread only.
  bool NextOutgoing(Session& session, v1::DaemonMessage* out);
  // True if the watchdog ended the session for silence.
  bool Expired(const Session& session) const;

  std::vector<v1::WorkerInfo> List() const;
  // Slots of connected, non-draining workers in `pool`.
  int PoolSlots(const std::string& pool) const;
  // Ends every session's stream (daemon shutdown) and stops the watchdog.
  // Outputs already being committed are finished by the destructor.
  void Close();

 private:
  void Watchdog();
  // Recomputes `pool`'s slots and reports them.
  void PublishPool(const std::string& pool) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int PoolSlotsLocked(const std::string& pool) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Push(Session& session, v1::DaemonMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const WorkerHubOptions options_;
  const AtomicFileOptions file_options_;
  const RunnerEvents events_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  // Which session runs each open assignment.
  absl::flat_hash_map<ExecId, Session*> owner_ ABSL_GUARDED_BY(mu_);
  int64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watchdog_;
  // Finishing an output (fsync, rename, directory fsync) is slow I/O: it
  // runs on the commit threads, so a session's reader keeps reading (and
  // its worker's lease stays fresh) and one worker's slots commit in
  // parallel, as the in-process pool's threads do.
  std::unique_ptr<CommitPool> commits_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_WORKER_HUB_H_
