// Fakes for driving the Scheduler in unit tests, in the manner of ninja's
// build_test.cc: a clock moved by hand, a runner that records what it was
// asked and finishes jobs when the test says, an in-memory state store
// (that can be told to fail writes, as leveldb's fault-injecting Env
// does), and an in-memory workspace file system. None opens a file or a
// socket. Not thread-safe unless noted: the test and the scheduler it
// drives with Step() share one thread.
#ifndef ASFLOW_TESTS_SERVER_SCHEDULER_FAKES_H_
#define ASFLOW_TESTS_SERVER_SCHEDULER_FAKES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "server/clock.h"
#include "server/runner.h"
#include "server/state_store.h"
#include "server/workspace_fs.h"
#include "tests/server/fake_clock.h"

namespace asflow::testing {

// In-memory files, keyed by absolute path; directories are implied.
class FakeWorkspaceFs final : public WorkspaceFs {
 public:
  void Put(const std::string& path, std::string content) { files_[path] = std::move(content); }
  bool Has(const std::string& path) const { return files_.count(path) > 0; }
  std::string Get(const std::string& path) const {
    auto it = files_.find(path);
    return it == files_.end() ? "" : it->second;
  }
  void AddDir(const std::string& dir) { dirs_.push_back(dir); }
  const std::vector<pid_t>& killed() const { return killed_; }
  void SetBootId(std::string id) { boot_id_ = std::move(id); }
  // Writes under `prefix` fail (e.g. a read-only .err directory).
  void FailWritesUnder(std::string prefix) { fail_prefix_ = std::move(prefix); }

  absl::StatusOr<std::string> RealPath(const std::string& path) override {
    for (const std::string& d : dirs_) {
      if (path == d) return path;
    }
    return absl::NotFoundError(absl::StrCat("\"", path, "\": No such file or directory"));
  }
  absl::StatusOr<std::unique_ptr<Workspace>> Open(const std::string& abs_path) override;
  bool IsPrivateDir(const std::string& dir) override {
    for (const std::string& d : private_dirs_) {
      if (dir == d) return true;
    }
    return false;
  }
  void AddPrivateDir(const std::string& dir) {
    AddDir(dir);
    private_dirs_.push_back(dir);
  }
  bool KillProcessGroup(pid_t pgid) override {
    killed_.push_back(pgid);
    return true;
  }
  std::string BootId() override { return boot_id_; }

 private:
  friend class FakeWorkspace;
  std::map<std::string, std::string> files_;
  std::vector<std::string> dirs_;
  std::vector<std::string> private_dirs_;
  std::vector<pid_t> killed_;
  std::string boot_id_ = "boot-1";
  std::string fail_prefix_;
};

class FakeWorkspace final : public Workspace {
 public:
  FakeWorkspace(std::string path, FakeWorkspaceFs* fs) : Workspace(std::move(path)), fs_(fs) {}
  bool Exists(absl::string_view rel) override { return fs_->Has(Abs(rel)); }
  std::unique_ptr<ExistenceProbe> NewProbe() override {
    class P final : public ExistenceProbe {
     public:
      explicit P(FakeWorkspace* ws) : ws_(ws) {}
      bool Exists(absl::string_view rel) override { return ws_->Exists(rel); }

     private:
      FakeWorkspace* ws_;
    };
    return std::make_unique<P>(this);
  }
  absl::StatusOr<std::unique_ptr<LineSource>> OpenLines(absl::string_view rel) override {
    if (!fs_->Has(Abs(rel))) return absl::NotFoundError(absl::StrCat(Abs(rel), ": not found"));
    class Lines final : public LineSource {
     public:
      explicit Lines(std::string text) : lines_(absl::StrSplit(text, '\n')) {
        if (!lines_.empty() && lines_.back().empty()) lines_.pop_back();
      }
      absl::StatusOr<bool> Next(std::string* line) override {
        if (n_ >= static_cast<int64_t>(lines_.size())) return false;
        *line = lines_[n_++];
        return true;
      }
      int64_t line_number() const override { return n_; }

     private:
      std::vector<std::string> lines_;
      int64_t n_ = 0;
    };
    return std::make_unique<Lines>(fs_->Get(Abs(rel)));
  }
  absl::Status WriteFile(absl::string_view rel, absl::string_view text) override {
    if (!fs_->fail_prefix_.empty() && absl::StartsWith(Abs(rel), fs_->fail_prefix_)) {
      return absl::PermissionDeniedError(absl::StrCat(Abs(rel), ": Permission denied"));
    }
    fs_->Put(Abs(rel), std::string(text));
    return absl::OkStatus();
  }
  absl::Status Remove(absl::string_view rel) override {
    fs_->files_.erase(Abs(rel));
    return absl::OkStatus();
  }
  absl::Status RemoveTree(absl::string_view rel) override {
    const std::string dir = Abs(rel);
    for (auto it = fs_->files_.begin(); it != fs_->files_.end();) {
      it = it->first == dir || absl::StartsWith(it->first, dir + "/") ? fs_->files_.erase(it) : std::next(it);
    }
    return absl::OkStatus();
  }

 private:
  std::string Abs(absl::string_view rel) const { return absl::StrCat(path(), "/", rel); }
  FakeWorkspaceFs* fs_;
};

inline absl::StatusOr<std::unique_ptr<Workspace>> FakeWorkspaceFs::Open(const std::string& abs_path) {
  return std::make_unique<FakeWorkspace>(abs_path, this);
}

// Records the jobs it is given; the test ends them with Finish*.
class FakeRunner final : public Runner {
 public:
  // `fs` (optional) receives a job's output when it finishes with one.
  explicit FakeRunner(FakeWorkspaceFs* fs = nullptr) : fs_(fs) {}
  void SetEvents(RunnerEvents events) { events_ = std::move(events); }

  void Start(ExecJob job) override {
    started_.push_back(job.id);
    running_[job.id] = std::move(job);
  }
  void Cancel(ExecId id) override { cancelled_.push_back(id); }
  // A revoke is a cancel that a begun chained call ignores (SessionHub):
  // recorded among the cancels, and on its own.
  void Revoke(ExecId id) override {
    revoked_.push_back(id);
    Cancel(id);
  }
  bool ChainsStarts(int64_t /*session*/) const override { return chains_; }
  // Takes chained starts (ExecJob::after) from now on, as a code session
  // whose hello said chained_starts.
  void SetChains(bool chains) { chains_ = chains; }
  // Job `from` ended well and its chained `to` began (as the SessionHub
  // reports a result with started_next: before from's result).
  void Handoff(ExecId from, ExecId to) { events_.on_handoff(from, to); }

  // Workers with `slots` in all joined (or left) `pool`.
  void SetPoolSlots(const std::string& pool, int slots) { events_.on_pool_slots(pool, slots); }

  // Ends job `id` with `result` (its id is set), as a runner thread would.
  void Finish(ExecId id, ExecResult result) {
    result.id = id;
    running_.erase(id);
    events_.on_done(std::move(result));
  }
  // Ends it successfully; the output (if the job keeps one) holds `output`.
  void FinishOk(ExecId id, const std::string& output = "") {
    const ExecJob& job = running_.at(id);
    if (fs_ != nullptr && !job.output.empty()) fs_->Put(absl::StrCat(job.workspace, "/", job.output), output);
    ExecResult r;
    r.process.exit_code = 0;
    Finish(id, std::move(r));
  }
  // Ends it with exit code `code` and `stderr_tail`.
  void FinishExit(ExecId id, int code, const std::string& stderr_tail = "") {
    ExecResult r;
    r.process.exit_code = code;
    r.process.stderr_tail = stderr_tail;
    Finish(id, std::move(r));
  }
  // The worker running it was lost.
  void FinishLost(ExecId id) {
    ExecResult r;
    r.infra = ExecResult::Infra::kLost;
    r.output_status = absl::UnavailableError("worker w1 lost");
    Finish(id, std::move(r));
  }
  // Killed by Cancel.
  void FinishCancelled(ExecId id) {
    ExecResult r;
    r.process.cancelled = true;
    r.process.exit_code = -1;
    r.process.term_signal = 15;
    Finish(id, std::move(r));
  }

  // Ids started so far, in order (an id restarts after a retry or a loss).
  const std::vector<ExecId>& started() const { return started_; }
  const std::vector<ExecId>& cancelled() const { return cancelled_; }
  const std::vector<ExecId>& revoked() const { return revoked_; }
  // Jobs started and not finished, by id.
  const std::map<ExecId, ExecJob>& running() const { return running_; }
  // The label ("task(k=v)") of each running job, sorted.
  std::vector<std::string> RunningLabels() const {
    std::vector<std::string> labels;
    for (const auto& [id, job] : running_) labels.push_back(job.label);
    std::sort(labels.begin(), labels.end());
    return labels;
  }
  // The id of the running job labelled `label`; 0 if none.
  ExecId IdOf(const std::string& label) const {
    for (const auto& [id, job] : running_) {
      if (job.label == label) return id;
    }
    return 0;
  }

 private:
  FakeWorkspaceFs* fs_;
  RunnerEvents events_;
  std::vector<ExecId> started_;
  std::vector<ExecId> cancelled_;
  std::vector<ExecId> revoked_;
  std::map<ExecId, ExecJob> running_;
  bool chains_ = false;
};

// An in-memory StateStore. Writes apply at once and call back before
// returning (with the write's status); from `fail_from` on (the Nth write,
// 1-based, counting every write) each write fails as a full disk would,
// until Heal().
class FakeStore final : public StateStore {
 public:
  void FailFrom(int64_t nth) { fail_from_ = nth; }
  void FailNow() { fail_from_ = writes_ + 1; }
  void Heal() { fail_from_ = 0; }
  int64_t writes() const { return writes_; }

  absl::StatusOr<int64_t> CreateRun(const v1::Run& run, const std::string& request) override {
    if (absl::Status s = Write(); !s.ok()) return s;
    RunRecord rec{run, request};
    rec.run.set_id(++last_run_);
    runs_[rec.run.id()] = std::move(rec);
    return last_run_;
  }
  void PutInstance(InstanceRecord record, InstanceDone done = nullptr) override {
    absl::Status s = Write();
    if (s.ok()) instances_[{record.run_id, record.seq}] = record;
    if (done) done(record, s);
  }
  void PutNew(NewRows rows, RowsDone done = nullptr) override {
    absl::Status s = Write();
    for (size_t i = 0; s.ok() && i < rows.size(); ++i) {
      NewRows::RowView row = rows.Row(i);
      InstanceRecord r;
      r.run_id = rows.run_id();
      r.seq = row.seq;
      r.task = rows.task();
      r.params = std::string(row.params);
      r.output = std::string(row.output);
      r.state = row.state;
      r.finished_ms = row.finished_ms;
      instances_[{r.run_id, r.seq}] = r;
    }
    if (done) done(s);
  }
  void PutRun(v1::Run run, RunDone done = nullptr) override {
    absl::Status s = Write();
    if (s.ok()) runs_[run.id()].run = run;
    if (done) done(run, s);
  }
  void PutRunRequest(int64_t run_id, std::string request, RowsDone done = nullptr) override {
    absl::Status s = Write();
    if (s.ok()) runs_[run_id].request = std::move(request);
    if (done) done(s);
  }
  // Attempt rows are kept apart and always succeed: FailFrom counts the
  // state writes the scheduler's correctness rests on.
  void PutAttempt(AttemptRecord record, RowsDone done = nullptr) override {
    attempts_.push_back(std::move(record));
    if (done) done(absl::OkStatus());
  }
  absl::Status Flush() override { return std::exchange(first_error_, absl::OkStatus()); }

  absl::StatusOr<RunRecord> GetRun(int64_t id) override {
    auto it = runs_.find(id);
    if (it == runs_.end()) return absl::NotFoundError(absl::StrCat("run ", id, " not found"));
    return it->second;
  }
  absl::StatusOr<std::vector<RunRecord>> ListRuns(int limit, bool only_running, int64_t before_id,
                                                  bool with_request) override {
    std::vector<RunRecord> out;
    for (auto it = runs_.rbegin(); it != runs_.rend(); ++it) {
      if (only_running && it->second.run.state() != v1::RUN_RUNNING) continue;
      if (before_id != 0 && it->first >= before_id) continue;
      out.push_back(it->second);
      if (!with_request) out.back().request.clear();
      if (limit > 0 && static_cast<int>(out.size()) == limit) break;
    }
    return out;
  }
  absl::StatusOr<std::vector<InstanceRecord>> LoadInstances(int64_t run_id) override {
    std::vector<InstanceRecord> out;
    for (const auto& [key, r] : instances_) {
      if (key.first == run_id) out.push_back(r);
    }
    return out;
  }
  absl::StatusOr<std::vector<FoundInstance>> FindInstances(const InstanceFilter& f) override {
    std::vector<FoundInstance> out;
    for (const auto& [key, r] : instances_) {
      const RunRecord& run = runs_[r.run_id];
      if (f.run_id != 0 && r.run_id != f.run_id) continue;
      if (!f.flow.empty() && run.run.flow() != f.flow) continue;
      if (!f.task.empty() && r.task != f.task) continue;
      if (!f.path.empty() && absl::StrCat(run.run.workspace(), "/", r.output) != f.path) continue;
      if (!f.path_prefix.empty() && !absl::StartsWith(absl::StrCat(run.run.workspace(), "/", r.output), f.path_prefix)) {
        continue;
      }
      if (!f.workspace.empty() && run.run.workspace() != f.workspace) continue;
      if (std::find(f.states.begin(), f.states.end(), r.state) == f.states.end()) continue;
      out.push_back(FoundInstance{r, run.run.workspace()});
    }
    return out;
  }
  absl::StatusOr<std::string> GetMeta(const std::string& key) override { return meta_[key]; }
  absl::Status SetMeta(const std::string& key, const std::string& value) override {
    meta_[key] = value;
    return absl::OkStatus();
  }
  const std::string& path() const override { return path_; }

  // What is committed.
  const InstanceRecord* Instance(int64_t run_id, int64_t seq) const {
    auto it = instances_.find({run_id, seq});
    return it == instances_.end() ? nullptr : &it->second;
  }
  const v1::Run& Run(int64_t id) { return runs_[id].run; }
  // A run as a crashed daemon left it, for resume tests.
  int64_t AddRun(RunRecord rec) {
    rec.run.set_id(++last_run_);
    runs_[last_run_] = std::move(rec);
    return last_run_;
  }
  void AddInstance(InstanceRecord r) { instances_[{r.run_id, r.seq}] = std::move(r); }
  // Every attempt row written, in order.
  const std::vector<AttemptRecord>& attempts() const { return attempts_; }

 private:
  absl::Status Write() {
    ++writes_;
    if (fail_from_ == 0 || writes_ < fail_from_) return absl::OkStatus();
    absl::Status s = absl::ResourceExhaustedError(absl::StrCat("store ", path_, ": database or disk is full"));
    if (first_error_.ok()) first_error_ = s;
    return s;
  }

  std::string path_ = "/state/fake.db";
  std::map<int64_t, RunRecord> runs_;
  std::map<std::pair<int64_t, int64_t>, InstanceRecord> instances_;
  std::map<std::string, std::string> meta_;
  std::vector<AttemptRecord> attempts_;
  int64_t last_run_ = 0;
  int64_t writes_ = 0;
  int64_t fail_from_ = 0;
  absl::Status first_error_;
};

}  // namespace asflow::testing

#endif  // ASFLOW_TESTS_SERVER_SCHEDULER_FAKES_H_
