// SessionHub: the daemon's side of code sessions (FlowService.Session,
// docs/sessions.md). Each connected process is a Session: the hub passes
// its run, task and call ops to the scheduler (in order, by posting), and
// is the Runner of pool "code": a started call becomes a `start` event on
// its session, the output chunks it streams back go to the call's atomic
// output file (StdoutSink, as for any job) and its result becomes an
// ExecResult (exception types included). A session that ends or stays
// silent past its lease loses its started calls (ExecResult::Infra::kLost)
// after the scheduler has been told it ended, so the runs it had detach
// first. The scheduler sends its answers (run opened, call states, ...)
// through Send.
//
// Threads: a session's reader (its gRPC reactor) calls Handle/Leave; its
// writer side is woken by `notify` and takes batches with TakeOutgoing;
// the scheduler calls Start/Cancel/Send; a watchdog expires leases; commit
// threads finish outputs. Thread-safe.
#ifndef ASFLOW_SERVER_SESSION_HUB_H_
#define ASFLOW_SERVER_SESSION_HUB_H_

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
#include "asflow/v1/session.pb.h"
#include "common/atomic_file.h"
#include "server/remote_output.h"
#include "server/runner.h"
#include "server/session_ops.h"

namespace asflow {

struct SessionHubOptions {
  // A session silent this long is ended (its client heartbeats at a third).
  absl::Duration lease = absl::Seconds(20);
  // How long a detached run waits for its process (told in the welcome;
  // the scheduler enforces it).
  absl::Duration reattach = absl::Seconds(60);
  // Most sessions at once.
  int max_sessions = 1024;
  // Largest output chunk accepted.
  int64_t max_chunk_bytes = 256 << 10;
  // Threads that finish outputs (fsync, rename) for all sessions.
  int commit_threads = 2;
  // Most bytes of events in one message to a client.
  size_t max_message_bytes = 1 << 20;
  // A session with more than one started call gets at most one message per
  // `write_spacing` while nothing queued for it is waited for (Holdable):
  // a busy process then reads a few large messages instead of one per
  // event (each costs it a thread wake-up; docs/sessions.md, "Batching").
  // Zero: every event goes out as soon as the stream can take it.
  absl::Duration write_spacing = absl::Milliseconds(1);
};

class SessionHub : public Runner {
 public:
  SessionHub(SessionHubOptions options, AtomicFileOptions file_options, RunnerEvents events);
  ~SessionHub() override;
  SessionHub(const SessionHub&) = delete;
  SessionHub& operator=(const SessionHub&) = delete;

  // REQUIRES: before the first Join.
  void SetOpsSink(SessionOpsSink sink);

  // Runner.
  void Start(ExecJob job) override;
  void StartAll(std::vector<ExecJob> jobs) override;
  void Cancel(ExecId id) override;
  void Revoke(ExecId id) override;
  bool ChainsStarts(int64_t session) const override;

  class Session;
  // A process said hello from `peer`. `notify` wakes its writer when events
  // are queued; `abort` ends its stream (lease expiry). ResourceExhausted
  // past max_sessions. The welcome is queued.
  absl::StatusOr<std::shared_ptr<Session>> Join(const v1::SessionHello& hello, const std::string& peer,
                                                std::function<void()> notify, std::function<void()> abort);
  // The session's next op (its reader thread only). InvalidArgument on a
  // protocol violation (the caller ends the stream).
  absl::Status Handle(Session& session, const v1::SessionOp& op);
  // The stream ended (its reader, once): the scheduler hears of it, then its
  // started calls are lost.
  void Leave(Session& session, const std::string& reason);
  // Moves the session's queued events (up to max_message_bytes, at least
  // one) into `out`; false if there are none.
  bool TakeOutgoing(Session& session, v1::SessionResponse* out);
  // Whether the session's queued events may wait for the next write slot
  // (SessionHubOptions::write_spacing): it has more than one started call
  // and nothing queued is one its process waits on to go on or must hear
  // at once (a start that is not chained, a cancel, a run or task answer,
  // the welcome).
  bool Holdable(Session& session) const;
  const SessionHubOptions& options() const { return options_; }
  bool Expired(const Session& session) const;
  // Ends every session's stream (daemon shutdown) and stops the watchdog.
  void Close();

  // Queues an event for session `id` (dropped if it is gone). Thread-safe.
  void Send(int64_t id, v1::SessionEvent event);

  size_t session_count() const;

 private:
  void Watchdog();
  void Push(Session& session, v1::SessionEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status HandleOutput(Session& session, const v1::OutputOp& op);
  absl::Status HandleResult(Session& session, const v1::ResultOp& op);
  // Cancel and Revoke: a cancel event for the call execution `id` runs as.
  void SendCancel(ExecId id, bool unless_begun);

  const SessionHubOptions options_;
  const AtomicFileOptions file_options_;
  const RunnerEvents events_;
  SessionOpsSink sink_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<int64_t, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  // Which session runs each started call.
  absl::flat_hash_map<ExecId, Session*> owner_ ABSL_GUARDED_BY(mu_);
  int64_t next_session_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watchdog_;
  std::unique_ptr<CommitPool> commits_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SESSION_HUB_H_
