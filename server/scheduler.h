// Scheduler: the daemon's driver loop. One thread owns every active run,
// the shared executions and the Plan; gRPC handlers and runner threads talk
// to it only by posting commands, so they never block on SQLite, processes
// or long-held locks. State changes go to the Store (grouped commits) and,
// once committed, to the EventHub. Thread-safe (public methods post).
#ifndef ASFLOW_SERVER_SCHEDULER_H_
#define ASFLOW_SERVER_SCHEDULER_H_

#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.pb.h"
#include "common/atomic_file.h"
#include "server/event_hub.h"
#include "server/local_pool.h"
#include "server/plan.h"
#include "server/run_state.h"
#include "server/store.h"
#include "server/worker_hub.h"

namespace asflow {

struct SchedulerOptions {
  // Workspaces must be at or below one of these (absolute, symlink-free).
  std::vector<std::string> allowed_roots;
  // Slots (threads) of the in-process pool "local".
  int local_slots = 8;
  // `limit` of a task that sets none: the host's CPU count.
  int default_limit = 2;
  // How outputs are written (compression level, fsync).
  AtomicFileOptions file_options;
  // SIGTERM -> SIGKILL delay when instances are cancelled.
  absl::Duration kill_grace = absl::Seconds(5);
  // Upper bound on instances in one run.
  int64_t max_instances_per_run = 10'000'000;
  // Remote worker pools: lease and bounds.
  WorkerHubOptions workers;
  // An instance whose worker is lost this many times fails.
  int max_losses = 3;
};

class Scheduler {
 public:
  // `store` and `hub` must outlive the scheduler.
  Scheduler(SchedulerOptions options, Store* store, EventHub* hub);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Resumes the runs the store says were running, then starts the loop.
  absl::Status Start();
  // Kills running commands (their runs resume at the next Start) and joins.
  void Stop();

  // A started run, and the event seq before its first event.
  struct Submitted {
    int64_t run_id = 0;
    int64_t seq = 0;
  };
  // Validates and starts a run; `done` gets it, or InvalidArgument /
  // PermissionDenied saying why not. `done` runs on the scheduler thread.
  void Submit(v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<Submitted>)> done);
  // Cancels a run as fail-fast would; `done` gets the run's final state, or
  // NotFound.
  void Cancel(int64_t run_id, std::function<void(absl::StatusOr<v1::RunState>)> done);
  // Clears suppressed/failed instances (removes their .err files, marks
  // them RESET) so the next run runs them again; `done` gets the count once
  // the store has committed. Instances of runs still active are left alone.
  void Reset(v1::ResetTasksRequest request, std::function<void(absl::StatusOr<int64_t>)> done);

  // The remote pools' runner, for the WorkerService and ListWorkers.
  WorkerHub* workers() { return workers_.get(); }

 private:
  // An execution shared by every run that needs the same instance.
  // Kept compact: a run of 100,000 instances queues 100,000 of them.
  struct Exec {
    ExecId id = 0;
    // Absolute output path, or workspace+task+params. The only copy:
    // exec_by_key_ views it (execs_ is node-based, so it never moves).
    std::string key;
    // (run id, seq); almost always one run, kept inline.
    absl::InlinedVector<std::pair<int64_t, int64_t>, 1> waiters;
    // Task key, pool and rules of the task that created it, shared by all
    // of that task's executions.
    std::shared_ptr<const ExecDef> def;
    Runner* runner = nullptr;  // set while an attempt runs
    bool started = false;
    // Its process is being killed because no run needed it any more; runs
    // that join meanwhile wait for a fresh attempt.
    bool cancelling = false;
    int attempts = 0;  // attempts started so far
    int losses = 0;    // attempts whose worker was lost (not counted above)
    pid_t pgid = 0;    // process group of the running attempt

    // Not started (queued again, or waiting for its retry), and some run
    // still needs it.
    bool WaitsToStart() const { return !started && !waiters.empty(); }
  };
  using Timer = std::pair<absl::Time, ExecId>;

  // The job for an execution, from one of the instances waiting on it.
  ExecJob BuildJob(ExecId id, const RunRt& run, int64_t seq) const;
  void Post(std::function<void()> fn);
  void Loop();
  void Pump();
  void FireTimers(absl::Time now);
  // The verdict of the rules on a failed result, with the error text.
  Verdict Judge(const Exec& exec, const ExecResult& result) const;
  // Opens the run's workspace (root) for everything done below it.
  static absl::Status OpenWorkspace(RunRt& run);
  // Writes `text` to the run's `rel` (a suppressed instance's .err file).
  absl::Status WriteErrFile(const RunRt& run, const std::string& rel, const std::string& text) const;
  void FinishExec(Exec& exec, v1::InstanceState state, const std::string& error, const ExecResult& result);

  absl::Status CheckWorkspace(v1::SubmitFlowRequest* request) const;
  void StartRun(std::unique_ptr<RunRt> run);
  void Expand(RunRt& run, int task);
  absl::Status ExpandInto(RunRt& run, int task);
  void AddInstance(RunRt& run, int task, const Bindings& bindings);
  // What identifies an instance's execution across runs: the absolute
  // output path, or workspace + task + params.
  static std::string ExecKey(const RunRt& run, const TaskRt& task, const InstanceRt& inst);
  // Makes the instance CACHED (or keeps `prior`, a final state from before
  // a restart) if its output or .err file exists; true if it did.
  bool CacheByFile(RunRt& run, int64_t seq, v1::InstanceState prior);
  // Makes the instance wait on `exec` (RUNNING at once if it runs).
  void JoinExec(RunRt& run, int64_t seq, Exec& exec);
  void StartExec(Exec& exec, absl::Time now);
  // Writes a new instance's first row (queued, or cached without error):
  // with the expansion's other rows while one is under way.
  void RecordNew(RunRt& run, int64_t seq);
  void SetState(RunRt& run, int64_t seq, v1::InstanceState state, bool retrying = false);
  void TaskProgress(RunRt& run, int task);
  void Block(RunRt& run, int task);
  void AfterChange(RunRt& run);
  void FinishRun(RunRt& run, v1::RunState state, std::string error);
  void OnExecDone(ExecResult result);
  // Puts a started execution back in the queue without counting an attempt
  // (its process was killed for no fault of its own, or its worker lost).
  void Requeue(Exec& exec);
  void OnPoolSlots(const std::string& pool, int slots);
  // Sets `waiting` on the run's tasks from their pools' sizes; true if any
  // changed.
  bool UpdateWaiting(RunRt& run);
  void OnExecProgress(ExecId id, int64_t bytes, int64_t lines);
  void OnExecSpawned(ExecId id, pid_t pgid);
  // Kills the process groups that a crashed daemon's running instances
  // left behind (same boot only: a pgid means nothing after a reboot).
  void KillLeftovers(const std::vector<InstanceRecord>& rows, bool same_boot);
  void DetachFromExec(RunRt& run, int64_t seq);

  // Writes the instance's row (and publishes `kind` once it is committed).
  // bytes and lines: its output so far (PROGRESS) or in all (FINISHED); an
  // instance does not keep them between events.
  void Record(RunRt& run, int64_t seq, v1::InstanceEvent::Kind kind, int64_t bytes = 0, int64_t lines = 0);
  void PublishRun(const RunRt& run);
  v1::Run RunProto(const RunRt& run) const;

  const SchedulerOptions options_;
  Store* const store_;
  EventHub* const hub_;

  absl::Mutex mu_;
  std::vector<std::function<void()>> commands_ ABSL_GUARDED_BY(mu_);
  bool quit_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the scheduler thread.
  Plan plan_;
  absl::flat_hash_map<int64_t, std::unique_ptr<RunRt>> runs_;
  // Node-based: Exec::key must stay put, exec_by_key_ points into it.
  absl::node_hash_map<ExecId, Exec> execs_;
  absl::flat_hash_map<absl::string_view, ExecId> exec_by_key_;
  ExecId next_exec_ = 1;
  bool stopping_ = false;
  // Executions waiting for their retry backoff, earliest first.
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> retry_timers_;
  absl::BitGen rng_;  // retry jitter

  std::unique_ptr<LocalPool> pool_;
  std::unique_ptr<WorkerHub> workers_;
  std::thread thread_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SCHEDULER_H_
