// Scheduler: runs opened by code sessions (FlowService.Session,
// docs/sessions.md). Their tasks are declared and their instances called one
// at a time; from there on an instance is like any other: cached by file,
// shared with other runs, queued under its task's limit and rate, judged by
// its rules. Its process runs it (pool "code", the SessionHub), and hears
// of its outcome once committed (Recorder).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/safe_path.h"
#include "common/spec_validator.h"
#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

v1::SessionEvent RunClosedEvent(int64_t ref, int64_t run_id, v1::RunState state, const std::string& error) {
  v1::SessionEvent event;
  v1::RunClosed& rc = *event.mutable_run_closed();
  rc.set_ref(ref);
  rc.set_run_id(run_id);
  rc.set_state(state);
  rc.set_error(error);
  return event;
}

v1::SessionEvent CallStateEvent(int64_t call_id, v1::InstanceState state, const std::string& error) {
  v1::SessionEvent event;
  v1::CallState& cs = *event.mutable_call_state();
  cs.set_call_id(call_id);
  cs.set_state(state);
  cs.set_error(error);
  return event;
}

}  // namespace

SessionOpsSink Scheduler::session_ops() {
  SessionOpsSink sink;
  sink.on_op = [this](int64_t session, v1::SessionOp op) {
    Post([this, session, op = std::move(op)] { OnSessionOp(session, op); });
  };
  sink.on_ended = [this](int64_t session) { Post([this, session] { OnSessionEnded(session); }); };
  return sink;
}

void Scheduler::SendToSession(int64_t session, v1::SessionEvent event) {
  if (session != 0 && deps_.send_to_session != nullptr) deps_.send_to_session(session, std::move(event));
}

RunRt* Scheduler::FindCodeRun(int64_t session, int64_t ref) {
  auto it = code_refs_.find({session, ref});
  if (it == code_refs_.end()) return nullptr;
  auto run = runs_.find(it->second);
  return run == runs_.end() ? nullptr : run->second.get();
}

void Scheduler::OnSessionOp(int64_t session, const v1::SessionOp& op) {
  if (stopping_) return;
  switch (op.op_case()) {
    case v1::SessionOp::kOpenRun:
      return OpenCodeRun(session, op.open_run());
    case v1::SessionOp::kDeclareTask:
      return DeclareCodeTask(session, op.declare_task());
    case v1::SessionOp::kCall:
      return CallCode(session, op.call());
    case v1::SessionOp::kDrop:
      return DropCode(session, op.drop());
    case v1::SessionOp::kCloseRun:
      return CloseCodeRun(session, op.close_run());
    default:
      return;  // the hub handles the others
  }
}

void Scheduler::OpenCodeRun(int64_t session, const v1::OpenRun& op) {
  auto refuse = [&](int64_t run_id, v1::RunState state, const std::string& error) {
    SendToSession(session, RunClosedEvent(op.ref(), run_id, state, error));
  };
  if (op.resume_run_id() != 0) {
    auto it = runs_.find(op.resume_run_id());
    if (it == runs_.end() || it->second->code == nullptr) {
      auto rec = deps_.store->GetRun(op.resume_run_id());
      if (!rec.ok()) return refuse(0, v1::RUN_STATE_UNSPECIFIED, std::string(rec.status().message()));
      return refuse(op.resume_run_id(), rec->run.state(), rec->run.error());
    }
    RunRt& run = *it->second;
    // A process that reconnects may get here before the daemon has noticed
    // its old stream is gone: the newest claim wins.
    if (run.code->session != 0 && run.code->session != session) DetachCodeRun(run);
    run.code->session = session;
    run.code->ref = op.ref();
    run.code->detached_until = absl::InfiniteFuture();
    code_refs_[{session, op.ref()}] = run.id;
    spdlog::info("run {} ({}): its process is back (session {})", run.id, run.flow, session);
  } else {
    if (draining_) return refuse(0, v1::RUN_FAILED, "asflowd is shutting down");
    v1::SubmitFlowRequest request;
    request.mutable_spec()->set_name(op.flow().empty() ? "code" : op.flow());
    for (const auto& [k, v] : op.params()) (*request.mutable_spec()->mutable_params())[k] = v;
    request.set_workspace(op.workspace());
    request.set_source(op.source());
    request.set_keep_going(op.keep_going());
    request.set_from_code(true);
    for (const auto& [k, v] : op.throttle()) (*request.mutable_spec()->mutable_throttle())[k] = v;
    if (absl::Status s = CheckWorkspace(&request); !s.ok()) return refuse(0, v1::RUN_FAILED, std::string(s.message()));
    auto run = BuildRun(std::move(request), options_.default_limit);
    if (!run.ok()) return refuse(0, v1::RUN_FAILED, std::string(run.status().message()));

    auto ws = deps_.fs->Open((*run)->workspace);
    if (!ws.ok()) return refuse(0, v1::RUN_FAILED, std::string(ws.status().message()));
    (*run)->ws = std::move(*ws);
    (*run)->created_ms = NowMs();
    (*run)->code = std::make_unique<CodeRun>();
    (*run)->code->session = session;
    (*run)->code->ref = op.ref();
    if (absl::Status s = AcquireKeys(**run); !s.ok()) return refuse(0, v1::RUN_FAILED, std::string(s.message()));
    auto id = deps_.store->CreateRun(Recorder::RunProto(**run), (*run)->request.SerializeAsString());
    if (!id.ok()) {
      ReleaseKeys(**run);
      return refuse(0, v1::RUN_FAILED, std::string(id.status().message()));
    }
    (*run)->id = *id;
    code_refs_[{session, op.ref()}] = *id;
    spdlog::info("run {} ({}) opened by code session {} in {}", *id, (*run)->flow, session, (*run)->workspace);
    StartRun(std::move(*run));
  }
  v1::SessionEvent opened;
  opened.mutable_run_opened()->set_ref(op.ref());
  opened.mutable_run_opened()->set_run_id(code_refs_[{session, op.ref()}]);
  opened.mutable_run_opened()->set_watch_from_seq(deps_.hub->last_seq());
  SendToSession(session, std::move(opened));
}

void Scheduler::DeclareCodeTask(int64_t session, const v1::DeclareTask& op) {
  v1::SessionEvent answer;
  v1::TaskDeclared& declared = *answer.mutable_task_declared();
  declared.set_run(op.run());
  declared.set_task(op.spec().name());
  RunRt* run = FindCodeRun(session, op.run());
  absl::Status s = run == nullptr ? absl::FailedPreconditionError(absl::StrCat("run ref ", op.run(), " is not open"))
                                  : ValidateCodeTask(op.spec());
  if (s.ok()) s = CheckUses(*run, op.spec(), "spec");
  if (s.ok()) {
    const std::string& name = op.spec().name();
    auto it = run->task_index.find(name);
    int t;
    if (it == run->task_index.end()) {
      t = static_cast<int>(run->tasks.size());
      *run->request.mutable_spec()->add_tasks() = op.spec();
      run->tasks.emplace_back();
      run->task_index[name] = t;
    } else {
      t = it->second;
      *run->request.mutable_spec()->mutable_tasks(t) = op.spec();  // the element stays where it is
    }
    s = BuildCodeTask(*run, t, options_.default_limit);
    if (s.ok()) {
      const TaskRt& task = run->tasks[t];
      plan_.SetTaskDef(task.key, task.limit, task.pool, task.rate);
      SetGates(*run, t);
      run->code->refused.erase(name);
      recorder_->Request(*run);
      recorder_->Run(*run);
    }
  }
  if (!s.ok()) {
    declared.set_error(std::string(s.message()));
    if (run != nullptr) run->code->refused[op.spec().name()] = declared.error();
  }
  SendToSession(session, std::move(answer));
}

void Scheduler::CallCode(int64_t session, const v1::CallOp& op) {
  auto fail = [&](v1::InstanceState state, const std::string& error) {
    SendToSession(session, CallStateEvent(op.call_id(), state, error));
  };
  RunRt* run = FindCodeRun(session, op.run());
  if (run == nullptr) return fail(v1::CANCELLED, absl::StrCat("run ref ", op.run(), " is not open (refused, or over)"));
  auto t = run->task_index.find(op.task());
  if (t == run->task_index.end() || run->code->refused.contains(op.task())) {
    auto why = run->code->refused.find(op.task());
    return fail(v1::FAILED, why != run->code->refused.end()
                                ? absl::StrCat("task ", op.task(), " was refused: ", why->second)
                                : absl::StrCat("task ", op.task(), " is not declared in run ", run->id));
  }
  std::string output;
  if (!op.output().empty()) {
    auto rel = NormalizeOutputPath(op.output());
    if (!rel.ok()) return fail(v1::FAILED, std::string(rel.status().message()));
    output = std::move(*rel);
  }
  std::map<std::string, std::string> params(op.params().begin(), op.params().end());
  if (absl::Status s = CheckParamSizes(params, "params"); !s.ok()) return fail(v1::FAILED, std::string(s.message()));
  std::string params_json = CanonicalParams(params);
  auto known = run->code->by_identity.find(CodeIdentity(op.task(), params_json, output));
  if (known != run->code->by_identity.end()) {
    // The same call again: it waits for (or gets) the same outcome.
    const int64_t seq = known->second;
    run->code->calls[seq].push_back(op.call_id());
    if (IsFinal(run->instances[seq].state)) {
      recorder_->Instance(*run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);  // answered once committed
    } else if (run->code->parked.erase(seq) > 0) {
      QueueCodeInstance(*run, seq, v1::INSTANCE_STATE_UNSPECIFIED);
    }
    return;
  }
  NewInstance added = AddCodeInstance(*run, t->second, std::move(params_json), std::move(output));
  run->code->calls[added.seq].push_back(op.call_id());
  if (IsFinal(added.prior)) {
    // Final before the daemon restarted: answered with that state.
    SetInstanceState(*run, added.seq, added.prior);
    recorder_->Instance(*run, added.seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    return;
  }
  QueueCodeInstance(*run, added.seq, added.prior);
}

void Scheduler::DropCode(int64_t session, const v1::CallOp& op) {
  RunRt* run = FindCodeRun(session, op.run());
  if (run == nullptr) return;  // over: nothing of it runs any more
  std::string output;
  if (!op.output().empty()) {
    auto rel = NormalizeOutputPath(op.output());
    if (!rel.ok()) return;  // its call was refused for it
    output = std::move(*rel);
  }
  std::map<std::string, std::string> params(op.params().begin(), op.params().end());
  auto known = run->code->by_identity.find(CodeIdentity(op.task(), CanonicalParams(params), output));
  if (known == run->code->by_identity.end()) return;
  const int64_t seq = known->second;
  auto calls = run->code->calls.find(seq);
  if (calls == run->code->calls.end()) return;  // final: its answer is on its way
  auto& ids = calls->second;
  auto id = std::find(ids.begin(), ids.end(), op.call_id());
  if (id == ids.end()) return;
  const bool first = id == ids.begin();
  ids.erase(id);
  InstanceRt& inst = run->instances[seq];
  // Is this the call its process is running? (A job is started for the
  // first waiter's first call.)
  Exec* exec = inst.exec == 0 ? nullptr : execs_.Find(inst.exec);
  const ExecId exec_id = exec == nullptr ? 0 : exec->id;
  const bool ran_it = exec != nullptr && exec->started && first && !exec->waiters.empty() &&
                      exec->waiters.front() == std::make_pair(run->id, seq);
  if (ids.empty()) {
    run->code->calls.erase(calls);
    run->code->parked.erase(seq);
    if (inst.exec != 0) DetachFromExec(*run, seq);  // cancelled if nobody else needs it
    inst.finished_ms = NowMs();
    inst.error = std::string("its caller stopped waiting");
    SetInstanceState(*run, seq, v1::CANCELLED);
    recorder_->Instance(*run, seq, v1::InstanceEvent::FINISHED);
    TaskProgress(*run, inst.task);
  }
  // Others wait for it (this run's other calls, other runs): a fresh
  // attempt for them once its stopped function reports (kWithdrawn).
  exec = ran_it ? execs_.Find(exec_id) : nullptr;
  if (exec != nullptr && exec->started && !exec->cancelling) {
    exec->cancelling = true;
    exec->runner->Cancel(exec->id);
  }
}

void Scheduler::QueueCodeInstance(RunRt& run, int64_t seq, v1::InstanceState prior) {
  if (CacheByFile(run, seq, prior)) return;  // answered CACHED once committed
  InstanceRt& inst = run.instances[seq];
  const TaskRt& task = run.tasks[inst.task];
  Exec* shared = execs_.empty() || inst.output.empty() ? nullptr : execs_.FindByKey(ExecKey(run, task, inst));
  if (shared != nullptr) {
    JoinExec(run, seq, *shared);
    if (inst.state == v1::QUEUED) recorder_->Instance(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    return;
  }
  plan_.Enqueue(seq, task.key, run.id);
  if (!pregranted_.empty()) RevokeContended(task.key, run.id);
  recorder_->NewInstance(run, seq);
}

void Scheduler::CloseCodeRun(int64_t session, const v1::CloseRun& op) {
  RunRt* run = FindCodeRun(session, op.run());
  if (run == nullptr) {
    auto id = code_refs_.find({session, op.run()});
    if (id == code_refs_.end()) {
      return SendToSession(session, RunClosedEvent(op.run(), 0, v1::RUN_STATE_UNSPECIFIED,
                                                   absl::StrCat("run ref ", op.run(), " is not open")));
    }
    // Over already: its recorded state.
    auto rec = deps_.store->GetRun(id->second);
    if (!rec.ok()) return SendToSession(session, RunClosedEvent(op.run(), id->second, v1::RUN_STATE_UNSPECIFIED,
                                                                std::string(rec.status().message())));
    return SendToSession(session, RunClosedEvent(op.run(), id->second, rec->run.state(), rec->run.error()));
  }
  v1::RunState state = op.state();
  if (state != v1::RUN_SUCCEEDED && state != v1::RUN_FAILED && state != v1::RUN_CANCELLED) state = v1::RUN_FAILED;
  std::string error = op.error();
  if (state == v1::RUN_SUCCEEDED && !run->error.empty()) {
    // The code caught a failure (--keep-going): the run still failed.
    state = v1::RUN_FAILED;
    error = run->error;
  }
  FinishRun(*run, state, std::move(error));  // its session hears once committed
}

void Scheduler::OnSessionEnded(int64_t session) {
  for (auto it = code_refs_.begin(); it != code_refs_.end();) {
    if (it->first.first == session) {
      code_refs_.erase(it++);
    } else {
      ++it;
    }
  }
  for (auto& [id, run] : runs_) {
    if (run->code != nullptr && run->code->session == session) DetachCodeRun(*run);
  }
}

void Scheduler::DetachCodeRun(RunRt& run) {
  spdlog::warn("run {} ({}): its process went away (session {}); waiting {} for it", run.id, run.flow,
               run.code->session, absl::FormatDuration(options_.code_reattach));
  run.code->session = 0;
  run.code->calls.clear();
  run.code->detached_until = deps_.clock->Now() + options_.code_reattach;
  for (int64_t seq = 0; seq < static_cast<int64_t>(run.instances.size()); ++seq) {
    InstanceRt& inst = run.instances[seq];
    if (inst.task < 0 || IsFinal(inst.state)) continue;
    if (inst.exec != 0) DetachFromExec(run, seq);
    if (inst.state != v1::QUEUED) {
      SetInstanceState(run, seq, v1::QUEUED);
      recorder_->Instance(run, seq, v1::InstanceEvent::QUEUED);
    }
    run.code->parked.insert(seq);
  }
}

void Scheduler::ExpireDetachedRuns(absl::Time now) {
  std::vector<int64_t> expired;
  for (auto& [id, run] : runs_) {
    if (run->code != nullptr && run->code->session == 0 && run->code->detached_until <= now) expired.push_back(id);
  }
  for (int64_t id : expired) {
    RunRt& run = *runs_.at(id);
    run.code->detached_until = absl::InfiniteFuture();
    FinishRun(run, v1::RUN_FAILED,
              absl::StrCat("its process went away (no session came back within ",
                           absl::FormatDuration(options_.code_reattach), ")"));
  }
}

}  // namespace asflow
