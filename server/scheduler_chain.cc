// Scheduler: chained starts for code sessions (docs/sessions.md). A
// process running many short calls of one task under its limit would
// otherwise wait a round trip to the daemon between every two calls in a
// slot: the daemon hands it the next calls ahead (StartCall.after), each
// to begin where the one before it ends well, and counts a chained call
// against the limit only from the moment its process says it began
// (ResultOp.started_next), so no more run at once than the limit allows.
#include <string>

#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

// Calls chained behind a running one whose predecessor took less than
// kFastAttempt (a slower call gains nothing from more: one round trip is
// small beside it, and every chained call is held out of the queue).
constexpr int kChainDepth = 64;
constexpr int64_t kFastAttemptMs = 20;
// How long a Pause waits for its revokes to be answered before it answers
// anyway: a process answers within a round trip unless it is wedged.
constexpr absl::Duration kRevokeSettleLimit = absl::Seconds(5);

}  // namespace

int Scheduler::ChainDepth(const std::string& task_key) const {
  auto it = fast_tasks_.find(task_key);
  return it != fast_tasks_.end() && it->second ? kChainDepth : 1;
}

void Scheduler::NoteSpeed(const Exec& exec) {
  const int64_t took = absl::ToUnixMillis(deps_.clock->Now()) - exec.attempt_started_ms;
  fast_tasks_[exec.def->task_key] = took < kFastAttemptMs;
}

void Scheduler::ExtendChain(Exec& exec, absl::Time now, int depth, std::vector<ExecJob>* jobs) {
  Exec* tail = &exec;
  int chained = 0;
  while (tail->successor != 0) {
    Exec* next = execs_.Find(tail->successor);
    if (next == nullptr) return;  // being returned: the chain ends there
    tail = next;
    ++chained;
  }
  for (; chained < depth; ++chained) {
    tail = ChainAfter(*tail, now, jobs);
    if (tail == nullptr) return;
  }
}

Exec* Scheduler::ChainAfter(Exec& tail, absl::Time now, std::vector<ExecJob>* jobs) {
  if (draining_ || stopping_ || tail.cancelling || tail.revoked || tail.successor != 0 || tail.waiters.size() != 1) {
    return nullptr;
  }
  const auto [run_id, seq] = tail.waiters.front();
  RunRt& run = *runs_.at(run_id);
  if (run.code == nullptr || tail.runner == nullptr || !tail.runner->ChainsStarts(run.code->session)) {
    return nullptr;
  }
  // The call the process knows `tail` by (as BuildJob gave it).
  auto calls = run.code->calls.find(seq);
  if (calls == run.code->calls.end() || calls->second.empty()) return nullptr;
  const int64_t after_call = calls->second.front();
  while (true) {
    const std::optional<int64_t> item = plan_.TakeSuccessor(tail.def->task_key, run_id, now);
    if (!item) return nullptr;
    InstanceRt& inst = run.instances[*item];
    const int t = inst.task;
    std::string key = ExecKey(run, run.tasks[t], inst);
    if (Exec* shared = execs_.FindByKey(key)) {
      JoinExec(run, *item, *shared);
      continue;
    }
    if (CacheByFile(run, *item, v1::INSTANCE_STATE_UNSPECIFIED)) {
      TaskProgress(run, t);
      AfterChange(run);  // cannot end the run: `tail` is in it
      continue;
    }
    Exec& next = execs_.Create(std::move(key), run.tasks[t].exec_def);
    next.waiters.emplace_back(run.id, *item);
    inst.exec = next.id;
    next.started = true;
    next.pregranted = true;
    next.after = tail.id;
    ++next.attempts;
    next.runner = tail.runner;
    tail.successor = next.id;
    pregranted_.insert(next.id);
    ExecJob job = BuildJob(next.id, run, *item);
    job.attempt = next.attempts;
    job.after = tail.id;
    job.after_call = after_call;
    jobs->push_back(std::move(job));
    return &next;
  }
}

void Scheduler::OnHandoff(ExecId from, ExecId to) {
  RevokeSettled(to);
  Exec* prev = execs_.Find(from);
  Exec* next = execs_.Find(to);
  if (prev != nullptr) prev->successor = 0;
  if (next == nullptr || !next->pregranted) {
    // Returned meanwhile (its process cannot have begun it then).
    spdlog::error("chained start: execution {} handed its slot to {}, which is not chained", from, to);
    return;
  }
  pregranted_.erase(to);
  next->pregranted = false;
  next->revoked = false;  // it began: a revoke sent meanwhile is ignored (CancelCall.unless_begun)
  next->after = 0;
  if (!plan_.Handoff(from, to)) {
    spdlog::error("chained start: execution {} handed a slot it does not hold to {}", from, to);
  }
  if (prev != nullptr) NoteSpeed(*prev);
  const absl::Time now = deps_.clock->Now();
  MarkStarted(*next, now);
  if (stopping_) return;
  std::vector<ExecJob> jobs;
  ExtendChain(*next, now, ChainDepth(next->def->task_key), &jobs);
  if (!jobs.empty()) next->runner->StartAll(std::move(jobs));
}

void Scheduler::ReturnUnbegun(Exec& exec) {
  RevokeSettled(exec.id);
  pregranted_.erase(exec.id);
  if (Exec* prev = execs_.Find(exec.after); prev != nullptr && prev->successor == exec.id) prev->successor = 0;
  exec.pregranted = false;
  exec.revoked = false;
  exec.after = 0;
  exec.successor = 0;
  exec.started = false;
  exec.cancelling = false;
  exec.runner = nullptr;
  --exec.attempts;
  if (stopping_ || exec.waiters.empty()) {
    execs_.Erase(exec.id);
  } else {
    plan_.EnqueueAhead(-exec.id, exec.def->task_key, exec.waiters.front().first);
  }
}

void Scheduler::RevokeSuccessors() {
  for (ExecId id : pregranted_) {
    Exec* exec = execs_.Find(id);
    if (exec == nullptr || exec->cancelling || exec->revoked) continue;
    exec->revoked = true;
    exec->runner->Revoke(id);
  }
}

void Scheduler::RevokeContended(const std::string& task_key, int64_t run_id) {
  for (ExecId id : pregranted_) {
    Exec* exec = execs_.Find(id);
    if (exec == nullptr || exec->cancelling || exec->revoked || exec->def->task_key != task_key) continue;
    if (!exec->waiters.empty() && exec->waiters.front().first == run_id) continue;
    exec->revoked = true;
    exec->runner->Revoke(id);
  }
}

void Scheduler::AfterRevokesSettle(std::function<void()> answer) {
  if (pregranted_.empty()) return answer();
  revoke_waits_.push_back(RevokeWait{pregranted_, deps_.clock->Now() + kRevokeSettleLimit, std::move(answer)});
}

void Scheduler::AnswerRevokeWaits(absl::FunctionRef<bool(RevokeWait&)> settled) {
  std::vector<std::function<void()>> ready;
  for (auto it = revoke_waits_.begin(); it != revoke_waits_.end();) {
    if (!settled(*it)) {
      ++it;
      continue;
    }
    ready.push_back(std::move(it->answer));
    it = revoke_waits_.erase(it);
  }
  for (auto& answer : ready) answer();
}

void Scheduler::RevokeSettled(ExecId id) {
  if (revoke_waits_.empty()) return;
  AnswerRevokeWaits([id](RevokeWait& wait) {
    wait.pending.erase(id);
    return wait.pending.empty();
  });
}

void Scheduler::ExpireRevokeWaits(absl::Time now) {
  AnswerRevokeWaits([this, now](RevokeWait& wait) {
    if (stopping_) return true;
    if (wait.deadline > now) return false;
    spdlog::warn("pause: {} chained call(s) neither stood down nor began within {}; answering without them",
                 wait.pending.size(), absl::FormatDuration(kRevokeSettleLimit));
    return true;
  });
}

}  // namespace asflow
