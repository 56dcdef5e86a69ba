#include "server/scheduler.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/random/distributions.h"
#include "absl/time/clock.h"
#include "common/beneath.h"
#include "common/line_reader.h"
#include "common/paths.h"
#include "common/safe_path.h"
#include "common/spec_validator.h"
#include "common/stable_hash.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

// New rows per store write while a task expands: large enough that a
// write is cheap, small enough that the writer works on them while the
// expansion goes on (W2, 10,000 cached: 4,096 per write was slower than
// one write per row, 512 faster).
constexpr size_t kNewRowsPerWrite = 512;

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// The first line of an error text, for one-line messages.
std::string FirstLine(absl::string_view text) {
  return std::string(text.substr(0, text.find('\n')));
}

// Error text stored for a failed execution: what happened, then the tail of
// stderr (its last line is usually the one that explains).
std::string ErrorText(const ExecResult& r) {
  std::string text = r.Describe();
  // An SDK handler's exception: its traceback (ending with that line).
  if (!r.process.error_text.empty()) return absl::StrCat(text, "\n", r.process.error_text);
  std::string tail = r.process.stderr_tail;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  if (!tail.empty()) {
    size_t nl = tail.rfind('\n');
    absl::StrAppend(&text, ": ", nl == std::string::npos ? tail : tail.substr(nl + 1));
    absl::StrAppend(&text, "\n", tail);
  }
  return text;
}

}  // namespace

Scheduler::Scheduler(SchedulerOptions options, Store* store, EventHub* hub)
    : options_(std::move(options)), store_(store), hub_(hub) {
  WorkerHub::Callbacks callbacks;
  callbacks.on_done = [this](ExecResult r) { Post([this, r = std::move(r)]() mutable { OnExecDone(std::move(r)); }); };
  callbacks.on_progress = [this](ExecId id, int64_t bytes, int64_t lines) {
    Post([this, id, bytes, lines] { OnExecProgress(id, bytes, lines); });
  };
  callbacks.on_pool_slots = [this](const std::string& pool, int slots) {
    Post([this, pool, slots] { OnPoolSlots(pool, slots); });
  };
  workers_ = std::make_unique<WorkerHub>(options_.workers, options_.file_options, std::move(callbacks));
  // The plan queues an instance as its seq (>= 0) in its run's FIFO, and an
  // execution queued again (a retry, a lost worker) as -id.
  plan_.SetLiveness([this](int64_t run_id, int64_t item) {
    if (item < 0) {
      auto it = execs_.find(-item);
      return it != execs_.end() && it->second.WaitsToStart();
    }
    auto r = runs_.find(run_id);
    if (r == runs_.end()) return false;
    const InstanceRt& inst = r->second->instances[item];
    return inst.state == v1::QUEUED && inst.exec == 0;
  });
}

Scheduler::~Scheduler() { Stop(); }

absl::Status Scheduler::Start() {
  plan_.SetPoolSlots("local", options_.local_slots);
  pool_ = std::make_unique<LocalPool>(options_.local_slots, options_.file_options,
      [this](ExecResult r) { Post([this, r = std::move(r)]() mutable { OnExecDone(std::move(r)); }); },
      [this](ExecId id, int64_t bytes, int64_t lines) {
        Post([this, id, bytes, lines] { OnExecProgress(id, bytes, lines); });
      },
      [this](ExecId id, pid_t pgid) { Post([this, id, pgid] { OnExecSpawned(id, pgid); }); });
  // A pgid recorded before a crash may only be killed in the same boot.
  std::string boot_id;
  {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::getline(in, boot_id);
  }
  auto previous_boot = store_->GetMeta("boot_id");
  if (!previous_boot.ok()) return previous_boot.status();
  bool same_boot = !boot_id.empty() && *previous_boot == boot_id;
  if (absl::Status s = store_->SetMeta("boot_id", boot_id); !s.ok()) return s;
  auto running = store_->ListRuns(1 << 30, /*only_running=*/true);
  if (!running.ok()) return running.status();
  std::reverse(running->begin(), running->end());  // oldest first keeps fairness order
  for (RunRecord& rec : *running) {
    v1::SubmitFlowRequest request;
    if (!request.ParseFromString(rec.request)) {
      spdlog::error("run {}: stored request is unreadable; marking it failed", rec.run.id());
      rec.run.set_state(v1::RUN_FAILED);
      rec.run.set_error("stored request unreadable after restart");
      rec.run.set_finished_ms(NowMs());
      store_->PutRun(rec.run);
      continue;
    }
    auto run = BuildRun(std::move(request), options_.default_limit);
    if (!run.ok()) {
      rec.run.set_state(v1::RUN_FAILED);
      rec.run.set_error(absl::StrCat("cannot resume: ", run.status().message()));
      rec.run.set_finished_ms(NowMs());
      store_->PutRun(rec.run);
      continue;
    }
    (*run)->id = rec.run.id();
    (*run)->created_ms = rec.run.created_ms();
    if (absl::Status s = OpenWorkspace(**run); !s.ok()) {
      rec.run.set_state(v1::RUN_FAILED);
      rec.run.set_error(absl::StrCat("cannot resume: ", s.message()));
      rec.run.set_finished_ms(NowMs());
      store_->PutRun(rec.run);
      continue;
    }
    auto rows = store_->LoadInstances(rec.run.id());
    if (!rows.ok()) return rows.status();
    KillLeftovers(*rows, same_boot);
    int64_t removed = 0;
    for (const InstanceRecord& row : *rows) {
      (*run)->resumed[ResumeKey(row.task, row.params)] = ResumedRow{row.seq, row.state, row};
      (*run)->next_seq = std::max((*run)->next_seq, row.seq + 1);
      if (!IsFinal(row.state) && !row.output.empty()) {
        // The temporary of an instance that was running at the crash.
        const std::string tmp = AtomicFile::TempPathFor(row.output);
        if (ExistsBeneath((*run)->root.get(), tmp) &&
            UnlinkBeneath((*run)->root.get(), (*run)->workspace, tmp).ok()) {
          ++removed;
        }
      }
    }
    spdlog::info("resuming run {} ({}): {} instances known, {} stale temporaries removed",
                 rec.run.id(), (*run)->flow, rows->size(), removed);
    StartRun(std::move(*run));
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void Scheduler::Stop() {
  if (!thread_.joinable()) return;
  Post([this] {
    stopping_ = true;
    for (auto& [id, exec] : execs_) {
      if (exec.started && exec.runner != nullptr) exec.runner->Cancel(exec.id);
    }
  });
  {
    absl::MutexLock lock(&mu_);
    quit_ = true;
  }
  thread_.join();
  pool_.reset();  // joins runner threads once their (cancelled) jobs end
}

void Scheduler::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  commands_.push_back(std::move(fn));
}

void Scheduler::Loop() {
  Pump();  // resumed runs queued work before the loop started
  for (;;) {
    std::vector<std::function<void()>> batch;
    {
      // Wake for commands, the next retry or the next rate token.
      absl::Time deadline = plan_.NextWakeup();
      if (!retry_timers_.empty()) deadline = std::min(deadline, retry_timers_.top().first);
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return quit_ || !commands_.empty(); };
      mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
      batch.swap(commands_);
      if (batch.empty() && quit_) return;
    }
    for (auto& fn : batch) fn();
    if (!stopping_) {
      FireTimers(absl::Now());
      Pump();
    }
  }
}

void Scheduler::FireTimers(absl::Time now) {
  while (!retry_timers_.empty() && retry_timers_.top().first <= now) {
    ExecId id = retry_timers_.top().second;
    retry_timers_.pop();
    auto it = execs_.find(id);
    // Gone, or its runs were cancelled meanwhile.
    if (it == execs_.end() || !it->second.WaitsToStart()) continue;
    plan_.Enqueue(-id, it->second.def->task_key, it->second.waiters.front().first);
  }
}

absl::Status Scheduler::CheckWorkspace(v1::SubmitFlowRequest* request) const {
  const std::string& ws = request->workspace();
  if (ws.empty() || ws[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("workspace '", ws, "' must be an absolute path"));
  }
  auto real = RealPath(ws);
  if (!real.ok()) return absl::InvalidArgumentError(absl::StrCat("workspace ", real.status().message()));
  for (const std::string& root : options_.allowed_roots) {
    if (PathIsUnder(*real, root)) {
      request->set_workspace(*real);
      return absl::OkStatus();
    }
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "workspace ", *real, " is outside the roots this daemon allows (",
      absl::StrJoin(options_.allowed_roots, ", "), "); start asflowd with --allow-root"));
}

void Scheduler::Submit(v1::SubmitFlowRequest request,
                       std::function<void(absl::StatusOr<Submitted>)> done) {
  Post([this, request = std::move(request), done = std::move(done)]() mutable {
    if (stopping_) return done(absl::UnavailableError("asflowd is shutting down"));
    if (absl::Status s = ValidateFlowSpec(request.spec()); !s.ok()) return done(s);
    if (absl::Status s = CheckWorkspace(&request); !s.ok()) return done(s);
    auto run = BuildRun(request, options_.default_limit);
    if (!run.ok()) return done(run.status());
    if (absl::Status s = OpenWorkspace(**run); !s.ok()) return done(s);
    v1::Run proto;
    proto.set_flow((*run)->flow);
    proto.set_workspace((*run)->workspace);
    proto.set_state(v1::RUN_RUNNING);
    proto.set_created_ms(NowMs());
    proto.set_keep_going(request.keep_going());
    for (const auto& [k, v] : (*run)->params) (*proto.mutable_params())[k] = v;
    auto id = store_->CreateRun(proto, (*run)->request.SerializeAsString());
    if (!id.ok()) return done(id.status());
    (*run)->id = *id;
    (*run)->created_ms = proto.created_ms();
    spdlog::info("run {} ({}) submitted in {}", *id, (*run)->flow, (*run)->workspace);
    // Events are published after their store commit, so none of this run's
    // events has a seq at or below this one.
    // Answered before the run starts: its first expansion may take a while
    // (100,000 instances, or a whole run's worth of cached outputs), and the
    // submitter's Watch is set up meanwhile (FlowServiceImpl::Watch
    // subscribes to a run still RUNNING in the store).
    done(Submitted{*id, hub_->last_seq()});
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
    auto rec = store_->GetRun(run_id);
    if (!rec.ok()) return done(rec.status());
    done(rec->run.state());
  });
}

void Scheduler::Reset(v1::ResetTasksRequest request, std::function<void(absl::StatusOr<int64_t>)> done) {
  Post([this, request = std::move(request), done = std::move(done)] {
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
    filter.path = request.path();
    for (int s : request.states()) {
      if (s != v1::SUPPRESSED && s != v1::FAILED) {
        return done(absl::InvalidArgumentError(absl::StrCat(
            "reset clears suppressed or failed instances, not ",
            v1::InstanceState_Name(static_cast<v1::InstanceState>(s)))));
      }
      filter.states.push_back(static_cast<v1::InstanceState>(s));
    }
    if (filter.states.empty()) filter.states = {v1::SUPPRESSED, v1::FAILED};
    auto rows = store_->FindInstances(filter);
    if (!rows.ok()) return done(rows.status());
    absl::flat_hash_map<int64_t, v1::FlowSpec> specs;  // run -> its spec
    int64_t count = 0;
    for (FoundInstance& row : *rows) {
      if (runs_.contains(row.record.run_id)) continue;  // still active
      if (row.record.state == v1::SUPPRESSED && !row.record.output.empty()) {
        auto spec = specs.find(row.record.run_id);
        if (spec == specs.end()) {
          auto rec = store_->GetRun(row.record.run_id);
          if (!rec.ok()) return done(rec.status());
          v1::SubmitFlowRequest submitted;
          submitted.ParseFromString(rec->request);
          spec = specs.emplace(row.record.run_id, submitted.spec()).first;
        }
        for (const v1::TaskSpec& task : spec->second.tasks()) {
          if (task.name() != row.record.task) continue;
          absl::StatusOr<UniqueFd> root = OpenRoot(row.workspace);
          absl::Status removed =
              root.ok() ? UnlinkBeneath(root->get(), row.workspace, ErrorPathFor(row.record.output, task.on()))
                        : root.status();
          if (!removed.ok() && !absl::IsNotFound(removed)) return done(removed);
        }
      }
      row.record.state = v1::RESET;
      store_->PutInstance(std::move(row.record));
      ++count;
    }
    if (absl::Status s = store_->Flush(); !s.ok()) return done(s);
    spdlog::info("reset {} instances", count);
    done(count);
  });
}

void Scheduler::StartRun(std::unique_ptr<RunRt> run_ptr) {
  RunRt& run = *run_ptr;
  runs_[run.id] = std::move(run_ptr);
  for (const TaskRt& task : run.tasks) {
    plan_.SetTaskDef(task.key, task.limit, task.pool, task.rate);
  }
  UpdateWaiting(run);
  PublishRun(run);
  for (int t = 0; t < static_cast<int>(run.tasks.size()); ++t) {
    if (run.tasks[t].deps.empty()) Expand(run, t);
  }
  AfterChange(run);
}

void Scheduler::Expand(RunRt& run, int t) {
  if (run.state != v1::RUN_RUNNING) return;
  TaskRt& task = run.tasks[t];
  run.expanding = std::make_unique<RunRt::Expansion>(run.workspace, run.id, task.spec->name());
  absl::Status s = ExpandInto(run, t);
  store_->PutNew(std::move(run.expanding->rows));  // before anything else about these instances
  run.expanding.reset();
  task.expanded = true;
  task.counters.set_expanded(true);
  if (!s.ok()) {
    std::string msg = absl::StrCat(task.spec->name(), ": ", s.message());
    spdlog::warn("run {}: {}", run.id, msg);
    if (run.error.empty()) run.error = msg;
    task.blocked = true;
  }
  PublishRun(run);  // counters after expansion (queued and cached in bulk)
  TaskProgress(run, t);
}

absl::Status Scheduler::ExpandInto(RunRt& run, int t) {
  TaskRt& task = run.tasks[t];
  const v1::ForEach& fe = task.spec->for_each();
  auto add_all = [&](const std::string& source, LineReader* reader) -> absl::Status {
    std::string line;
    for (;;) {
      auto more = reader->Next(&line);
      if (!more.ok()) return more.status();
      if (!*more) return absl::OkStatus();
      if (line.empty()) continue;
      auto bound = BindValue(line, fe.bind());
      if (!bound.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(source, ":", reader->line_number(), ": ", bound.status().message()));
      }
      AddInstance(run, t, *bound);
      if (run.next_seq > options_.max_instances_per_run) {
        return absl::ResourceExhaustedError(
            absl::StrCat("more than ", options_.max_instances_per_run, " instances"));
      }
    }
  };
  if (!fe.lines_of().empty()) {
    const TaskRt& up = run.tasks[task.lines_of];
    for (int64_t seq : up.seqs) {
      const InstanceRt& inst = run.instances[seq];
      if ((inst.state != v1::DONE && inst.state != v1::CACHED) || inst.output.empty()) continue;
      auto file = OpenFileBeneath(run.root.get(), run.workspace, inst.output);
      if (!file.ok()) {
        if (absl::IsNotFound(file.status())) continue;  // cached by its .err
        return file.status();
      }
      auto reader = LineReader::FromFd(std::move(*file), absl::StrCat(run.workspace, "/", inst.output));
      if (!reader.ok()) return reader.status();
      if (absl::Status s = add_all(inst.output, reader->get()); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (task.file != nullptr) {
    auto rendered = task.file->Render(
        [&](absl::string_view name) { return LookupParam({}, run.params, name); });
    if (!rendered.ok()) return rendered.status();
    auto rel = NormalizeOutputPath(*rendered);
    if (!rel.ok()) return rel.status();
    auto file = OpenFileBeneath(run.root.get(), run.workspace, *rel);
    if (!file.ok()) return file.status();
    auto reader = LineReader::FromFd(std::move(*file), absl::StrCat(run.workspace, "/", *rel));
    if (!reader.ok()) return reader.status();
    return add_all(*rel, reader->get());
  }
  if (fe.values_size() > 0) {
    for (int i = 0; i < fe.values_size(); ++i) {
      auto bound = BindValue(fe.values(i), fe.bind());
      if (!bound.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("for_each.values[", i, "]: ", bound.status().message()));
      }
      AddInstance(run, t, *bound);
    }
    return absl::OkStatus();
  }
  AddInstance(run, t, {});
  return absl::OkStatus();
}

void Scheduler::AddInstance(RunRt& run, int t, const Bindings& bindings) {
  TaskRt& task = run.tasks[t];
  std::map<std::string, std::string> identity;
  for (const std::string& name : task.identity_params) identity[name] = run.params.at(name);
  for (const auto& [k, v] : bindings) identity[k] = v;
  std::string params = CanonicalParams(identity);
  if (task.seen.contains(absl::string_view(params))) return;  // identical bindings run once

  auto lookup = [&](absl::string_view name) { return LookupParam(bindings, run.params, name); };

  int64_t seq;
  ResumedRow prior;
  auto resumed = run.resumed.empty() ? run.resumed.end() : run.resumed.find(ResumeKey(task.spec->name(), params));
  if (resumed != run.resumed.end()) {
    prior = resumed->second;
    seq = prior.seq;
    run.resumed.erase(resumed);
  } else {
    seq = run.next_seq++;
  }
  if (seq >= static_cast<int64_t>(run.instances.size())) run.instances.resize(seq + 1);
  InstanceRt& inst = run.instances[seq];
  inst.task = t;
  inst.params = std::move(params);
  task.seen.insert(seq);
  task.seqs.push_back(seq);
  task.counters.set_total(task.counters.total() + 1);
  ++task.pending;
  SetState(run, seq, v1::QUEUED);

  std::string error;
  if (task.on != nullptr) {
    auto rendered = task.on->Render(lookup);
    if (rendered.ok()) {
      std::string path = *rendered;
      if (path.find('*') != std::string::npos) {
        path = ExpandStar(path, StableHash(absl::StrCat(task.spec->name(), "\n", inst.params)));
      }
      auto rel = NormalizeOutputPath(path);
      if (rel.ok()) {
        inst.output = *rel;
      } else {
        error = absl::StrCat("output path: ", rel.status().message());
      }
    } else {
      error = std::string(rendered.status().message());
    }
  }
  if (!error.empty()) {
    inst.error = error;
    inst.finished_ms = NowMs();
    SetState(run, seq, v1::FAILED);
    if (run.error.empty()) run.error = absl::StrCat(InstanceLabel(task.spec->name(), inst.params), ": ", error);
    Record(run, seq, v1::InstanceEvent::FINISHED);
    return;
  }

  if (CacheByFile(run, seq, prior.state)) return;
  // (No key to build while no execution is running or waiting: the usual
  // case for a run on its own.)
  auto shared = exec_by_key_.empty() ? exec_by_key_.end() : exec_by_key_.find(ExecKey(run, task, inst));
  if (shared != exec_by_key_.end()) {
    // Another run has it running (or waiting for a retry): share it. One
    // that another run merely queued is shared when it starts (Pump).
    JoinExec(run, seq, execs_.at(shared->second));
    if (inst.state == v1::QUEUED) Record(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    return;
  }
  // Queued as its seq alone: the execution is made when it starts (Pump),
  // so 100,000 queued instances cost their InstanceRt and 8 bytes each.
  plan_.Enqueue(seq, task.key, run.id);
  RecordNew(run, seq);
}

void Scheduler::RecordNew(RunRt& run, int64_t seq) {
  const InstanceRt& inst = run.instances[seq];
  if (run.expanding == nullptr || !inst.error.empty()) {
    Record(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    return;
  }
  NewRows& rows = run.expanding->rows;
  rows.Add(seq, inst.state, inst.finished_ms, inst.params, inst.output);
  if (rows.size() >= kNewRowsPerWrite) store_->PutNew(std::exchange(rows, NewRows(run.id, rows.task())));
}

std::string Scheduler::ExecKey(const RunRt& run, const TaskRt& task, const InstanceRt& inst) {
  return !inst.output.empty() ? absl::StrCat(run.workspace, "/", inst.output)
                              : absl::StrCat(run.workspace, "\n", task.key, "\n", inst.params);
}

bool Scheduler::CacheByFile(RunRt& run, int64_t seq, v1::InstanceState prior) {
  InstanceRt& inst = run.instances[seq];
  if (inst.output.empty()) return false;
  const TaskRt& task = run.tasks[inst.task];
  // While expanding, from the probe: a file it misses (made after it read
  // the directory) is found when the instance is picked to start.
  auto exists = [&run](const std::string& rel) {
    return run.expanding != nullptr ? run.expanding->outputs.Exists(rel)
                                    : ExistsBeneath(run.root.get(), rel);
  };
  const bool present = exists(inst.output);
  std::string err_rel;
  if (!present) err_rel = ErrorPathFor(inst.output, task.spec->on());
  const bool err_present = !present && exists(err_rel);
  if (!present && !err_present) return false;
  // The file is the truth: whoever made it, the instance is cached. A row
  // already final from before a restart keeps its state.
  bool keep = prior == v1::DONE || prior == v1::CACHED;
  if (err_present) inst.error = absl::StrCat("suppressed earlier: ", err_rel, " (asflowctl reset clears it)");
  SetState(run, seq, keep ? prior : v1::CACHED);
  if (!keep) {
    inst.finished_ms = NowMs();
    RecordNew(run, seq);
  }
  return true;
}

void Scheduler::JoinExec(RunRt& run, int64_t seq, Exec& exec) {
  InstanceRt& inst = run.instances[seq];
  exec.waiters.emplace_back(run.id, seq);
  inst.exec = exec.id;
  // Queued, or being killed for a run that no longer needs it: this run
  // gets a fresh attempt once the dying process is gone (OnExecDone).
  if (!exec.started || exec.cancelling) return;
  SetState(run, seq, v1::RUNNING);
  inst.pgid = exec.pgid;
  inst.started_ms = NowMs();
  Record(run, seq, v1::InstanceEvent::STARTED);
}

ExecJob Scheduler::BuildJob(ExecId id, const RunRt& run, int64_t seq) const {
  const InstanceRt& inst = run.instances[seq];
  const TaskRt& task = run.tasks[inst.task];
  // The instance's params hold every binding (and the flow params its
  // templates use): together with the run's params they render the job.
  Bindings params = DecodeParams(inst.params);
  auto lookup = [&](absl::string_view name) { return LookupParam(params, run.params, name); };
  ExecJob job;
  job.id = id;
  job.workspace = run.workspace;
  job.output = inst.output;
  job.pool = task.pool;
  job.label = InstanceLabel(task.spec->name(), inst.params);
  job.builtin = task.spec->handler();
  if (!job.builtin.empty()) job.params = inst.params;
  job.process.kill_grace = options_.kill_grace;
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
    job.process.timeout = absl::Seconds(task.spec->timeout().seconds()) +
                          absl::Nanoseconds(task.spec->timeout().nanos());
  }
  return job;
}

void Scheduler::SetState(RunRt& run, int64_t seq, v1::InstanceState state, bool retrying) {
  InstanceRt& inst = run.instances[seq];
  TaskRt& task = run.tasks[inst.task];
  if (inst.retrying != retrying) {
    task.counters.set_retrying(task.counters.retrying() + (retrying ? 1 : -1));
    inst.retrying = retrying;
  }
  CountState(&task.counters, inst.state, -1);
  CountState(&task.counters, state, +1);
  if (!IsFinal(inst.state) && IsFinal(state)) --task.pending;
  if (state != v1::RUNNING) inst.pgid = 0;
  inst.state = state;
}

void Scheduler::Pump() {
  for (;;) {
    // One clock reading per start: the recorded start time is the instant
    // the plan's limits and rate were checked against.
    const absl::Time now = absl::Now();
    std::optional<PlanPick> pick = plan_.NextStartable(now);
    if (!pick) break;
    if (pick->item < 0) {  // an execution queued again
      plan_.Bind(-pick->item);
      StartExec(execs_.at(-pick->item), now);
      continue;
    }
    RunRt& run = *runs_.at(pick->run_id);
    const int64_t seq = pick->item;
    InstanceRt& inst = run.instances[seq];
    const int t = inst.task;
    std::string key = ExecKey(run, run.tasks[t], inst);
    if (auto shared = exec_by_key_.find(key); shared != exec_by_key_.end()) {
      // Another run queued it since, and got to start it first.
      plan_.Release();
      JoinExec(run, seq, execs_.at(shared->second));
      continue;
    }
    if (CacheByFile(run, seq, v1::INSTANCE_STATE_UNSPECIFIED)) {
      // Another run wrote it since.
      plan_.Release();
      TaskProgress(run, t);
      AfterChange(run);  // may end (and erase) the run
      continue;
    }
    const ExecId id = next_exec_++;
    Exec& exec = execs_[id];
    exec.id = id;
    exec.key = std::move(key);
    exec.waiters.emplace_back(run.id, seq);
    exec.def = run.tasks[t].exec_def;
    exec_by_key_[exec.key] = id;
    inst.exec = id;
    plan_.Bind(id);
    StartExec(exec, now);
  }
}

void Scheduler::StartExec(Exec& exec, absl::Time now) {
  exec.started = true;
  ++exec.attempts;
  // Built now, not when queued: a job holds argv and a whole environment,
  // and a run may have 100,000 instances queued.
  const auto& [first_run, first_seq] = exec.waiters.front();
  ExecJob job = BuildJob(exec.id, *runs_.at(first_run), first_seq);
  exec.runner = exec.def->pool == "local" ? static_cast<Runner*>(pool_.get()) : workers_.get();
  for (const auto& [run_id, seq] : exec.waiters) {
    RunRt& run = *runs_.at(run_id);
    InstanceRt& inst = run.instances[seq];
    SetState(run, seq, v1::RUNNING);
    inst.started_ms = absl::ToUnixMillis(now);
    inst.finished_ms = 0;
    inst.error.clear();
    inst.attempts = exec.attempts;
    Record(run, seq, v1::InstanceEvent::STARTED);
  }
  exec.runner->Start(std::move(job));
}

Verdict Scheduler::Judge(const Exec& exec, const ExecResult& result) const {
  // Infrastructure errors (cannot start, cannot write the output) are never
  // matched by rules: a rule describes how the command fails.
  if (!result.output_status.ok() || !result.process.spawn_status.ok() ||
      !result.process.output_status.ok() || result.process.cancelled) {
    return Verdict::kFail;
  }
  AttemptFacts facts;
  facts.exit_code = result.process.exit_code;
  facts.signal = result.process.term_signal;
  facts.timed_out = result.process.timed_out;
  facts.stderr_tail = result.process.stderr_tail;
  facts.errors = result.process.error_types;
  return exec.def->rules->Classify(facts, exec.attempts);
}

absl::Status Scheduler::OpenWorkspace(RunRt& run) {
  absl::StatusOr<UniqueFd> root = OpenRoot(run.workspace);
  if (!root.ok()) return absl::Status(root.status().code(), absl::StrCat("workspace ", root.status().message()));
  run.root = std::move(*root);
  return absl::OkStatus();
}

absl::Status Scheduler::WriteErrFile(const RunRt& run, const std::string& rel, const std::string& text) const {
  auto file = AtomicFile::OpenBeneath(run.root.get(), run.workspace, rel, options_.file_options);
  if (!file.ok()) return file.status();
  if (absl::Status s = (*file)->Append(absl::StrCat(text, "\n")); !s.ok()) return s;
  return (*file)->Commit();
}

void Scheduler::OnExecProgress(ExecId id, int64_t bytes, int64_t lines) {
  auto it = execs_.find(id);
  if (stopping_ || it == execs_.end() || !it->second.started) return;
  for (const auto& [run_id, seq] : it->second.waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end()) continue;
    InstanceRt& inst = r->second->instances[seq];
    if (inst.state != v1::RUNNING) continue;
    // Through the store like every event, so it never overtakes STARTED.
    Record(*r->second, seq, v1::InstanceEvent::PROGRESS, bytes, lines);
  }
}

void Scheduler::KillLeftovers(const std::vector<InstanceRecord>& rows, bool same_boot) {
  for (const InstanceRecord& row : rows) {
    if (row.state != v1::RUNNING || row.pgid <= 1) continue;
    // The command itself died with the daemon (PDEATHSIG); its children are
    // still in its group, which keeps the pgid from being reused meanwhile.
    if (same_boot && kill(-row.pgid, SIGKILL) == 0) {
      spdlog::warn("run {}: killed process group {} left by {} before the restart", row.run_id,
                   row.pgid, InstanceLabel(row.task, row.params));
    }
  }
}

void Scheduler::OnExecSpawned(ExecId id, pid_t pgid) {
  auto it = execs_.find(id);
  if (stopping_ || it == execs_.end() || !it->second.started) return;
  it->second.pgid = pgid;
  for (const auto& [run_id, seq] : it->second.waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->instances[seq].state != v1::RUNNING) continue;
    r->second->instances[seq].pgid = pgid;
    Record(*r->second, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
  }
}

void Scheduler::Requeue(Exec& exec) {
  exec.cancelling = false;
  exec.started = false;
  exec.pgid = 0;
  exec.runner = nullptr;
  --exec.attempts;
  plan_.Enqueue(-exec.id, exec.def->task_key, exec.waiters.front().first);
}

void Scheduler::OnPoolSlots(const std::string& pool, int slots) {
  plan_.SetPoolSlots(pool, slots);
  for (auto& [id, run] : runs_) {
    if (UpdateWaiting(*run)) PublishRun(*run);
  }
}

bool Scheduler::UpdateWaiting(RunRt& run) {
  bool changed = false;
  for (TaskRt& task : run.tasks) {
    std::string waiting;
    if (task.pool != "local" && plan_.pool_slots(task.pool) == 0) {
      waiting = absl::StrCat("no worker connected to pool '", task.pool, "'");
    }
    if (task.counters.waiting() != waiting) {
      task.counters.set_waiting(waiting);
      changed = true;
    }
  }
  return changed;
}

void Scheduler::OnExecDone(ExecResult result) {
  plan_.Finished(result.id);
  auto it = execs_.find(result.id);
  if (it == execs_.end()) return;
  if (stopping_ || it->second.waiters.empty()) {
    // Shutting down (runs resume at the next start), or cancelled because
    // no run needs it any more.
    exec_by_key_.erase(it->second.key);
    execs_.erase(it);
    return;
  }
  if (it->second.cancelling && !result.ok()) {
    // Killed because no run needed it, but a run joined meanwhile: its
    // result says nothing about the instance, so run it again for them.
    // The kill does not count as an attempt.
    Requeue(it->second);
    return;
  }
  if (result.infra == ExecResult::Infra::kUnplaced ||
      (result.infra == ExecResult::Infra::kLost && it->second.losses + 1 < options_.max_losses)) {
    // Not the command's fault: queued again, not counted as an attempt.
    Exec& exec = it->second;
    std::string note;
    if (result.infra == ExecResult::Infra::kLost) {
      ++exec.losses;
      note = absl::StrCat(result.output_status.message(), "; queued again (loss ", exec.losses, " of ",
                          options_.max_losses, ")");
      Requeue(exec);
    } else {
      // The pool had room by the plan's count but no worker could take it
      // (e.g. the ones offering its handler are busy): back off a little
      // rather than bounce between the plan and the hub.
      exec.started = false;
      exec.runner = nullptr;
      --exec.attempts;
      retry_timers_.emplace(absl::Now() + absl::Milliseconds(200), exec.id);
    }
    for (const auto& [run_id, seq] : exec.waiters) {
      RunRt& run = *runs_.at(run_id);
      run.instances[seq].error = note;
      SetState(run, seq, v1::QUEUED);
      Record(run, seq, v1::InstanceEvent::QUEUED);
    }
    return;
  }
  if (result.infra == ExecResult::Infra::kLost) {
    result.output_status = absl::UnavailableError(absl::StrCat(
        "lost ", options_.max_losses, " times, last: ", result.output_status.message()));
  }
  std::string error = result.ok() ? "" : ErrorText(result);
  Verdict verdict = result.ok() ? Verdict::kFail : Judge(it->second, result);
  if (!result.ok() && verdict == Verdict::kRetry) {
    Exec& exec = it->second;
    absl::Duration delay = exec.def->rules->RetryDelay(exec.attempts, absl::Uniform(rng_, 0.0, 1.0));
    exec.started = false;
    exec.pgid = 0;
    exec.runner = nullptr;
    retry_timers_.emplace(absl::Now() + delay, exec.id);
    std::string note = absl::StrCat("attempt ", exec.attempts, " of ", exec.def->rules->max_retries() + 1,
                                    " failed, retrying in ", absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))),
                                    ": ", error);
    for (const auto& [run_id, seq] : exec.waiters) {
      RunRt& run = *runs_.at(run_id);
      run.instances[seq].error = note;
      SetState(run, seq, v1::QUEUED, /*retrying=*/true);
      Record(run, seq, v1::InstanceEvent::QUEUED);
    }
    return;
  }
  exec_by_key_.erase(it->second.key);  // views the key: erase it first
  Exec exec = std::move(it->second);
  execs_.erase(it);
  v1::InstanceState state = v1::DONE;
  if (!result.ok()) {
    state = verdict == Verdict::kSkip ? v1::SKIPPED : verdict == Verdict::kSuppress ? v1::SUPPRESSED : v1::FAILED;
  }
  if (state == v1::SUPPRESSED) {
    const auto& [run_id, seq] = exec.waiters.front();
    const RunRt& run = *runs_.at(run_id);
    const InstanceRt& inst = run.instances[seq];
    // The .err file makes later runs treat the instance as cached.
    if (!inst.output.empty()) {
      // An exception's .err holds its traceback alone, as AsFlow writes it.
      const std::string& text = result.process.error_text.empty() ? error : result.process.error_text;
      absl::Status s = WriteErrFile(run, ErrorPathFor(inst.output, run.tasks[inst.task].spec->on()), text);
      if (!s.ok()) {
        state = v1::FAILED;
        error = absl::StrCat("cannot record the suppressed error: ", s.message(), "\n", error);
      }
    }
  }
  FinishExec(exec, state, error, result);
}

void Scheduler::FinishExec(Exec& exec, v1::InstanceState state, const std::string& error,
                           const ExecResult& result) {
  std::vector<int64_t> touched;  // run ids; a run may wait twice on one exec
  for (const auto& [run_id, seq] : exec.waiters) {
    auto r = runs_.find(run_id);
    if (r == runs_.end() || r->second->state != v1::RUN_RUNNING) continue;
    RunRt& run = *r->second;
    InstanceRt& inst = run.instances[seq];
    if (IsFinal(inst.state)) continue;
    inst.exec = 0;
    inst.finished_ms = NowMs();
    inst.error = error;
    SetState(run, seq, state);
    if (state == v1::FAILED && run.error.empty()) {
      run.error = absl::StrCat(InstanceLabel(run.tasks[inst.task].spec->name(), inst.params), ": ",
                               FirstLine(error));
    }
    Record(run, seq, v1::InstanceEvent::FINISHED, result.bytes, result.lines);
    TaskProgress(run, inst.task);
    if (std::find(touched.begin(), touched.end(), run_id) == touched.end()) touched.push_back(run_id);
  }
  for (int64_t run_id : touched) {
    // Looked up again: finishing one run erases it from runs_.
    auto r = runs_.find(run_id);
    if (r != runs_.end()) AfterChange(*r->second);
  }
}

void Scheduler::TaskProgress(RunRt& run, int t) {
  if (run.state != v1::RUN_RUNNING) return;
  TaskRt& task = run.tasks[t];
  if (task.settled || !task.expanded || task.pending > 0) return;
  task.settled = true;
  bool ok = !task.blocked && task.counters.failed() == 0 && task.counters.cancelled() == 0;
  for (int d : task.dependents) {
    TaskRt& dep = run.tasks[d];
    if (dep.expanded || dep.blocked) continue;
    if (!ok) {
      Block(run, d);
      continue;
    }
    bool ready = std::all_of(dep.deps.begin(), dep.deps.end(), [&](int u) {
      const TaskRt& up = run.tasks[u];
      return up.settled && !up.blocked;
    });
    if (ready) Expand(run, d);
  }
}

void Scheduler::Block(RunRt& run, int t) {
  TaskRt& task = run.tasks[t];
  if (task.blocked || task.expanded) return;
  task.blocked = true;
  task.settled = true;
  for (int d : task.dependents) Block(run, d);
}

void Scheduler::AfterChange(RunRt& run) {
  if (run.state != v1::RUN_RUNNING) return;
  if (!run.error.empty() && !run.request.keep_going()) {
    FinishRun(run, v1::RUN_FAILED, run.error);
    return;
  }
  bool all_settled = std::all_of(run.tasks.begin(), run.tasks.end(),
                                 [](const TaskRt& t) { return t.settled; });
  if (!all_settled) return;
  bool failed = !run.error.empty() || std::any_of(run.tasks.begin(), run.tasks.end(), [](const TaskRt& t) {
    return t.blocked || t.counters.failed() > 0 || t.counters.cancelled() > 0;
  });
  FinishRun(run, failed ? v1::RUN_FAILED : v1::RUN_SUCCEEDED, run.error);
}

void Scheduler::DetachFromExec(RunRt& run, int64_t seq) {
  InstanceRt& inst = run.instances[seq];
  auto it = execs_.find(inst.exec);
  inst.exec = 0;
  if (it == execs_.end()) return;
  Exec& exec = it->second;
  auto& w = exec.waiters;
  w.erase(std::remove(w.begin(), w.end(), std::make_pair(run.id, seq)), w.end());
  if (!w.empty()) return;  // another run still needs it
  if (!exec.started) {
    // Its -id in the plan's FIFO is dropped when it comes up (not live).
    exec_by_key_.erase(exec.key);
    execs_.erase(it);
  } else {
    exec.runner->Cancel(exec.id);  // SIGTERM, SIGKILL after grace
    exec.cancelling = true;
  }
}

void Scheduler::FinishRun(RunRt& run, v1::RunState state, std::string error) {
  if (run.state != v1::RUN_RUNNING) return;
  int64_t now = NowMs();
  for (int64_t seq = 0; seq < static_cast<int64_t>(run.instances.size()); ++seq) {
    InstanceRt& inst = run.instances[seq];
    if (inst.task < 0 || IsFinal(inst.state)) continue;
    if (inst.exec != 0) DetachFromExec(run, seq);
    inst.finished_ms = now;
    SetState(run, seq, v1::CANCELLED);
    Record(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
  }
  // Rows from before a restart that this life of the run never reached.
  for (auto& [key, row] : run.resumed) {
    if (IsFinal(row.state)) continue;
    row.record.state = v1::CANCELLED;
    row.record.finished_ms = now;
    row.record.pgid = 0;
    store_->PutInstance(row.record);
  }
  run.resumed.clear();
  run.state = state;
  run.error = std::move(error);
  run.finished_ms = now;
  spdlog::info("run {} ({}) finished: {}{}{}", run.id, run.flow, v1::RunState_Name(state),
               run.error.empty() ? "" : ": ", run.error);
  PublishRun(run);
  runs_.erase(run.id);  // the hub's view and the store keep it from here
}

void Scheduler::Record(RunRt& run, int64_t seq, v1::InstanceEvent::Kind kind, int64_t bytes, int64_t lines) {
  const InstanceRt& inst = run.instances[seq];
  InstanceRecord rec;
  rec.run_id = run.id;
  rec.seq = seq;
  rec.task = run.tasks[inst.task].spec->name();
  rec.params = inst.params;
  rec.output = inst.output;
  rec.state = inst.state;
  rec.error = inst.error.str();
  rec.attempts = inst.attempts;
  rec.started_ms = inst.started_ms;
  rec.finished_ms = inst.finished_ms;
  rec.bytes = bytes;
  rec.lines = lines;
  rec.pgid = inst.state == v1::RUNNING ? inst.pgid : 0;
  std::function<void(const InstanceRecord&)> publish;
  if (kind != v1::InstanceEvent::KIND_UNSPECIFIED) {
    // The event is made from the record once it is committed: while the
    // write waits in the store's queue it holds only the counters.
    // The task's counters go along encoded (~30 bytes; a v1::TaskCounters
    // copy costs ~250 on the heap).
    publish = [hub = hub_, kind, counters = run.tasks[inst.task].counters.SerializeAsString()](
                  const InstanceRecord& written) {
      v1::Event event;
      v1::InstanceEvent* ie = event.mutable_instance();
      ie->set_kind(kind);
      *ie->mutable_instance() = InstanceToProto(written);
      // Events carry the first line only (what watchers show); the full
      // text, up to a 16 KiB stderr tail, stays in SQLite for `show`.
      ie->mutable_instance()->set_error(FirstLine(written.error));
      ie->mutable_counters()->ParseFromString(counters);
      hub->Publish(std::move(event));
    };
  }
  store_->PutInstance(std::move(rec), std::move(publish));
}

v1::Run Scheduler::RunProto(const RunRt& run) const {
  v1::Run proto;
  proto.set_id(run.id);
  proto.set_flow(run.flow);
  proto.set_workspace(run.workspace);
  proto.set_state(run.state);
  for (const auto& [k, v] : run.params) (*proto.mutable_params())[k] = v;
  proto.set_created_ms(run.created_ms);
  proto.set_finished_ms(run.finished_ms);
  proto.set_error(run.error);
  proto.set_keep_going(run.request.keep_going());
  for (const TaskRt& task : run.tasks) *proto.add_tasks() = task.counters;
  return proto;
}

void Scheduler::PublishRun(const RunRt& run) {
  // The event is made from the committed run, as Record's are.
  store_->PutRun(RunProto(run), [hub = hub_](const v1::Run& committed) {
    v1::Event event;
    *event.mutable_run()->mutable_run() = committed;
    hub->Publish(std::move(event));
  });
}


}  // namespace asflow
