// The driver: the thread, its command queue, and the public API. Runs are
// in scheduler_runs.cc, executions in scheduler_execs.cc.
#include "server/scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/paths.h"
#include "common/wake_batch.h"
#include "common/spec_validator.h"
#include "server/shared_outputs.h"
#include "spdlog/spdlog.h"

namespace asflow {

Scheduler::Scheduler(SchedulerOptions options) : options_(std::move(options)) {
  // Checked by the daemon before (ParseThrottleFlag); a bad one is skipped.
  if (absl::Status s = DefineDaemonKeys(); !s.ok()) spdlog::error("{}", std::string(s.message()));
  // The plan queues an instance as its seq (>= 0) in its run's FIFO, and an
  // execution queued again (a retry, a lost worker) as -id.
  plan_.SetLiveness([this](int64_t run_id, int64_t item) {
    if (item < 0) {
      Exec* exec = execs_.Find(-item);
      return exec != nullptr && exec->WaitsToStart();
    }
    auto r = runs_.find(run_id);
    if (r == runs_.end()) return false;
    const RunRt& run = *r->second;
    const InstanceRt& inst = run.instances[item];
    // A code run's instance parked while its process was away is queued
    // again when the process calls it again.
    return inst.state == v1::QUEUED && inst.exec == 0 && (run.code == nullptr || !run.code->parked.contains(item));
  });
}

Scheduler::~Scheduler() { Stop(); }

RunnerEvents Scheduler::runner_events() {
  RunnerEvents events;
  events.on_done = [this](ExecResult r) { Post([this, r = std::move(r)]() mutable { OnExecDone(std::move(r)); }); };
  events.on_progress = [this](ExecId id, int64_t bytes, int64_t lines) {
    Post([this, id, bytes, lines] { OnExecProgress(id, bytes, lines); });
  };
  events.on_spawn = [this](ExecId id, pid_t pgid) { Post([this, id, pgid] { OnExecSpawned(id, pgid); }); };
  events.on_pool_slots = [this](const std::string& pool, int slots) {
    Post([this, pool, slots] { OnPoolSlots(pool, slots); });
  };
  events.on_self_progress = [this](ExecId id, SelfProgress progress) {
    Post([this, id, progress = std::move(progress)] { OnExecSelfProgress(id, progress); });
  };
  // Straight to the log hub, not through this thread: stderr says nothing
  // the scheduler acts on. deps_ is set before any job starts.
  events.on_stderr = [this](ExecId id, absl::string_view chunk) {
    if (deps_.logs != nullptr) deps_.logs->Append(id, chunk);
  };
  events.on_handoff = [this](ExecId from, ExecId to) { Post([this, from, to] { OnHandoff(from, to); }); };
  return events;
}

void Scheduler::SetDeps(SchedulerDeps deps) {
  deps_ = deps;
  recorder_ = std::make_unique<Recorder>(
      deps_.store, deps_.hub,
      [this](int64_t run_id, const absl::Status& s) { Post([this, run_id, s] { OnStoreLost(run_id, s); }); },
      deps_.send_to_session, deps_.logs);
  plan_.SetPoolSlots("local", options_.local_slots);
  // A code session runs whatever its run's limits let start.
  plan_.SetPoolSlots("code", 1 << 30);
}

absl::Status Scheduler::Resume() {
  // A pgid recorded before a crash may only be killed in the same boot.
  const std::string boot_id = deps_.fs->BootId();
  auto previous_boot = deps_.store->GetMeta("boot_id");
  if (!previous_boot.ok()) return previous_boot.status();
  const bool same_boot = !boot_id.empty() && *previous_boot == boot_id;
  if (absl::Status s = deps_.store->SetMeta("boot_id", boot_id); !s.ok()) return s;
  if (absl::Status s = LoadPauses(); !s.ok()) return s;
  auto running = deps_.store->ListRuns(1 << 30, /*only_running=*/true);
  if (!running.ok()) return running.status();
  std::reverse(running->begin(), running->end());  // oldest first keeps fairness order
  for (RunRecord& rec : *running) {
    if (absl::Status s = ResumeRun(rec, same_boot); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status Scheduler::Start() {
  if (absl::Status s = Resume(); !s.ok()) return s;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Scheduler::Drain(std::function<void()> idle) {
  Post([this, idle = std::move(idle)]() mutable {
    draining_ = true;
    drained_ = std::move(idle);
    RevokeSuccessors();
    spdlog::info("draining: {} attempts running, nothing new starts", plan_.running_total());
  });
}

void Scheduler::Stop() {
  if (!thread_.joinable()) return;
  Post([this] {
    stopping_ = true;
    ExpireRevokeWaits(deps_.clock->Now());  // answers every pause still waiting
    execs_.ForEach([](Exec& exec) {
      if (exec.started && exec.runner != nullptr) exec.runner->Cancel(exec.id);
    });
  });
  {
    absl::MutexLock lock(&mu_);
    quit_ = true;
  }
  thread_.join();
}

void Scheduler::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  commands_.push_back(std::move(fn));
}

absl::Time Scheduler::NextWakeup() const {
  absl::Time next = std::min({plan_.NextWakeup(), timers_.Next(), throttle_.NextExpiry()});
  for (const RevokeWait& wait : revoke_waits_) next = std::min(next, wait.deadline);
  for (const auto& [id, run] : runs_) {
    if (run->code != nullptr && run->code->session == 0) next = std::min(next, run->code->detached_until);
  }
  return next;
}

void Scheduler::Loop() {
  Pump();  // resumed runs queued work before the loop started
  for (;;) {
    std::vector<std::function<void()>> batch;
    {
      // Wake for commands, the next timer or the next rate token. The
      // deadline is in the clock's time, which for the daemon is real time.
      absl::Time deadline = NextWakeup();
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return quit_ || !commands_.empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
      batch.swap(commands_);
      if (batch.empty() && quit_) return;
    }
    RunCommands(std::move(batch));
  }
}

void Scheduler::Step() {
  for (;;) {
    std::vector<std::function<void()>> batch;
    {
      absl::MutexLock lock(&mu_);
      batch.swap(commands_);
    }
    RunCommands(std::move(batch));
    absl::MutexLock lock(&mu_);
    if (commands_.empty()) return;
  }
}

void Scheduler::RunCommands(std::vector<std::function<void()>> batch) {
  // What this turn sends a session (starts, answers) leaves in one message.
  WakeBatch wakes;
  for (auto& fn : batch) fn();
  if (stopping_) return;
  const absl::Time now = deps_.clock->Now();
  FireTimers(now);
  ExpireRevokeWaits(now);
  ExpireDetachedRuns(now);
  RefreshThrottleNotes(now);
  if (!draining_) return Pump();
  if (drained_ != nullptr && plan_.running_total() == 0) {
    auto idle = std::move(drained_);
    drained_ = nullptr;
    idle();
  }
}

void Scheduler::FireTimers(absl::Time now) {
  for (ExecId id : timers_.PopDue(now)) {
    Exec* exec = execs_.Find(id);
    // Gone, or its runs were cancelled meanwhile.
    if (exec == nullptr || !exec->WaitsToStart()) continue;
    // Its backoff (or pause) is over: ahead of what never started.
    plan_.EnqueueAhead(-id, exec->def->task_key, exec->waiters.front().first);
  }
}

void Scheduler::Pump() {
  for (;;) {
    // One clock reading per start: the recorded start time is the instant
    // the plan's limits and rate were checked against.
    const absl::Time now = deps_.clock->Now();
    std::optional<PlanPick> pick = plan_.NextStartable(now);
    if (!pick) return;
    if (pick->item < 0) {  // an execution queued again
      plan_.Bind(-pick->item);
      StartExec(*execs_.Find(-pick->item), now);
      continue;
    }
    StartPicked(*pick, now);
  }
}

absl::Status Scheduler::CheckWorkspace(v1::SubmitFlowRequest* request) const {
  const std::string& ws = request->workspace();
  if (ws.empty() || ws[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("workspace '", ws, "' must be an absolute path"));
  }
  auto real = deps_.fs->RealPath(ws);
  if (!real.ok()) return absl::InvalidArgumentError(absl::StrCat("workspace ", real.status().message()));
  for (const std::string& root : options_.allowed_roots) {
    if (PathIsUnder(*real, root)) {
      request->set_workspace(*real);
      return absl::OkStatus();
    }
  }
  for (const std::string& root : options_.user_temp_roots) {
    if (*real == root || !PathIsUnder(*real, root)) continue;
    // Every directory from the one right below the temporary root down to
    // the workspace is ours, and the first writable by nobody else: no
    // other user can have made or redirected any of it.
    bool ours = true;
    for (size_t end = real->find('/', root.size() + 1);; end = real->find('/', end + 1)) {
      const std::string dir = real->substr(0, end);
      ours = ours && deps_.fs->IsPrivateDir(dir);
      if (!ours || end == std::string::npos) break;
    }
    if (ours) {
      request->set_workspace(*real);
      return absl::OkStatus();
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "workspace ", *real, " is in ", root, " but not in a directory private to this user (owned by it, "
        "writable by nobody else), which is what this daemon accepts there; start asflowd with --allow-root"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "workspace ", *real, " is outside the roots this daemon allows (",
      absl::StrJoin(options_.allowed_roots, ", "),
      options_.user_temp_roots.empty() ? "" : "; and private directories in ",
      absl::StrJoin(options_.user_temp_roots, ", "), "); start asflowd with --allow-root"));
}

void Scheduler::Submit(v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<Submitted>)> done) {
  Post([this, request = std::move(request), done = std::move(done)]() mutable {
    if (stopping_ || draining_) return done(absl::UnavailableError("asflowd is shutting down"));
    if (absl::Status s = CheckSubmittable(request); !s.ok()) return done(s);
    if (absl::Status s = CheckWorkspace(&request); !s.ok()) return done(s);
    auto run = BuildRun(request, options_.default_limit);
    if (!run.ok()) return done(run.status());
    auto ws = deps_.fs->Open((*run)->workspace);
    if (!ws.ok()) return done(ws.status());
    (*run)->ws = std::move(*ws);
    (*run)->created_ms = NowMs();
    if (absl::Status s = AcquireKeys(**run); !s.ok()) return done(s);
    v1::Run proto = Recorder::RunProto(**run);
    auto id = deps_.store->CreateRun(proto, (*run)->request.SerializeAsString());
    if (!id.ok()) {
      ReleaseKeys(**run);
      return done(id.status());
    }
    (*run)->id = *id;
    spdlog::info("run {} ({}) submitted in {}", *id, (*run)->flow, (*run)->workspace);
    // Answered before the run starts: its first expansion may take a while
    // (100,000 instances, or a whole run's worth of cached outputs), and
    // the submitter's Watch is set up meanwhile. Events are published after
    // their store commit, so none of this run's has a seq at or below this.
    std::vector<const RunRt*> active;
    for (const auto& [other_id, other] : runs_) active.push_back(other.get());
    Submitted submitted{*id, deps_.hub->last_seq(), SharedOutputWarnings(**run, active)};
    for (const std::string& warning : submitted.warnings) spdlog::warn("run {}: {}", *id, warning);
    done(std::move(submitted));
    StartRun(std::move(*run));
  });
}

void Scheduler::Cancel(int64_t run_id, std::function<void(absl::StatusOr<v1::RunState>)> done) {
  Post([this, run_id, done = std::move(done)] {
    auto it = runs_.find(run_id);
    if (it != runs_.end()) {
      FinishRun(*it->second, v1::RUN_CANCELLED, "cancelled");
      return done(v1::RUN_CANCELLED);
    }
    auto rec = deps_.store->GetRun(run_id);
    if (!rec.ok()) return done(rec.status());
    done(rec->run.state());
  });
}

void Scheduler::Reset(v1::ResetTasksRequest request,
                      std::function<void(absl::StatusOr<v1::ResetTasksResponse>)> done) {
  Post([this, request = std::move(request), done = std::move(done)]() mutable { DoReset(request, std::move(done)); });
}

Runner* Scheduler::RunnerFor(const std::string& pool) const {
  if (pool == "local") return deps_.local;
  if (pool == "code") return deps_.code;
  return deps_.remote;
}

}  // namespace asflow
