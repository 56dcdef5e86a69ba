#include "server/worker_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/spec_validator.h"
#include "spdlog/spdlog.h"
#include "exec/protocol.h"
#include "server/guarded_callback.h"

namespace asflow {


class WorkerHub::Session {
 public:
  int64_t id = 0;
  std::string pool;
  int slots = 0;
  std::vector<std::string> handlers;
  v1::WorkerInfo info;

  // Ends the stream, if its handler has not returned yet (the abort
  // function holds the handler's ServerContext).
  void Abort() { abort.Call(); }
  void ForgetAbort() { abort.Clear(); }
  GuardedCallback abort;

  // Guarded by the hub's mu_.
  absl::Time last_recv;
  bool draining = false;
  bool closed = false;
  bool expired = false;
  std::deque<v1::DaemonMessage> outbox;
  // Open assignments: their output belongs to the session's reader thread.
  absl::flat_hash_map<ExecId, std::shared_ptr<RemoteOutput>> open;

  std::string Label() const { return absl::StrCat(info.name(), " (session ", id, ")"); }
  bool Offers(const std::string& handler) const {
    return handler.empty() || std::find(handlers.begin(), handlers.end(), handler) != handlers.end();
  }
};

WorkerHub::WorkerHub(WorkerHubOptions options, AtomicFileOptions file_options, RunnerEvents events)
    : options_(std::move(options)),
      file_options_(std::move(file_options)),
      events_(std::move(events)),
      commits_(std::make_unique<CommitPool>(options_.commit_threads)) {
  watchdog_ = std::thread([this] { Watchdog(); });
}

WorkerHub::~WorkerHub() {
  Close();
  commits_.reset();  // finishes the outputs still queued
}

void WorkerHub::Close() {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    for (auto& [id, session] : sessions_) sessions.push_back(session);
  }
  for (auto& session : sessions) session->Abort();
  if (watchdog_.joinable()) watchdog_.join();
}

void WorkerHub::Push(Session& session, v1::DaemonMessage message) {
  session.outbox.push_back(std::move(message));
}

int WorkerHub::PoolSlotsLocked(const std::string& pool) const {
  int slots = 0;
  for (const auto& [id, s] : sessions_) {
    if (s->pool == pool && !s->closed && !s->expired && !s->draining) slots += s->slots;
  }
  return slots;
}

int WorkerHub::PoolSlots(const std::string& pool) const {
  absl::MutexLock lock(&mu_);
  return PoolSlotsLocked(pool);
}

void WorkerHub::PublishPool(const std::string& pool) {
  if (events_.on_pool_slots != nullptr) events_.on_pool_slots(pool, PoolSlotsLocked(pool));
}

absl::StatusOr<std::shared_ptr<WorkerHub::Session>> WorkerHub::Join(const v1::WorkerHello& hello,
                                                                    const std::string& peer,
                                                                    std::function<void()> abort) {
  if (hello.pools_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "hello.pools: a worker serves exactly one pool, got ", hello.pools_size(),
        " (start one asflow-worker per pool)"));
  }
  const std::string& pool = hello.pools(0);
  if (!IsPoolName(pool) || pool == "local") {
    return absl::InvalidArgumentError(absl::StrCat(
        "hello.pools: '", pool, "' is not a remote pool name ([A-Za-z0-9_.-]+, not \"local\")"));
  }
  if (hello.slots() < 1 || hello.slots() > options_.max_slots) {
    return absl::InvalidArgumentError(
        absl::StrCat("hello.slots: must be 1..", options_.max_slots, ", got ", hello.slots()));
  }
  auto session = std::make_shared<Session>();
  session->pool = pool;
  session->slots = hello.slots();
  session->handlers.assign(hello.handlers().begin(), hello.handlers().end());
  session->abort.Set(std::move(abort));
  absl::Time now = absl::Now();
  session->last_recv = now;
  v1::WorkerInfo& info = session->info;
  info.set_name(hello.name().empty() ? hello.hostname() : hello.name());
  info.set_hostname(hello.hostname());
  info.set_peer(peer);
  *info.mutable_pools() = hello.pools();
  info.set_slots(hello.slots());
  info.set_version(hello.version());
  *info.mutable_handlers() = hello.handlers();
  info.set_connected_ms(absl::ToUnixMillis(now));
  info.set_last_heartbeat_ms(absl::ToUnixMillis(now));

  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("asflowd is shutting down");
  if (static_cast<int>(sessions_.size()) >= options_.max_sessions) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many workers connected (", options_.max_sessions, ")"));
  }
  session->id = next_session_++;
  info.set_session_id(session->id);
  v1::DaemonMessage welcome;
  welcome.mutable_welcome()->set_session_id(session->id);
  welcome.mutable_welcome()->set_lease_ms(absl::ToInt64Milliseconds(options_.lease));
  welcome.mutable_welcome()->set_heartbeat_ms(absl::ToInt64Milliseconds(options_.lease / 3));
  welcome.mutable_welcome()->set_daemon_version(kAsflowVersion);
  Push(*session, std::move(welcome));
  sessions_[session->id] = session;
  spdlog::info("worker {} joined pool '{}' from {} with {} slots (host {}, version {}{}{})",
               session->Label(), pool, peer, session->slots, hello.hostname(), hello.version(),
               session->handlers.empty() ? "" : ", handlers ", absl::StrJoin(session->handlers, ","));
  PublishPool(pool);
  return session;
}

void WorkerHub::Start(ExecJob job) {
  ExecResult refused;
  {
    absl::MutexLock lock(&mu_);
    Session* best = nullptr;
    int best_free = 0;
    bool pool_has_workers = false;
    bool offered = false;  // by a live session of the pool, busy or not
    for (auto& [id, s] : sessions_) {
      if (s->pool != job.pool || s->closed || s->expired) continue;
      pool_has_workers = true;
      if (!s->Offers(job.builtin)) continue;
      offered = true;
      int free = s->slots - static_cast<int>(s->open.size());
      if (s->draining || free <= 0) continue;
      // Most free slots first spreads work over workers; ties go to the
      // one that has had fewer assignments.
      if (free > best_free ||
          (free == best_free && s->info.assigned_total() < best->info.assigned_total())) {
        best = s.get();
        best_free = free;
      }
    }
    if (best != nullptr) {
      v1::DaemonMessage message;
      v1::Assignment& a = *message.mutable_assign();
      a.set_id(job.id);
      if (job.builtin.empty()) {
        a.mutable_argv()->Add(job.process.argv.begin(), job.process.argv.end());
      } else {
        a.set_handler(job.builtin);
      }
      a.mutable_env()->Add(job.process.env.begin(), job.process.env.end());
      if (job.process.timeout != absl::InfiniteDuration()) {
        a.set_timeout_ms(std::max<int64_t>(1, absl::ToInt64Milliseconds(job.process.timeout)));
      }
      a.set_kill_grace_ms(absl::ToInt64Milliseconds(job.process.kill_grace));
      a.set_params_json(job.params);
      a.set_label(job.label);
      a.set_stderr_tail_bytes(static_cast<int64_t>(job.process.stderr_tail_bytes));
      a.set_wants_output(!job.output.empty());
      a.set_output(job.output);
      ExecId id = job.id;
      best->open[id] = std::make_shared<RemoteOutput>(std::move(job), file_options_, events_.on_progress);
      best->info.set_assigned_total(best->info.assigned_total() + 1);
      owner_[id] = best;
      Push(*best, std::move(message));
      return;
    }
    refused.id = job.id;
    if (pool_has_workers && !offered) {
      // Not a loss: nothing in this pool can ever run it as things stand.
      refused.output_status = absl::FailedPreconditionError(absl::StrCat(
          "no worker in pool '", job.pool, "' offers handler '", job.builtin, "'"));
    } else {
      // The plan's view of the pool was a moment behind (a worker just
      // left or began draining): the job goes back to the queue.
      refused.infra = ExecResult::Infra::kUnplaced;
      refused.output_status = absl::UnavailableError(
          absl::StrCat("no free worker in pool '", job.pool, "'"));
    }
  }
  events_.on_done(std::move(refused));
}

void WorkerHub::Cancel(ExecId id) {
  absl::MutexLock lock(&mu_);
  auto it = owner_.find(id);
  if (it == owner_.end()) return;
  v1::DaemonMessage message;
  message.mutable_cancel()->set_id(id);
  Push(*it->second, std::move(message));
}

absl::Status WorkerHub::Handle(Session& session, const v1::WorkerMessage& message) {
  std::shared_ptr<RemoteOutput> open;
  {
    absl::MutexLock lock(&mu_);
    session.last_recv = absl::Now();
    session.info.set_last_heartbeat_ms(absl::ToUnixMillis(session.last_recv));
    switch (message.msg_case()) {
      case v1::WorkerMessage::kHeartbeat:
        return absl::OkStatus();
      case v1::WorkerMessage::kDrain:
        if (!session.draining) {
          session.draining = true;
          session.info.set_draining(true);
          spdlog::info("worker {} is draining ({}): {} assignments still open", session.Label(),
                       message.drain().reason(), session.open.size());
          PublishPool(session.pool);
        }
        return absl::OkStatus();
      case v1::WorkerMessage::kOutput:
      case v1::WorkerMessage::kResult: {
        ExecId id = message.has_output() ? message.output().id() : message.result().id();
        auto it = session.open.find(id);
        if (it == session.open.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              message.has_output() ? "output" : "result", " for assignment ", id,
              ", which is not open on this session"));
        }
        open = it->second;
        if (message.has_result()) {
          session.open.erase(it);
          owner_.erase(id);
        }
        break;
      }
      default:
        return absl::InvalidArgumentError("unexpected message (hello sent twice, or empty)");
    }
  }
  // The file work happens outside the lock: only this thread touches it.
  if (message.has_output() && !message.output().stderr().empty()) {
    // Live stderr: to readers only (the result brings the stored tail).
    const std::string& err = message.output().stderr();
    if (events_.on_stderr != nullptr) {
      events_.on_stderr(open->job().id,
                        absl::string_view(err).substr(0, static_cast<size_t>(options_.max_chunk_bytes)));
    }
    if (message.output().data().empty()) return absl::OkStatus();
  }
  if (message.has_output()) {
    const std::string& data = message.output().data();
    if (static_cast<int64_t>(data.size()) > options_.max_chunk_bytes) {
      // Never written: the instance fails naming the chunk, the session
      // (and everyone else's work on it) goes on.
      open->Refuse(absl::InvalidArgumentError(
          absl::StrCat("worker ", session.info.name(), " sent an output chunk of ", data.size(), " bytes for ",
                       open->job().label, "; at most ", options_.max_chunk_bytes, " are allowed")));
      Cancel(open->job().id);
    } else if (!open->Append(data)) {
      // A failed write makes more output pointless.
      Cancel(open->job().id);
    }
    // Time spent writing is ours, not the worker's silence.
    absl::MutexLock lock(&mu_);
    session.last_recv = absl::Now();
    return absl::OkStatus();
  }
  ExecResult result;
  result.id = open->job().id;
  result.process = ResultFromProto(message.result());
  // The daemon's --stderr-tail, whatever the worker kept (an older one
  // keeps its own 16 KiB; 0 in the assignment means that default).
  std::string& tail = result.process.stderr_tail;
  if (tail.size() > open->job().process.stderr_tail_bytes) {
    tail.erase(0, tail.size() - open->job().process.stderr_tail_bytes);
  }
  absl::Status check;
  if (!open->job().output.empty() && result.process.ok() && message.result().stdout_bytes() != open->bytes()) {
    // Cannot happen with a correct worker; never keep a short file.
    check = absl::DataLossError(absl::StrCat("worker ", session.info.name(), " reported ",
                                             message.result().stdout_bytes(), " bytes of output but sent ",
                                             open->bytes()));
  }
  commits_->Run([this, open, result = std::move(result), check]() mutable {
    open->Finish(&result, check);
    events_.on_done(std::move(result));
  });
  return absl::OkStatus();
}

void WorkerHub::Leave(Session& session, const std::string& why) {
  // From here the handler may return and free what abort() refers to.
  session.ForgetAbort();
  std::vector<std::shared_ptr<RemoteOutput>> lost;
  {
    absl::MutexLock lock(&mu_);
    const std::string reason = closed_ ? "asflowd is shutting down" : why;
    session.closed = true;
    for (auto& [id, open] : session.open) {
      lost.push_back(open);
      owner_.erase(id);
    }
    session.open.clear();
    sessions_.erase(session.id);
    if (lost.empty()) {
      spdlog::info("worker {} left: {}", session.Label(), reason);
    } else {
      spdlog::warn("worker {} lost with {} assignments open: {}", session.Label(), lost.size(), reason);
    }
    PublishPool(session.pool);
    // Reported under the lock, after the pool's new size, so the scheduler
    // never re-places them on the session that just went away.
    for (const auto& open : lost) {
      ExecResult result;
      result.id = open->job().id;
      open->Finish(&result, absl::AbortedError("lost"));  // partial output discarded
      result.bytes = 0;
      result.lines = 0;
      result.infra = ExecResult::Infra::kLost;
      result.output_status = absl::UnavailableError(
          absl::StrCat("worker ", session.info.name(), " (", session.info.hostname(), ") lost: ", reason));
      events_.on_done(std::move(result));
    }
  }
}

bool WorkerHub::NextOutgoing(Session& session, v1::DaemonMessage* out) {
  absl::MutexLock lock(&mu_);
  auto ready = [&session]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return session.closed || !session.outbox.empty();
  };
  mu_.Await(absl::Condition(&ready));
  if (session.closed) return false;
  *out = std::move(session.outbox.front());
  session.outbox.pop_front();
  return true;
}

bool WorkerHub::Expired(const Session& session) const {
  absl::MutexLock lock(&mu_);
  return session.expired;
}

std::vector<v1::WorkerInfo> WorkerHub::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::WorkerInfo> out;
  for (const auto& [id, s] : sessions_) {
    out.push_back(s->info);
    out.back().set_running(static_cast<int>(s->open.size()));
  }
  std::sort(out.begin(), out.end(),
            [](const v1::WorkerInfo& a, const v1::WorkerInfo& b) { return a.session_id() < b.session_id(); });
  return out;
}

void WorkerHub::Watchdog() {
  const absl::Duration tick = std::max(options_.lease / 6, absl::Milliseconds(50));
  const absl::Duration heartbeat = options_.lease / 3;
  absl::Time next_heartbeat = absl::Now() + heartbeat;
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&stop), tick)) return;
    absl::Time now = absl::Now();
    bool beat = now >= next_heartbeat;
    if (beat) next_heartbeat = now + heartbeat;
    std::vector<std::shared_ptr<Session>> expired;
    for (auto& [id, s] : sessions_) {
      if (s->closed || s->expired) continue;
      if (now - s->last_recv > options_.lease) {
        s->expired = true;
        spdlog::warn("worker {}: nothing received for {} (lease {}), ending its session",
                     s->Label(), absl::FormatDuration(absl::Trunc(now - s->last_recv, absl::Milliseconds(1))),
                     absl::FormatDuration(options_.lease));
        expired.push_back(s);
        PublishPool(s->pool);  // no new work for it
      } else if (beat) {
        v1::DaemonMessage message;
        message.mutable_heartbeat()->set_sent_ms(absl::ToUnixMillis(now));
        Push(*s, std::move(message));
      }
    }
    if (!expired.empty()) {
      // TryCancel takes gRPC's locks: not under ours.
      mu_.Unlock();
      for (auto& session : expired) session->Abort();
      mu_.Lock();
    }
  }
}

}  // namespace asflow
