// Scheduler: executions — starting them on runners, sharing them between
// runs, and applying what each attempt's outcome means (JudgeAttempt) to
// the instances waiting on it. Runs are in scheduler_runs.cc.
#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/random/distributions.h"
#include "absl/strings/str_cat.h"
#include "common/safe_path.h"
#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {

std::string Scheduler::ExecKey(const RunRt& run, const TaskRt& task, const InstanceRt& inst) {
  if (!inst.output.empty()) return absl::StrCat(run.workspace, "/", inst.output);
  // A code call without output returns its value to its own process:
  // never shared with another run.
  if (run.code != nullptr) return absl::StrCat(run.workspace, "\n", run.id, "\n", task.key, "\n", inst.params);
  // Without an output, the flow parameters its command uses tell two
  // runs' commands apart.
  std::string key = absl::StrCat(run.workspace, "\n", task.key, "\n", inst.params);
  for (const std::string& name : task.flow_params_used) absl::StrAppend(&key, "\n", name, "=", run.params.at(name));
  return key;
}

std::string Scheduler::CommandOf(const RunRt& run, int64_t seq) const {
  const InstanceRt& inst = run.instances[seq];
  const TaskRt& task = run.tasks[inst.task];
  if (run.code != nullptr) return absl::StrCat("code\n", task.key);
  if (!task.spec->handler().empty()) return absl::StrCat("handler\n", task.spec->handler(), "\n", inst.params);
  Bindings params = DecodeParams(inst.params);
  auto lookup = [&](absl::string_view name) { return LookupParam(params, run.params, name); };
  std::string command = "argv";
  for (const Template& arg : task.argv) {
    auto rendered = arg.Render(lookup);
    absl::StrAppend(&command, absl::string_view("\0", 1), rendered.ok() ? *rendered : arg.text());
  }
  return command;
}

void Scheduler::NoteMaker(const Exec& exec, RunRt& run, int64_t seq) {
  if (exec.waiters.empty()) return;
  const auto& [maker_run, maker_seq] = exec.waiters.front();
  if (maker_run == run.id) {
    run.made_by.erase(seq);
    return;
  }
  // The usual sharing (two runs of one flow, the same values) compares
  // equal: only a different command is reported as another run's.
  if (CommandOf(*runs_.at(maker_run), maker_seq) != CommandOf(run, seq)) {
    run.made_by[seq] = maker_run;
  } else {
    run.made_by.erase(seq);
  }
}

void Scheduler::JoinExec(RunRt& run, int64_t seq, Exec& exec) {
  InstanceRt& inst = run.instances[seq];
  NoteMaker(exec, run, seq);
  exec.waiters.emplace_back(run.id, seq);
  inst.exec = exec.id;
  // Queued (or chained, not begun), or being killed for a run that no
  // longer needs it: this run gets a fresh attempt once the dying process
  // is gone (OnExecDone).
  if (!exec.started || exec.cancelling || exec.pregranted) return;
  SetInstanceState(run, seq, v1::RUNNING);
  inst.pgid = exec.pgid;
  inst.started_ms = NowMs();
  recorder_->Instance(run, seq, v1::InstanceEvent::STARTED);
  JoinAttempt(exec, run, seq);
}

void Scheduler::StartPicked(const PlanPick& pick, absl::Time now) {
  RunRt& run = *runs_.at(pick.run_id);
  const int64_t seq = pick.item;
  InstanceRt& inst = run.instances[seq];
  const int t = inst.task;
  std::string key = ExecKey(run, run.tasks[t], inst);
  if (Exec* shared = execs_.FindByKey(key)) {
    // Another run queued it since, and got to start it first.
    plan_.Release();
    JoinExec(run, seq, *shared);
    return;
  }
  if (CacheByFile(run, seq, v1::INSTANCE_STATE_UNSPECIFIED)) {
    // Another run wrote it since.
    plan_.Release();
    TaskProgress(run, t);
    AfterChange(run);  // may end (and erase) the run
    return;
  }
  Exec& exec = execs_.Create(std::move(key), run.tasks[t].exec_def);
  exec.waiters.emplace_back(run.id, seq);
  inst.exec = exec.id;
  plan_.Bind(exec.id);
  StartExec(exec, now);
}

void Scheduler::StartExec(Exec& exec, absl::Time now) {
  exec.started = true;
  ++exec.attempts;
  // Built now, not when queued: a job holds argv and a whole environment,
  // and a run may have 100,000 instances queued.
  const auto& [first_run, first_seq] = exec.waiters.front();
  ExecJob job = BuildJob(exec.id, *runs_.at(first_run), first_seq);
  job.attempt = exec.attempts;
  exec.runner = RunnerFor(job.pool);
  MarkStarted(exec, now);
  if (job.session == 0) {
    exec.runner->Start(std::move(job));
    return;
  }
  // A code session's call: with the calls chained after it, in one batch.
  std::vector<ExecJob> jobs;
  jobs.push_back(std::move(job));
  ExtendChain(exec, now, ChainDepth(exec.def->task_key), &jobs);
  exec.runner->StartAll(std::move(jobs));
}

void Scheduler::MarkStarted(Exec& exec, absl::Time now) {
  const bool shared = exec.waiters.size() > 1;
  for (const auto& [run_id, seq] : exec.waiters) {
    RunRt& run = *runs_.at(run_id);
    InstanceRt& inst = run.instances[seq];
    // The first waiter's command runs (it may be another than before, if
    // the run that made the execution left it).
    if (shared) NoteMaker(exec, run, seq);
    SetInstanceState(run, seq, v1::RUNNING);
    inst.started_ms = absl::ToUnixMillis(now);
    inst.finished_ms = 0;
    inst.error.clear();
    inst.attempts = exec.attempts;
    recorder_->Instance(run, seq, v1::InstanceEvent::STARTED);
  }
  BeginAttempt(exec, now);
}

ExecJob Scheduler::BuildJob(ExecId id, const RunRt& run, int64_t seq) const {
  const InstanceRt& inst = run.instances[seq];
  const TaskRt& task = run.tasks[inst.task];
  // The instance's params hold its bindings: together with the run's
  // params they render the job.
  Bindings params = DecodeParams(inst.params);
  auto lookup = [&](absl::string_view name) { return LookupParam(params, run.params, name); };
  ExecJob job;
  job.id = id;
  job.workspace = run.workspace;
  job.output = inst.output;
  job.output_dir = task.output_dir;
  job.pool = task.pool;
  job.label = InstanceLabel(task.spec->name(), inst.params);
  job.builtin = task.spec->handler();
  if (!job.builtin.empty()) job.params = inst.params;
  job.process.kill_grace = options_.kill_grace;
  job.process.stderr_tail_bytes = options_.stderr_tail_bytes;
  job.compression_level = task.spec->compression_level();
  if (run.code != nullptr) {
    // Its process runs it, as the call it knows it by.
    job.session = run.code->session;
    auto calls = run.code->calls.find(seq);
    if (calls != run.code->calls.end() && !calls->second.empty()) job.call_id = calls->second.front();
    return job;
  }
  // The local pool runs a built-in handler in-process: no argv, no
  // environment (merging one costs more than the handler itself).
  if (!job.builtin.empty() && task.pool == "local") return job;
  for (const Template& arg : task.argv) {
    auto rendered = arg.Render(lookup);  // names were checked at submit
    job.process.argv.push_back(rendered.ok() ? *rendered : arg.text());
  }
  std::vector<std::string> env;
  for (const auto& [k, v] : run.params) env.push_back(absl::StrCat("ASFLOW_PARAM_", k, "=", v));
  for (const auto& [k, v] : params) env.push_back(absl::StrCat("ASFLOW_PARAM_", k, "=", v));
  if (task.pool == "local") {
    job.process.cwd = run.workspace;
    job.process.search_path = run.search_path;
    env.insert(env.begin(), run.env.begin(), run.env.end());
    job.process.env = MergeEnvironment(env);
  } else {
    // The client's environment (its PATH) means nothing on another host.
    job.process.env = std::move(env);
  }
  if (task.spec->has_timeout()) {
    job.process.timeout =
        absl::Seconds(task.spec->timeout().seconds()) + absl::Nanoseconds(task.spec->timeout().nanos());
  }
  return job;
}

void Scheduler::OnExecDone(ExecResult result) {
  plan_.Finished(result.id);
  Exec* exec = execs_.Find(result.id);
  if (exec == nullptr) return;
  if (exec->pregranted) return ReturnUnbegun(*exec);
  // Only code sessions' calls are chained: nothing to note for the rest.
  if (exec->runner == deps_.code && exec->attempt_started_ms != 0) NoteSpeed(*exec);
  if (stopping_ || exec->waiters.empty()) {
    // Shutting down (runs resume at the next start), or cancelled because
    // no run needs it any more.
    DropAttempt(*exec);
    execs_.Erase(result.id);
    return;
  }
  AttemptContext ctx;
  ctx.attempts = exec->attempts;
  ctx.losses = exec->losses;
  ctx.max_losses = options_.max_losses;
  ctx.cancelling = exec->cancelling;
  ctx.now = deps_.clock->Now();
  FillCooldownContext(*exec, ctx);
  AttemptOutcome outcome = JudgeAttempt(result, *exec->def->rules, ctx, absl::Uniform(rng_, 0.0, 1.0));
  AfterAttempt(*exec, outcome);
  if (outcome.kind == AttemptOutcome::Kind::kCooldown) BeginCooldown(*exec, outcome);
  if (outcome.kind == AttemptOutcome::Kind::kFinal) {
    FinishExec(result.id, outcome, result);
  } else {
    RecordAttempt(*exec, result, outcome);
    Requeue(*exec, outcome);
  }
}

void Scheduler::Requeue(Exec& exec, const AttemptOutcome& outcome) {
  exec.started = false;
  exec.cancelling = false;
  exec.pgid = 0;
  exec.runner = nullptr;
  const bool retry = outcome.kind == AttemptOutcome::Kind::kRetry;
  if (!retry) --exec.attempts;  // not the command's fault: not an attempt
  if (outcome.lost) ++exec.losses;
  if (outcome.kind == AttemptOutcome::Kind::kRequeue || outcome.kind == AttemptOutcome::Kind::kCooldown) {
    // Started before: ahead of work that never started. A cooldown holds
    // it back through its task's gates, not a timer.
    plan_.EnqueueAhead(-exec.id, exec.def->task_key, exec.waiters.front().first);
  } else {
    timers_.Add(deps_.clock->Now() + outcome.delay, exec.id);
  }
  for (const auto& [run_id, seq] : exec.waiters) {
    RunRt& run = *runs_.at(run_id);
    run.instances[seq].error = outcome.error;
    SetInstanceState(run, seq, v1::QUEUED, retry);
    recorder_->Instance(run, seq, v1::InstanceEvent::QUEUED);
  }
}

void Scheduler::WriteErrFile(const Exec& exec, AttemptOutcome& outcome) {
  const auto& [run_id, seq] = exec.waiters.front();
  const RunRt& run = *runs_.at(run_id);
  const InstanceRt& inst = run.instances[seq];
  if (inst.output.empty()) return;
  // The .err file makes later runs treat the instance as cached.
  const std::string rel = ErrorPathFor(inst.output, run.tasks[inst.task].spec->on());
  if (absl::Status s = run.ws->WriteFile(rel, absl::StrCat(outcome.err_file, "\n")); !s.ok()) {
    outcome.state = v1::FAILED;
    outcome.error = absl::StrCat("cannot record the suppressed error: ", s.message(), "\n", outcome.error);
  }
}

void Scheduler::FinishExec(ExecId id, const AttemptOutcome& judged, const ExecResult& result) {
  AttemptOutcome outcome = judged;
  Exec* exec = execs_.Find(id);
  if (outcome.state == v1::SUPPRESSED) WriteErrFile(*exec, outcome);
  if (outcome.state == v1::DONE) MaybeRemoveForcedErrFile(*exec);
  RecordAttempt(*exec, result, outcome);
  const auto waiters = std::move(exec->waiters);
  execs_.Erase(id);  // before the runs finish (they would detach from it)
  std::vector<int64_t> touched;  // run ids; a run may wait twice on one exec
  for (const auto& [run_id, seq] : waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->state != v1::RUN_RUNNING) continue;
    RunRt& run = *r->second;
    InstanceRt& inst = run.instances[seq];
    if (IsFinal(inst.state)) continue;
    inst.exec = 0;
    inst.finished_ms = NowMs();
    inst.error = outcome.error;
    v1::InstanceState state = outcome.state;
    if (!run.made_by.empty()) {
      if (auto maker = run.made_by.find(seq); maker != run.made_by.end()) {
        // Another run's different command made (or failed to make) the
        // output; this instance's own command never ran.
        if (state == v1::DONE) {
          state = v1::CACHED;
        } else if (!outcome.error.empty()) {
          inst.error = absl::StrCat("run ", maker->second, "'s command for this output: ", outcome.error);
        }
      }
    }
    SetInstanceState(run, seq, state);
    if (state == v1::FAILED && run.error.empty()) {
      const std::string error = inst.error.str();
      run.error = absl::StrCat(InstanceLabel(run.tasks[inst.task].spec->name(), inst.params), ": ",
                               error.substr(0, error.find('\n')));
    }
    recorder_->Instance(run, seq, v1::InstanceEvent::FINISHED, result.bytes, result.lines);
    TaskProgress(run, inst.task);
    if (std::find(touched.begin(), touched.end(), run_id) == touched.end()) touched.push_back(run_id);
  }
  for (int64_t run_id : touched) {
    // Looked up again: finishing one run erases it from runs_.
    auto r = runs_.find(run_id);
    if (r != runs_.end()) AfterChange(*r->second);
  }
}

void Scheduler::DetachFromExec(RunRt& run, int64_t seq) {
  InstanceRt& inst = run.instances[seq];
  Exec* exec = execs_.Find(inst.exec);
  inst.exec = 0;
  run.made_by.erase(seq);
  if (exec == nullptr) return;
  auto& w = exec->waiters;
  w.erase(std::remove(w.begin(), w.end(), std::make_pair(run.id, seq)), w.end());
  if (!w.empty()) return;  // another run still needs it
  if (!exec->started) {
    // Its -id in the plan's FIFO is dropped when it comes up (not live).
    execs_.Erase(exec->id);
  } else {
    exec->runner->Cancel(exec->id);  // SIGTERM, SIGKILL after grace
    exec->cancelling = true;
  }
}

void Scheduler::OnExecProgress(ExecId id, int64_t bytes, int64_t lines) {
  Exec* exec = execs_.Find(id);
  if (stopping_ || exec == nullptr || !exec->started) return;
  for (const auto& [run_id, seq] : exec->waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->instances[seq].state != v1::RUNNING) continue;
    // Through the store like every event, so it never overtakes STARTED.
    recorder_->Instance(*r->second, seq, v1::InstanceEvent::PROGRESS, bytes, lines);
  }
}

void Scheduler::OnExecSpawned(ExecId id, pid_t pgid) {
  Exec* exec = execs_.Find(id);
  if (stopping_ || exec == nullptr || !exec->started) return;
  exec->pgid = pgid;
  for (const auto& [run_id, seq] : exec->waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->instances[seq].state != v1::RUNNING) continue;
    r->second->instances[seq].pgid = pgid;
    recorder_->Instance(*r->second, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
  }
}

void Scheduler::OnExecSelfProgress(ExecId id, const SelfProgress& progress) {
  Exec* exec = execs_.Find(id);
  if (stopping_ || exec == nullptr || !exec->started) return;
  for (const auto& [run_id, seq] : exec->waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->instances[seq].state != v1::RUNNING) continue;
    recorder_->Instance(*r->second, seq, v1::InstanceEvent::PROGRESS, 0, 0, &progress);
  }
}

void Scheduler::OnPoolSlots(const std::string& pool, int slots) {
  plan_.SetPoolSlots(pool, slots);
  for (auto& [id, run] : runs_) {
    if (UpdateWaiting(*run)) recorder_->Run(*run);
  }
}

bool Scheduler::UpdateWaiting(RunRt& run) {
  bool changed = false;
  for (TaskRt& task : run.tasks) {
    std::string waiting;
    if (task.pool != "local" && plan_.pool_slots(task.pool) == 0) {
      waiting = absl::StrCat("no worker connected to pool '", task.pool, "'");
    }
    if (waiting.empty()) waiting = ThrottleWaiting(task, deps_.clock->Now());
    if (task.counters.waiting() != waiting) {
      task.counters.set_waiting(waiting);
      changed = true;
    }
  }
  return changed;
}

}  // namespace asflow
