// Scheduler: each attempt's history — its live stderr for readers (the
// LogHub) and, once it is over, its row in the store (asflowctl show,
// asflowctl logs). Executions are in scheduler_execs.cc.
#include <utility>

#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {

void Scheduler::BeginAttempt(Exec& exec, absl::Time now) {
  exec.attempt_started_ms = absl::ToUnixMillis(now);
  const auto& [first_run, first_seq] = exec.waiters.front();
  const RunRt& first = *runs_.at(first_run);
  const TaskRt& task = first.tasks[first.instances[first_seq].task];
  // The in-process built-ins and code sessions' calls (a Python function:
  // the session carries no stderr) write none: not worth a LogHub entry
  // (W3 runs 50,000 built-ins, W3-py 20,000 calls).
  exec.live_log = deps_.logs != nullptr && task.pool != "code" &&
                  !(task.pool == "local" && !task.spec->handler().empty());
  if (!exec.live_log) return;
  std::vector<LogSource> sources;
  for (const auto& [run_id, seq] : exec.waiters) {
    const RunRt& run = *runs_.at(run_id);
    const InstanceRt& inst = run.instances[seq];
    sources.push_back(LogSource{run_id, seq, run.tasks[inst.task].spec->name(), inst.params});
  }
  deps_.logs->Begin(exec.id, exec.attempts, exec.attempt_started_ms, std::move(sources));
}

void Scheduler::JoinAttempt(const Exec& exec, const RunRt& run, int64_t seq) {
  if (!exec.live_log) return;
  const InstanceRt& inst = run.instances[seq];
  deps_.logs->Join(exec.id, LogSource{run.id, seq, run.tasks[inst.task].spec->name(), inst.params});
}

void Scheduler::DropAttempt(const Exec& exec) {
  if (exec.live_log && exec.started) deps_.logs->End(exec.id, exec.attempt_started_ms);
}

void Scheduler::RecordAttempt(const Exec& exec, const ExecResult& result, const AttemptOutcome& outcome) {
  const bool final = outcome.kind == AttemptOutcome::Kind::kFinal;
  // A clean success says nothing its instance row does not (state DONE,
  // started_ms, finished_ms, attempts): no row, so a run of 100,000 quiet
  // instances writes no more than before. An attempt no worker took never
  // ran.
  const bool quiet_success = final && outcome.state == v1::DONE && result.process.stderr_tail.empty();
  const bool never_ran = outcome.kind == AttemptOutcome::Kind::kRequeueLater;
  std::vector<AttemptRecord> rows;
  if (!quiet_success && !never_ran) {
    for (const auto& [run_id, seq] : exec.waiters) {
      if (!runs_.contains(run_id)) continue;
      AttemptRecord r;
      r.run_id = run_id;
      r.seq = seq;
      r.attempt = exec.attempts;
      r.started_ms = exec.attempt_started_ms;
      r.finished_ms = NowMs();
      r.exit_code = result.process.exit_code;
      r.term_signal = result.process.term_signal;
      r.state = final ? outcome.state : v1::QUEUED;
      r.error = outcome.error;
      r.stderr_tail = result.process.stderr_tail;
      rows.push_back(std::move(r));
    }
  }
  LogHub* logs = exec.live_log ? deps_.logs : nullptr;
  const ExecId id = exec.id;
  const int64_t started_ms = exec.attempt_started_ms;
  if (rows.empty()) {
    if (logs != nullptr) logs->End(id, started_ms);
    return;
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const bool last = i + 1 == rows.size();
    deps_.store->PutAttempt(std::move(rows[i]), [logs, id, started_ms, last](const absl::Status& s) {
      // History only: a lost row fails nothing (the instance's own write,
      // in the same group, reports a full disk).
      if (!s.ok()) spdlog::warn("attempt history: {}", std::string(s.message()));
      if (last && logs != nullptr) logs->End(id, started_ms);
    });
  }
}

}  // namespace asflow
