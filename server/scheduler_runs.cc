// Scheduler: runs — resuming them, expanding their tasks into instances,
// finding outputs already there, settling tasks and finishing runs, and
// reset. Executions are in scheduler_execs.cc.
#include <algorithm>
#include <set>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_dir.h"
#include "common/atomic_file.h"
#include "common/beneath.h"
#include "common/safe_path.h"
#include "server/expansion.h"
#include "server/run_selection.h"
#include "server/scheduler.h"
#include "spdlog/spdlog.h"

namespace asflow {

namespace {
// A reset answers with at most this many of its instances (the count is
// exact).
constexpr int kMaxResetTargetsListed = 1000;
}  // namespace

absl::Status Scheduler::ResumeRun(RunRecord& rec, bool same_boot) {
  auto fail = [&](const std::string& why) {
    spdlog::error("run {}: {}; marking it failed", rec.run.id(), why);
    rec.run.set_state(v1::RUN_FAILED);
    rec.run.set_error(why);
    rec.run.set_finished_ms(NowMs());
    deps_.store->PutRun(rec.run);
    return absl::OkStatus();
  };
  v1::SubmitFlowRequest request;
  if (!request.ParseFromString(rec.request)) return fail("stored request unreadable after restart");
  auto run = BuildRun(std::move(request), options_.default_limit);
  if (!run.ok()) return fail(absl::StrCat("cannot resume: ", run.status().message()));
  if (absl::Status s = AcquireKeys(**run); !s.ok()) return fail(absl::StrCat("cannot resume: ", s.message()));
  (*run)->id = rec.run.id();
  (*run)->created_ms = rec.run.created_ms();
  auto ws = deps_.fs->Open((*run)->workspace);
  if (!ws.ok()) return fail(absl::StrCat("cannot resume: ", ws.status().message()));
  (*run)->ws = std::move(*ws);
  if ((*run)->request.from_code()) {
    // Its process reconnects (or it fails, as any detached code run).
    (*run)->code = std::make_unique<CodeRun>();
    (*run)->code->detached_until = deps_.clock->Now() + options_.code_reattach;
  }
  auto rows = deps_.store->LoadInstances(rec.run.id());
  if (!rows.ok()) return rows.status();
  int64_t removed = 0;
  for (const InstanceRecord& row : *rows) {
    // The command itself died with the daemon (PDEATHSIG); its children are
    // still in its group, which keeps the pgid from being reused meanwhile.
    if (row.state == v1::RUNNING && row.pgid > 1 && same_boot && deps_.fs->KillProcessGroup(row.pgid)) {
      spdlog::warn("run {}: killed process group {} left by {} before the restart", row.run_id, row.pgid,
                   InstanceLabel(row.task, row.params));
    }
    const std::string key = (*run)->code != nullptr ? CodeIdentity(row.task, row.params, row.output)
                                                    : ResumeKey(row.task, StoredIdentity(**run, row.task, row.params));
    (*run)->resumed[key] = ResumedRow{row.seq, row.state, row};
    (*run)->next_seq = std::max((*run)->next_seq, row.seq + 1);
    if (!IsFinal(row.state) && !row.output.empty()) {
      // The temporary of an instance that was running at the crash: a
      // file, or a directory output's tree (never under its final name).
      const std::string tmp = AtomicFile::TempPathFor(row.output);
      if ((*run)->ws->Exists(tmp) && (*run)->ws->Remove(tmp).ok()) ++removed;
      auto [dir, name] = SplitDirName(row.output);
      const std::string tmp_dir =
          dir.empty() ? AtomicDir::TempNameFor(name) : absl::StrCat(dir, "/", AtomicDir::TempNameFor(name));
      if ((*run)->ws->Exists(tmp_dir) && (*run)->ws->RemoveTree(tmp_dir).ok()) ++removed;
    }
  }
  spdlog::info("resuming run {} ({}): {} instances known, {} stale temporaries removed", rec.run.id(),
               (*run)->flow, rows->size(), removed);
  StartRun(std::move(*run));
  return absl::OkStatus();
}

void Scheduler::StartRun(std::unique_ptr<RunRt> run_ptr) {
  RunRt& run = *run_ptr;
  runs_[run.id] = std::move(run_ptr);
  for (int t = 0; t < static_cast<int>(run.tasks.size()); ++t) {
    const TaskRt& task = run.tasks[t];
    plan_.SetTaskDef(task.key, task.limit, task.pool, task.rate);
    SetGates(run, t);
  }
  UpdateWaiting(run);
  recorder_->Run(run);
  if (run.code != nullptr) return;  // its instances are called, not expanded
  for (int t = 0; t < static_cast<int>(run.tasks.size()); ++t) {
    if (run.tasks[t].deps.empty()) Expand(run, t);
  }
  AfterChange(run);
}

void Scheduler::Expand(RunRt& run, int t) {
  TaskRt& task = run.tasks[t];
  if (run.state != v1::RUN_RUNNING || task.expanded || task.blocked) return;
  run.expanding = std::make_unique<RunRt::Expansion>(run.ws->NewProbe(), run.id, task.spec->name());
  absl::Status s = ForEachBinding(run, t, *run.ws, options_.max_instances_per_run,
                                  [&](const Bindings& bindings) { AddInstance(run, t, bindings); });
  recorder_->FlushNewInstances(run);  // before anything else about these instances
  run.expanding.reset();
  task.expanded = true;
  task.counters.set_expanded(true);
  if (!s.ok()) {
    std::string msg = absl::StrCat(task.spec->name(), ": ", s.message());
    spdlog::warn("run {}: {}", run.id, msg);
    if (run.error.empty()) run.error = msg;
    task.blocked = true;
  }
  recorder_->Run(run);  // counters after expansion (queued and cached in bulk)
  TaskProgress(run, t);
}

void Scheduler::AddInstance(RunRt& run, int t, const Bindings& bindings) {
  NewInstance added = AddNewInstance(run, t, bindings, NowMs());
  if (added.seq < 0) {  // identical bindings run once: counted, said
    TaskRt& task = run.tasks[t];
    task.counters.set_merged(task.counters.merged() + 1);
    return;
  }
  if (added.failed) {
    recorder_->Instance(run, added.seq, v1::InstanceEvent::FINISHED);
    return;
  }
  if (CacheByFile(run, added.seq, added.prior)) return;
  if (run.tasks[t].held) {
    // --only names a task downstream: this one's outputs must be there.
    InstanceRt& inst = run.instances[added.seq];
    inst.error = HeldReason(run, t);
    inst.finished_ms = NowMs();
    SetInstanceState(run, added.seq, v1::FAILED);
    if (run.error.empty()) run.error = absl::StrCat(InstanceLabel(run.tasks[t].spec->name(), inst.params), ": ", inst.error.str());
    recorder_->Instance(run, added.seq, v1::InstanceEvent::FINISHED);
    return;
  }
  // (No key to build while no execution is running or waiting: the usual
  // case for a run on its own.)
  Exec* shared = execs_.empty() ? nullptr : execs_.FindByKey(ExecKey(run, run.tasks[t], run.instances[added.seq]));
  if (shared != nullptr) {
    // Another run has it running (or waiting for a retry): share it. One
    // that another run merely queued is shared when it starts.
    JoinExec(run, added.seq, *shared);
    if (run.instances[added.seq].state == v1::QUEUED) {
      recorder_->Instance(run, added.seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    }
    return;
  }
  // Queued as its seq alone: the execution is made when it starts, so
  // 100,000 queued instances cost their InstanceRt and 8 bytes each.
  plan_.Enqueue(added.seq, run.tasks[t].key, run.id);
  if (!pregranted_.empty()) RevokeContended(run.tasks[t].key, run.id);
  recorder_->NewInstance(run, added.seq);
}

bool Scheduler::CacheByFile(RunRt& run, int64_t seq, v1::InstanceState prior) {
  InstanceRt& inst = run.instances[seq];
  if (inst.output.empty()) return false;
  const TaskRt& task = run.tasks[inst.task];
  // --force: run it whatever is there (unless this run already did, before
  // a restart); the new output replaces the old one when it commits.
  if (task.force && prior != v1::DONE) return false;
  // While expanding, from the probe: a file it misses (made after it read
  // the directory) is found when the instance is picked to start. The
  // .err path is made only when it is looked up (an expansion of a cached
  // run finds most outputs first).
  ExistenceProbe* probe = run.expanding != nullptr ? run.expanding->outputs.get() : nullptr;
  std::string err_rel;
  int found = 0;
  if (probe == nullptr || !probe->Exists(inst.output)) {
    err_rel = ErrorPathFor(inst.output, task.spec->on());
    found = probe != nullptr ? (probe->Exists(err_rel) ? 1 : -1) : run.ws->FirstExisting(inst.output, err_rel);
  }
  if (found < 0) return false;
  const bool err_present = found == 1;
  // The file is the truth: whoever made it, the instance is cached. A row
  // already final from before a restart keeps its state.
  const bool keep = prior == v1::DONE || prior == v1::CACHED;
  if (err_present) inst.error = absl::StrCat("suppressed earlier: ", err_rel, " (asflowctl reset clears it)");
  SetInstanceState(run, seq, keep ? prior : v1::CACHED);
  if (!keep) {
    inst.finished_ms = NowMs();
    recorder_->NewInstance(run, seq);
  }
  return true;
}

void Scheduler::TaskProgress(RunRt& run, int t) {
  for (int ready : SettleTask(run, t)) Expand(run, ready);
}

void Scheduler::AfterChange(RunRt& run) {
  if (std::optional<v1::RunState> state = RunOutcome(run)) FinishRun(run, *state, run.error);
}

void Scheduler::FinishRun(RunRt& run, v1::RunState state, std::string error) {
  if (run.state != v1::RUN_RUNNING) return;
  const int64_t now = NowMs();
  for (int64_t seq = 0; seq < static_cast<int64_t>(run.instances.size()); ++seq) {
    InstanceRt& inst = run.instances[seq];
    if (inst.task < 0 || IsFinal(inst.state)) continue;
    if (inst.exec != 0) DetachFromExec(run, seq);
    inst.finished_ms = now;
    SetInstanceState(run, seq, v1::CANCELLED);
    recorder_->Instance(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
  }
  // Rows from before a restart that this life of the run never reached.
  for (auto& [key, row] : run.resumed) {
    if (IsFinal(row.state)) continue;
    row.record.state = v1::CANCELLED;
    row.record.finished_ms = now;
    row.record.pgid = 0;
    recorder_->Row(row.record);
  }
  run.resumed.clear();
  ReleaseKeys(run);
  run.state = state;
  run.error = std::move(error);
  run.finished_ms = now;
  spdlog::info("run {} ({}) finished: {}{}{}", run.id, run.flow, v1::RunState_Name(state),
               run.error.empty() ? "" : ": ", run.error);
  if (run.store_lost) {
    recorder_->RunLost(run);
  } else {
    recorder_->Run(run);
  }
  runs_.erase(run.id);  // the hub's view and the store keep it from here
}

void Scheduler::OnStoreLost(int64_t run_id, const absl::Status& status) {
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return;  // over already (its last writes may be the lost ones)
  RunRt& run = *it->second;
  spdlog::error("run {}: a state change could not be recorded: {}", run_id, std::string(status.message()));
  run.store_lost = true;
  FinishRun(run, v1::RUN_FAILED, absl::StrCat("state not recorded: ", status.message()));
}

void Scheduler::DoReset(const v1::ResetTasksRequest& request,
                        std::function<void(absl::StatusOr<v1::ResetTasksResponse>)> done) {
  if (request.run_id() == 0 && request.task().empty() && request.path().empty()) {
    return done(absl::InvalidArgumentError("reset needs a run id, a task or a path"));
  }
  InstanceFilter filter;
  filter.run_id = request.run_id();
  filter.task = request.task();
  if (size_t dot = filter.task.rfind('.'); dot != std::string::npos) {
    filter.flow = filter.task.substr(0, dot);  // "flow.task"
    filter.task = filter.task.substr(dot + 1);
  }
  // An .err file's path names the instance whose error it keeps: its
  // output shares the path up to the extension.
  const bool by_err = absl::EndsWith(request.path(), ".err");
  if (by_err) {
    filter.path_prefix = request.path().substr(0, request.path().size() - 4);
  } else {
    filter.path = request.path();
  }
  if (!request.workspace().empty()) {
    // Compared with runs' workspaces, which were resolved the same way.
    auto real = deps_.fs->RealPath(request.workspace());
    filter.workspace = real.ok() ? *real : request.workspace();
  }
  for (int s : request.states()) {
    if (s != v1::SUPPRESSED && s != v1::FAILED) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("reset clears suppressed or failed instances, not ",
                       v1::InstanceState_Name(static_cast<v1::InstanceState>(s)))));
    }
    filter.states.push_back(static_cast<v1::InstanceState>(s));
  }
  if (filter.states.empty()) filter.states = {v1::SUPPRESSED, v1::FAILED};
  auto rows = deps_.store->FindInstances(filter);
  if (!rows.ok()) return done(rows.status());
  const absl::flat_hash_set<int64_t> only(request.only_runs().begin(), request.only_runs().end());
  absl::flat_hash_map<int64_t, v1::FlowSpec> specs;  // run -> its spec
  // The task's `on` in the run's spec (null if the task is gone from it).
  auto on_of = [&](const InstanceRecord& row) -> absl::StatusOr<const std::string*> {
    auto spec = specs.find(row.run_id);
    if (spec == specs.end()) {
      auto rec = deps_.store->GetRun(row.run_id);
      if (!rec.ok()) return rec.status();
      v1::SubmitFlowRequest submitted;
      submitted.ParseFromString(rec->request);
      spec = specs.emplace(row.run_id, submitted.spec()).first;
    }
    for (const v1::TaskSpec& task : spec->second.tasks()) {
      if (task.name() == row.task) return &task.on();
    }
    return nullptr;
  };
  v1::ResetTasksResponse response;
  std::set<int64_t> run_ids;
  std::set<std::string> workspaces;
  for (FoundInstance& row : *rows) {
    if (runs_.contains(row.record.run_id)) continue;  // still active
    if (!only.empty() && !only.contains(row.record.run_id)) continue;
    if (by_err) {
      auto on = on_of(row.record);
      if (!on.ok()) return done(on.status());
      if (*on == nullptr || row.record.output.empty() ||
          absl::StrCat(row.workspace, "/", ErrorPathFor(row.record.output, **on)) != request.path()) {
        continue;
      }
    }
    if (response.targets_size() < kMaxResetTargetsListed) {
      v1::ResetTarget* target = response.add_targets();
      target->set_run_id(row.record.run_id);
      target->set_workspace(row.workspace);
      target->set_task(row.record.task);
      for (const auto& [k, v] : DecodeParams(row.record.params)) (*target->mutable_params())[k] = v;
      target->set_state(row.record.state);
      target->set_output(row.record.output);
    }
    run_ids.insert(row.record.run_id);
    workspaces.insert(row.workspace);
    response.set_reset(response.reset() + 1);
    if (request.dry_run()) continue;
    if (row.record.state == v1::SUPPRESSED && !row.record.output.empty()) {
      auto on = on_of(row.record);
      if (!on.ok()) return done(on.status());
      if (*on != nullptr) {
        auto ws = deps_.fs->Open(row.workspace);
        absl::Status removed = ws.ok() ? (*ws)->Remove(ErrorPathFor(row.record.output, **on)) : ws.status();
        if (!removed.ok() && !absl::IsNotFound(removed)) return done(removed);
      }
    }
    row.record.state = v1::RESET;
    deps_.store->PutInstance(std::move(row.record));
  }
  for (int64_t id : run_ids) response.add_run_ids(id);
  for (const std::string& ws : workspaces) response.add_workspaces(ws);
  if (request.dry_run()) return done(std::move(response));
  if (absl::Status s = deps_.store->Flush(); !s.ok()) return done(s);
  spdlog::info("reset {} instances in {} runs", response.reset(), run_ids.size());
  done(std::move(response));
}

void Scheduler::MaybeRemoveForcedErrFile(const Exec& exec) {
  for (const auto& [run_id, seq] : exec.waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end()) continue;
    const RunRt& run = *r->second;
    const InstanceRt& inst = run.instances[seq];
    const TaskRt& task = run.tasks[inst.task];
    if (!task.force || inst.output.empty()) continue;
    const std::string rel = ErrorPathFor(inst.output, task.spec->on());
    if (run.ws->Exists(rel)) {
      if (absl::Status s = run.ws->Remove(rel); !s.ok()) {
        spdlog::warn("run {}: {}: cannot remove {} after --force: {}", run.id,
                     InstanceLabel(task.spec->name(), inst.params), rel, std::string(s.message()));
      }
    }
    return;  // one output, one .err
  }
}

}  // namespace asflow
