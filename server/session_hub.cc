#include "server/session_hub.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/wake_batch.h"
#include "exec/protocol.h"
#include "server/guarded_callback.h"
#include "spdlog/spdlog.h"

namespace asflow {

class SessionHub::Session {
 public:
  int64_t id = 0;
  std::string label;  // "client on host (pid N)"
  std::string peer;

  // Wakes the session's writer; ends its stream. Kept until the reader
  // leaves (they refer to its reactor).
  void Notify() { notify.Call(); }
  // Notify, at the end of the calling thread's WakeBatch if it has one.
  static void WakeSoon(const std::shared_ptr<Session>& session) {
    WakeBatch::Wake(session.get(), [session] { session->Notify(); });
  }
  void Abort() { abort.Call(); }
  void Forget() {
    notify.Clear();
    abort.Clear();
  }
  GuardedCallback notify;
  GuardedCallback abort;

  // Guarded by the hub's mu_.
  absl::Time last_recv;
  bool closed = false;
  bool expired = false;
  bool chains = false;  // its hello said chained_starts
  std::deque<v1::SessionEvent> outbox;
  int urgent = 0;  // events in outbox that may not wait (Urgent)
  // Started calls, by call id; their outputs belong to the reader thread.
  absl::flat_hash_map<int64_t, std::shared_ptr<RemoteOutput>> open;
  // Started calls the daemon asked to stop (cancel sent).
  absl::flat_hash_set<int64_t> cancel_sent;
  // Chained starts sent: the execution each follows -> the chained call.
  absl::flat_hash_map<ExecId, int64_t> chained_after;
};

SessionHub::SessionHub(SessionHubOptions options, AtomicFileOptions file_options, RunnerEvents events)
    : options_(std::move(options)),
      file_options_(std::move(file_options)),
      events_(std::move(events)),
      commits_(std::make_unique<CommitPool>(options_.commit_threads)) {
  watchdog_ = std::thread([this] { Watchdog(); });
}

SessionHub::~SessionHub() {
  Close();
  commits_.reset();  // finishes the outputs still queued
}

void SessionHub::SetOpsSink(SessionOpsSink sink) { sink_ = std::move(sink); }

void SessionHub::Close() {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& [id, session] : sessions_) sessions.push_back(session);
  }
  for (auto& session : sessions) session->Abort();
  if (watchdog_.joinable()) watchdog_.join();
}

size_t SessionHub::session_count() const {
  absl::MutexLock lock(&mu_);
  return sessions_.size();
}

namespace {

// Whether the event may not wait for the next write slot: everything but
// a call's final state and a start chained after a call the process is
// running. (A cancel or revoke goes at once: a revoke that arrives after
// the call before has ended well comes too late, its chained call has
// begun — a pause would not hold.)
bool Urgent(const v1::SessionEvent& event) {
  switch (event.event_case()) {
    case v1::SessionEvent::kCallState:
      return false;
    case v1::SessionEvent::kStart:
      return event.start().after() == 0;
    default:
      return true;
  }
}

}  // namespace

void SessionHub::Push(Session& session, v1::SessionEvent event) {
  if (Urgent(event)) ++session.urgent;
  session.outbox.push_back(std::move(event));
}

bool SessionHub::Holdable(Session& session) const {
  absl::MutexLock lock(&mu_);
  return session.urgent == 0 && session.open.size() > 1 && !session.outbox.empty();
}

void SessionHub::Send(int64_t id, v1::SessionEvent event) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->closed) return;
    session = it->second;
    Push(*session, std::move(event));
  }
  Session::WakeSoon(session);
}

absl::StatusOr<std::shared_ptr<SessionHub::Session>> SessionHub::Join(const v1::SessionHello& hello,
                                                                      const std::string& peer,
                                                                      std::function<void()> notify,
                                                                      std::function<void()> abort) {
  auto session = std::make_shared<Session>();
  session->notify.Set(std::move(notify));
  session->abort.Set(std::move(abort));
  session->peer = peer;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("asflowd is shutting down");
    if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
      return absl::ResourceExhaustedError(
          absl::StrCat("asflowd already has ", sessions_.size(), " code sessions (the most it serves)"));
    }
    session->id = next_session_++;
    session->label = absl::StrCat(hello.client().empty() ? "client" : hello.client(), " on ",
                                  hello.hostname().empty() ? peer : hello.hostname(), " (pid ", hello.pid(),
                                  ", session ", session->id, ")");
    session->last_recv = absl::Now();
    session->chains = hello.chained_starts();
    sessions_[session->id] = session;
    v1::SessionEvent welcome;
    v1::SessionWelcome& w = *welcome.mutable_welcome();
    w.set_session_id(session->id);
    w.set_daemon_version(kAsflowVersion);
    w.set_reattach_ms(absl::ToInt64Milliseconds(options_.reattach));
    w.set_max_chunk_bytes(options_.max_chunk_bytes);
    w.set_lease_ms(absl::ToInt64Milliseconds(options_.lease));
    w.set_heartbeat_ms(absl::ToInt64Milliseconds(options_.lease / 3));
    w.set_chained_late_begin(true);
    Push(*session, std::move(welcome));
  }
  spdlog::info("code session {} opened from {}", session->label, peer);
  Session::WakeSoon(session);
  return session;
}

void SessionHub::Start(ExecJob job) {
  std::vector<ExecJob> jobs;
  jobs.push_back(std::move(job));
  StartAll(std::move(jobs));
}

void SessionHub::StartAll(std::vector<ExecJob> jobs) {
  std::vector<std::shared_ptr<Session>> notify;
  std::vector<std::pair<ExecId, int64_t>> lost;  // (job, its session)
  std::vector<ExecId> unbegun;
  {
    absl::MutexLock lock(&mu_);
    for (ExecJob& job : jobs) {
      auto it = sessions_.find(job.session);
      if (it == sessions_.end() || it->second->closed || it->second->expired ||
          it->second->open.contains(job.call_id)) {
        lost.emplace_back(job.id, job.session);
        continue;
      }
      if (job.after != 0 && !owner_.contains(job.after)) {
        // Chained after a call whose result is already read: its slot was
        // not passed on, so the process must not begin this one (it would,
        // having seen that call end well). Back to its queue, unsent.
        unbegun.push_back(job.id);
        continue;
      }
      Session& session = *it->second;
      v1::SessionEvent start;
      start.mutable_start()->set_call_id(job.call_id);
      start.mutable_start()->set_attempt(job.attempt);
      if (job.after != 0) start.mutable_start()->set_after(job.after_call);
      owner_[job.id] = &session;
      const int64_t call_id = job.call_id;
      if (job.after != 0) session.chained_after[job.after] = call_id;
      session.open[call_id] = std::make_shared<RemoteOutput>(std::move(job), file_options_, events_.on_progress);
      Push(session, std::move(start));
      if (notify.empty() || notify.back() != it->second) notify.push_back(it->second);
    }
  }
  // Once all are queued: the writer sends them together.
  for (const auto& session : notify) Session::WakeSoon(session);
  for (ExecId id : unbegun) {
    ExecResult result;
    result.id = id;
    result.process.cancelled = true;
    result.process.exit_code = -1;
    result.infra = ExecResult::Infra::kWithdrawn;
    events_.on_done(std::move(result));
  }
  for (const auto& [id, session] : lost) {
    // Its session went away (the scheduler detaches the run next): lost,
    // not the call's fault.
    ExecResult result;
    result.id = id;
    result.infra = ExecResult::Infra::kLost;
    result.output_status = absl::UnavailableError(absl::StrCat("code session ", session, " is gone"));
    events_.on_done(std::move(result));
  }
}

bool SessionHub::ChainsStarts(int64_t session) const {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(session);
  return it != sessions_.end() && it->second->chains;
}

void SessionHub::Cancel(ExecId id) { SendCancel(id, false); }

void SessionHub::Revoke(ExecId id) { SendCancel(id, true); }

void SessionHub::SendCancel(ExecId id, bool unless_begun) {
  std::shared_ptr<Session> session;
  {
    absl::MutexLock lock(&mu_);
    auto it = owner_.find(id);
    if (it == owner_.end()) return;
    auto s = sessions_.find(it->second->id);
    if (s == sessions_.end()) return;
    session = s->second;
    for (const auto& [call_id, open] : session->open) {
      if (open->job().id != id) continue;
      v1::SessionEvent cancel;
      cancel.mutable_cancel()->set_call_id(call_id);
      cancel.mutable_cancel()->set_unless_begun(unless_begun);
      // A revoke is not asked of a begun call (it is ignored there); an
      // unbegun call it reaches comes back whatever its result says.
      if (!unless_begun) session->cancel_sent.insert(call_id);
      Push(*session, std::move(cancel));
      break;
    }
  }
  Session::WakeSoon(session);  // not under mu_: the writer it wakes takes it
}

absl::Status SessionHub::Handle(Session& session, const v1::SessionOp& op) {
  {
    absl::MutexLock lock(&mu_);
    session.last_recv = absl::Now();
  }
  switch (op.op_case()) {
    case v1::SessionOp::kHeartbeat:
      return absl::OkStatus();
    case v1::SessionOp::kOutput:
      return HandleOutput(session, op.output());
    case v1::SessionOp::kResult:
      return HandleResult(session, op.result());
    case v1::SessionOp::kProgress: {
      ExecId id = 0;
      {
        absl::MutexLock lock(&mu_);
        auto it = session.open.find(op.progress().call_id());
        if (it == session.open.end()) return absl::OkStatus();  // finished meanwhile
        id = it->second->job().id;
      }
      if (events_.on_self_progress != nullptr) {
        events_.on_self_progress(
            id, SelfProgress{op.progress().total(), op.progress().completed(), op.progress().description()});
      }
      return absl::OkStatus();
    }
    case v1::SessionOp::kOpenRun:
    case v1::SessionOp::kDeclareTask:
    case v1::SessionOp::kCall:
    case v1::SessionOp::kDrop:
    case v1::SessionOp::kCloseRun:
      sink_.on_op(session.id, op);
      return absl::OkStatus();
    case v1::SessionOp::kHello:
      return absl::InvalidArgumentError("hello sent twice");
    default:
      return absl::InvalidArgumentError("an empty op");
  }
}

absl::Status SessionHub::HandleOutput(Session& session, const v1::OutputOp& op) {
  if (static_cast<int64_t>(op.data().size()) > options_.max_chunk_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("output chunk of ", op.data().size(), " bytes for call ",
                                                   op.call_id(), "; at most ", options_.max_chunk_bytes,
                                                   " are allowed"));
  }
  std::shared_ptr<RemoteOutput> open;
  {
    absl::MutexLock lock(&mu_);
    auto it = session.open.find(op.call_id());
    if (it == session.open.end()) {
      return absl::InvalidArgumentError(absl::StrCat("output for call ", op.call_id(), ", which is not started"));
    }
    open = it->second;
  }
  if (!open->Append(op.data())) Cancel(open->job().id);  // more output is pointless
  return absl::OkStatus();
}

absl::Status SessionHub::HandleResult(Session& session, const v1::ResultOp& op) {
  std::shared_ptr<RemoteOutput> open;
  bool asked = false;
  ExecId next = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = session.open.find(op.call_id());
    if (it == session.open.end()) {
      return absl::InvalidArgumentError(absl::StrCat("result for call ", op.call_id(), ", which is not started"));
    }
    const ExecId id = it->second->job().id;
    auto chained = session.chained_after.find(id);
    if (op.started_next() != 0) {
      // The process began the call chained after this one (StartCall.after).
      auto n = session.open.find(op.started_next());
      if (!op.ok() || n == session.open.end() || n->second->job().after != id) {
        return absl::InvalidArgumentError(absl::StrCat("result for call ", op.call_id(), " says call ",
                                                       op.started_next(), " began after it, which was not ",
                                                       "chained after it or the result is not ok"));
      }
      next = n->second->job().id;
    } else if (op.ok() && chained != session.chained_after.end()) {
      // Its chained start had not reached the process yet: the process
      // begins that call when it arrives, in this slot (StartCall.after).
      // Unless it answered it already (refused: a cancel came first).
      auto n = session.open.find(chained->second);
      if (n != session.open.end() && n->second->job().after == id) next = n->second->job().id;
    }
    if (chained != session.chained_after.end()) session.chained_after.erase(chained);
    open = std::move(it->second);
    session.open.erase(it);
    owner_.erase(open->job().id);
    asked = session.cancel_sent.erase(op.call_id()) > 0;
  }
  ExecResult result;
  result.id = open->job().id;
  result.process.exit_code = 0;
  if (op.cancelled()) {
    result.process.cancelled = true;
    result.process.exit_code = -1;
    // Stopped without being asked (its caller went away, the process is
    // exiting): not the function's failure, whoever still waits gets a
    // fresh attempt.
    if (!asked) result.infra = ExecResult::Infra::kWithdrawn;
  } else if (!op.ok()) {
    result.process.exit_code = 1;
    result.process.error_types.assign(op.error_types().begin(), op.error_types().end());
    result.process.error_text = op.error_text();
    if (result.process.error_types.empty()) result.process.error_types.push_back("Exception");
  }
  // The slot passes on before this result is judged (on_done follows).
  if (next != 0) events_.on_handoff(result.id, next);
  commits_->Run([this, open, result = std::move(result)]() mutable {
    open->Finish(&result);
    events_.on_done(std::move(result));
  });
  return absl::OkStatus();
}

void SessionHub::Leave(Session& session, const std::string& why) {
  session.Forget();
  std::vector<std::shared_ptr<RemoteOutput>> lost;
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    reason = closed_ ? "asflowd is shutting down" : why;
    session.closed = true;
    for (auto& [call_id, open] : session.open) {
      lost.push_back(open);
      owner_.erase(open->job().id);
    }
    session.open.clear();
    sessions_.erase(session.id);
  }
  spdlog::info("code session {} ended ({}){}", session.label, reason,
               lost.empty() ? "" : absl::StrCat(", ", lost.size(), " started calls lost"));
  // The scheduler detaches the session's runs before it hears of the lost
  // calls, so it never hands them back to this session.
  sink_.on_ended(session.id);
  for (const auto& open : lost) {
    ExecResult result;
    result.id = open->job().id;
    open->Finish(&result, absl::AbortedError("lost"));  // partial output discarded
    result.bytes = 0;
    result.lines = 0;
    result.infra = ExecResult::Infra::kLost;
    result.output_status =
        absl::UnavailableError(absl::StrCat("code session ", session.label, " ended: ", reason));
    events_.on_done(std::move(result));
  }
}

bool SessionHub::TakeOutgoing(Session& session, v1::SessionResponse* out) {
  absl::MutexLock lock(&mu_);
  if (session.outbox.empty()) return false;
  size_t bytes = 0;
  while (!session.outbox.empty()) {
    size_t size = session.outbox.front().ByteSizeLong();
    if (out->events_size() > 0 && bytes + size > options_.max_message_bytes) break;
    bytes += size;
    if (Urgent(session.outbox.front())) --session.urgent;
    *out->add_events() = std::move(session.outbox.front());
    session.outbox.pop_front();
  }
  return true;
}

bool SessionHub::Expired(const Session& session) const {
  absl::MutexLock lock(&mu_);
  return session.expired;
}

void SessionHub::Watchdog() {
  const absl::Duration tick = std::max(options_.lease / 6, absl::Milliseconds(50));
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), tick)) return;
    const absl::Time now = absl::Now();
    std::vector<std::shared_ptr<Session>> expired;
    for (auto& [id, s] : sessions_) {
      if (s->closed || s->expired || now - s->last_recv <= options_.lease) continue;
      s->expired = true;
      spdlog::warn("code session {}: nothing received for {} (lease {}), ending it", s->label,
                   absl::FormatDuration(absl::Trunc(now - s->last_recv, absl::Milliseconds(1))),
                   absl::FormatDuration(options_.lease));
      expired.push_back(s);
    }
    if (!expired.empty()) {
      // Aborting takes gRPC's locks: not under ours.
      mu_.Unlock();
      for (auto& session : expired) session->Abort();
      mu_.Lock();
    }
  }
}

}  // namespace asflow
