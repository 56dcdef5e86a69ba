// Scheduler: the daemon's driver loop, split the way ninja splits its
// builder. What is ready to start is the Plan's (pure: limits, rates,
// pools, fairness); what a finished attempt means is JudgeAttempt's (pure:
// the error rules); run and instance state live in RunRt; executions
// shared across runs in the ExecTable; retry timers in a TimerQueue. The
// Scheduler drives them: it expands tasks, starts executions on Runners,
// applies outcomes, and records every change through the Recorder (store
// first, event once committed). Everything it touches outside itself comes
// in through an interface — StateStore, Runner, Clock, WorkspaceFs — so
// tests drive it with fakes and a fake clock, without a thread (Step).
//
// Threads: one thread (Start) owns all state and runs posted commands;
// public methods post and are thread-safe. Without Start, the caller
// drives it with Step on one thread (tests).
#ifndef ASFLOW_SERVER_SCHEDULER_H_
#define ASFLOW_SERVER_SCHEDULER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.pb.h"
#include "server/attempt_outcome.h"
#include "server/clock.h"
#include "server/event_hub.h"
#include "server/exec_table.h"
#include "server/log_hub.h"
#include "server/plan.h"
#include "server/recorder.h"
#include "server/run_state.h"
#include "server/runner.h"
#include "server/session_ops.h"
#include "server/state_store.h"
#include "server/throttle.h"
#include "server/timer_queue.h"
#include "server/workspace_fs.h"

namespace asflow {

struct SchedulerOptions {
  // Workspaces must be at or below one of these (absolute, symlink-free)...
  std::vector<std::string> allowed_roots;
  // ...or below one of these temporary directories (/tmp...) inside a
  // directory private to this user: one the user owns and nobody else may
  // write, right below the temporary root (pytest's tmp_path,
  // tempfile.TemporaryDirectory()), every directory below it the user's
  // too. Empty unless the daemon runs with its default roots.
  std::vector<std::string> user_temp_roots;
  // Slots of the in-process pool "local".
  int local_slots = 8;
  // `limit` of a task that sets none: the host's CPU count.
  int default_limit = 2;
  // SIGTERM -> SIGKILL delay when instances are cancelled.
  absl::Duration kill_grace = absl::Seconds(5);
  // Upper bound on instances in one run.
  int64_t max_instances_per_run = 10'000'000;
  // An instance whose worker is lost this many times fails.
  int max_losses = 3;
  // How long a code run waits for its process to come back
  // (docs/sessions.md).
  absl::Duration code_reattach = absl::Seconds(60);
  // Throttle keys every flow may `use` (asflowd --throttle).
  std::map<std::string, v1::ThrottleKey> throttle;
  // Bytes of each attempt's stderr kept (its tail) in the store and for
  // live readers (asflowd --stderr-tail).
  size_t stderr_tail_bytes = 16 * 1024;
};

// What the scheduler works with; all must outlive it.
struct SchedulerDeps {
  StateStore* store = nullptr;
  EventHub* hub = nullptr;
  Clock* clock = nullptr;
  WorkspaceFs* fs = nullptr;
  // Runs pool "local"; pool "code" (code sessions' calls); and every other
  // pool (remote workers).
  Runner* local = nullptr;
  Runner* remote = nullptr;
  Runner* code = nullptr;
  // Sends an event to a code session; may be null without sessions.
  std::function<void(int64_t session, v1::SessionEvent event)> send_to_session;
  // Running attempts' stderr for live readers; may be null.
  LogHub* logs = nullptr;
};

class Scheduler {
 public:
  explicit Scheduler(SchedulerOptions options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // What runners report, as posts to this scheduler: build the runners
  // with it, then pass them in SetDeps.
  RunnerEvents runner_events();
  // Code sessions' run, task and call ops, and their ends, as posts to
  // this scheduler (for the SessionHub).
  SessionOpsSink session_ops();
  // REQUIRES: before Resume/Start, once.
  void SetDeps(SchedulerDeps deps);

  // Resumes the runs the store says were running (killing what a crashed
  // daemon left of their commands), without starting the thread.
  absl::Status Resume();
  // Resume, then the driver thread.
  absl::Status Start();
  // The first half of a graceful stop: nothing new starts (queued and
  // retrying instances wait for the next start; new runs and code calls
  // are refused), and `idle` runs on the scheduler thread once no attempt
  // is running — at once if none is. The running ones finish and are
  // recorded as usual. Stop ends the drain whenever the caller's grace is
  // over.
  void Drain(std::function<void()> idle);
  // Kills running commands (their runs resume at the next start) and joins
  // the thread.
  void Stop();
  // Without the thread: runs the posted commands, fires the timers due by
  // the clock, and starts what may start. Returns when none is left.
  void Step();
  // When the thread should wake next without a command (a retry, a rate
  // token); InfiniteFuture if nothing waits on time.
  absl::Time NextWakeup() const;

  // A started run, and the event seq before its first event.
  struct Submitted {
    int64_t run_id = 0;
    int64_t seq = 0;
    // For the submitter (SubmitFlowResponse.warnings): tasks whose outputs
    // may be another active run's, made by a different command.
    std::vector<std::string> warnings;
  };
  // Validates and starts a run; `done` gets it, or InvalidArgument /
  // PermissionDenied saying why not. `done` runs on the scheduler thread.
  void Submit(v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<Submitted>)> done);
  // Cancels a run as fail-fast would; `done` gets the run's final state, or
  // NotFound.
  void Cancel(int64_t run_id, std::function<void(absl::StatusOr<v1::RunState>)> done);
  // Clears suppressed/failed instances (removes their .err files, marks
  // them RESET) so the next run runs them again; `done` gets the count and
  // the instances once the store has committed (with dry_run: what would
  // be reset, nothing changed). Instances of runs still active are left
  // alone.
  void Reset(v1::ResetTasksRequest request, std::function<void(absl::StatusOr<v1::ResetTasksResponse>)> done);

  // Checks request->workspace against the allowed roots and makes it
  // canonical (symlink-free); InvalidArgument / PermissionDenied saying
  // why not. Thread-safe: reads options and the file system only.
  absl::Status CheckWorkspace(v1::SubmitFlowRequest* request) const;

  // Throttle keys and gates (scheduler_throttle.cc). `done` runs on the
  // scheduler thread.
  void ListThrottle(std::function<void(v1::ListThrottleResponse)> done);
  // Pauses a key or task (`duration` 0: until Unpause); recorded in the
  // store, so it survives a restart. NotFound / InvalidArgument naming the
  // target if it is no key or task (or several tasks).
  void Pause(std::string target, absl::Duration duration, std::function<void(absl::StatusOr<v1::ThrottleStatus>)> done);
  void Unpause(std::string target, std::function<void(absl::StatusOr<v1::ResumeResponse>)> done);

  // A dry run of `request` (scheduler_check.cc): validated and built as
  // Submit would, expanded as far as existing files allow, each command's
  // program looked up. Records nothing. `done` runs on the scheduler thread.
  void Check(v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<v1::CheckFlowResponse>)> done);

 private:
  // What Submit and Check refuse before anything else: unresolved imports,
  // an invalid spec.
  absl::Status CheckSubmittable(const v1::SubmitFlowRequest& request) const;
  void Post(std::function<void()> fn);
  void Loop();
  // Runs `batch`, fires due timers, pumps.
  void RunCommands(std::vector<std::function<void()>> batch);
  void FireTimers(absl::Time now);
  // Starts whatever the plan lets start now.
  void Pump();
  int64_t NowMs() const { return absl::ToUnixMillis(deps_.clock->Now()); }

  // Runs: scheduler_runs.cc.
  absl::Status ResumeRun(RunRecord& rec, bool same_boot);
  void StartRun(std::unique_ptr<RunRt> run);
  void Expand(RunRt& run, int task);
  void AddInstance(RunRt& run, int task, const Bindings& bindings);
  // Makes the instance CACHED (or keeps `prior`, a final state from before
  // a restart) if its output or .err file exists; true if it did.
  bool CacheByFile(RunRt& run, int64_t seq, v1::InstanceState prior);
  // The instance's task settled: expands the tasks that were waiting on it
  // (or blocks them), and finishes the run when everything settled.
  void TaskProgress(RunRt& run, int task);
  void AfterChange(RunRt& run);
  void FinishRun(RunRt& run, v1::RunState state, std::string error);
  void OnStoreLost(int64_t run_id, const absl::Status& status);

  // Code sessions: scheduler_code.cc (docs/sessions.md).
  void OnSessionOp(int64_t session, const v1::SessionOp& op);
  void OpenCodeRun(int64_t session, const v1::OpenRun& op);
  void DeclareCodeTask(int64_t session, const v1::DeclareTask& op);
  void CallCode(int64_t session, const v1::CallOp& op);
  // The caller of a call stopped waiting: forgets the call; cancels its
  // instance if no other call of the run waits for it.
  void DropCode(int64_t session, const v1::CallOp& op);
  void CloseCodeRun(int64_t session, const v1::CloseRun& op);
  void OnSessionEnded(int64_t session);
  // The run's process is gone: its started calls are lost, the rest
  // parked until the process calls them again (or the run times out).
  void DetachCodeRun(RunRt& run);
  // Queues a code instance (or finds it cached or shared).
  void QueueCodeInstance(RunRt& run, int64_t seq, v1::InstanceState prior);
  // The code run the session calls `ref`; null if none is open.
  RunRt* FindCodeRun(int64_t session, int64_t ref);
  void SendToSession(int64_t session, v1::SessionEvent event);
  // Fails code runs whose process did not come back in time.
  void ExpireDetachedRuns(absl::Time now);
  void DoReset(const v1::ResetTasksRequest& request,
               std::function<void(absl::StatusOr<v1::ResetTasksResponse>)> done);

  // Throttle keys, cooldowns, pauses: scheduler_throttle.cc.
  absl::Status DefineDaemonKeys();
  // Defines the run's flow keys and checks its tasks' `uses`;
  // InvalidArgument listing each problem as "FIELD: message".
  absl::Status AcquireKeys(RunRt& run);
  absl::Status CheckUses(const RunRt& run, const v1::TaskSpec& task, const std::string& path);
  void ReleaseKeys(RunRt& run);
  // Gives task `t`'s definition its gates in the plan.
  void SetGates(const RunRt& run, int t);
  // The gates a cooldown of `task_key` holds: its keys, else its own.
  std::vector<Gate*> CoolingGates(const std::string& task_key) const;
  void FillCooldownContext(const Exec& exec, AttemptContext& ctx) const;
  // A cooldown outcome: cools the gates, and says so in its error note.
  void BeginCooldown(const Exec& exec, AttemptOutcome& outcome);
  // A success, or the cooldown cap: the consecutive count starts again.
  void AfterAttempt(const Exec& exec, const AttemptOutcome& outcome);
  // What the task's gates show while they hold starts back; "" if open.
  std::string ThrottleWaiting(const TaskRt& task, absl::Time now) const;
  // Ends what is over and, if any gate shows something new, the runs'
  // `waiting` notes follow.
  void RefreshThrottleNotes(absl::Time now);
  v1::ThrottleStatus GateStatus(const Gate& gate, absl::Time now) const;
  absl::StatusOr<Gate*> ResolveTarget(const std::string& target);
  absl::Status SavePauses();
  absl::Status LoadPauses();

  // Executions: scheduler_execs.cc.
  // What identifies an instance's execution across runs: the absolute
  // output path, or workspace + task + params.
  static std::string ExecKey(const RunRt& run, const TaskRt& task, const InstanceRt& inst);
  // Makes the instance wait on `exec` (RUNNING at once if it runs).
  void JoinExec(RunRt& run, int64_t seq, Exec& exec);
  // What an instance's execution would run: its handler and params, its
  // argv as rendered, or its code task. Two instances of one execution
  // key whose commands differ are two task definitions sharing an output.
  std::string CommandOf(const RunRt& run, int64_t seq) const;
  // Records in run.made_by whether the instance waits on a different
  // command than the one `exec` runs (its first waiter's).
  void NoteMaker(const Exec& exec, RunRt& run, int64_t seq);
  // Starts a new execution of the instance the plan picked.
  void StartPicked(const PlanPick& pick, absl::Time now);
  void StartExec(Exec& exec, absl::Time now);
  // The execution's instances are RUNNING (attempt started at `now`).
  void MarkStarted(Exec& exec, absl::Time now);

  // Chained starts (scheduler_chain.cc, docs/sessions.md): a code
  // session's calls of a task held back by its limit alone are started
  // ahead, each to begin in its process where the one before it ends, so
  // the process runs them back to back without a round trip per call.
  //
  // Chains executions, not begun, after the last one of `exec`'s chain
  // until `depth` wait behind `exec`, as far as the plan allows
  // (Plan::TakeSuccessor).
  // Their jobs are appended to `jobs` (started by the caller, in order).
  void ExtendChain(Exec& exec, absl::Time now, int depth, std::vector<ExecJob>* jobs);
  // One successor for `tail` (which has none), its job appended to
  // `jobs`; nullptr if none can be had.
  Exec* ChainAfter(Exec& tail, absl::Time now, std::vector<ExecJob>* jobs);
  // How many calls of the task to chain ahead: many while its attempts
  // are short (a round trip would cost more than the call), else one.
  int ChainDepth(const std::string& task_key) const;
  // Records whether the execution's attempt, ending now, was short.
  void NoteSpeed(const Exec& exec);
  // `from` ended well and its successor `to` began: the slot is `to`'s.
  void OnHandoff(ExecId from, ExecId to);
  // A chained execution that never began (the one before it did not end
  // well, or it was revoked): not an attempt, back at the head of its queue.
  void ReturnUnbegun(Exec& exec);
  // Successors not begun yet are told to stand down (cancel): a pause, a
  // cooldown or a drain must not let them start.
  void RevokeSuccessors();
  // Another run queued work for `task_key`: its successors chained for
  // other runs stand down, so the plan's turn-taking between runs holds.
  void RevokeContended(const std::string& task_key, int64_t run_id);
  // Calls `answer` once every chained execution not begun now has stood
  // down (ReturnUnbegun) or begun (OnHandoff), or kRevokeSettleLimit has
  // passed: a Pause answers only when no call it held back can still begin.
  void AfterRevokesSettle(std::function<void()> answer);
  // `id` is no longer chained-not-begun: the waits for it may answer.
  void RevokeSettled(ExecId id);
  // Answers the waits whose limit has passed (all of them when stopping).
  void ExpireRevokeWaits(absl::Time now);
  struct RevokeWait;
  // Answers (after taking them out) the waits `settled` says are over.
  void AnswerRevokeWaits(absl::FunctionRef<bool(RevokeWait&)> settled);
  ExecJob BuildJob(ExecId id, const RunRt& run, int64_t seq) const;
  void OnExecDone(ExecResult result);
  // Puts an execution back in the queue (at once, or after `delay`).
  void Requeue(Exec& exec, const AttemptOutcome& outcome);
  void FinishExec(ExecId id, const AttemptOutcome& outcome, const ExecResult& result);
  // Writes a suppressed instance's .err; false (and the outcome FAILED) if
  // it cannot.
  void WriteErrFile(const Exec& exec, AttemptOutcome& outcome);
  // A --force run's instance succeeded: the .err it was cached by before
  // (if any) no longer says anything true; removed (scheduler_runs.cc).
  void MaybeRemoveForcedErrFile(const Exec& exec);
  // History (scheduler_attempts.cc): the attempt starts for its waiters
  // (live stderr readers see it), a run joins it, and what came of it is
  // stored for each waiter (asflowctl show, logs).
  void BeginAttempt(Exec& exec, absl::Time now);
  void JoinAttempt(const Exec& exec, const RunRt& run, int64_t seq);
  void RecordAttempt(const Exec& exec, const ExecResult& result, const AttemptOutcome& outcome);
  // An attempt that is over without a row (the daemon is stopping, no run
  // needs it).
  void DropAttempt(const Exec& exec);
  void DetachFromExec(RunRt& run, int64_t seq);
  void OnExecProgress(ExecId id, int64_t bytes, int64_t lines);
  void OnExecSpawned(ExecId id, pid_t pgid);
  void OnExecSelfProgress(ExecId id, const SelfProgress& progress);
  void OnPoolSlots(const std::string& pool, int slots);
  // Sets `waiting` on the run's tasks from their pools' sizes; true if any
  // changed.
  bool UpdateWaiting(RunRt& run);
  Runner* RunnerFor(const std::string& pool) const;

  const SchedulerOptions options_;
  SchedulerDeps deps_;
  std::unique_ptr<Recorder> recorder_;

  absl::Mutex mu_;
  std::vector<std::function<void()>> commands_ ABSL_GUARDED_BY(mu_);
  bool quit_ ABSL_GUARDED_BY(mu_) = false;

  // Owned by the scheduler thread.
  Throttle throttle_;  // before plan_: the plan points at its gates
  uint64_t shown_throttle_version_ = 0;
  Plan plan_;
  absl::flat_hash_map<int64_t, std::unique_ptr<RunRt>> runs_;
  ExecTable execs_;
  TimerQueue timers_;  // executions waiting for a retry or a pause
  // Executions chained but not begun (Exec::pregranted).
  absl::flat_hash_set<ExecId> pregranted_;
  // Pauses waiting for the chained executions they revoked (AfterRevokesSettle).
  struct RevokeWait {
    absl::flat_hash_set<ExecId> pending;
    absl::Time deadline;
    std::function<void()> answer;
  };
  std::vector<RevokeWait> revoke_waits_;
  // Tasks (by key) whose last attempt was short (ChainDepth).
  absl::flat_hash_map<std::string, bool> fast_tasks_;
  // Code runs by (session, the client's ref).
  absl::flat_hash_map<std::pair<int64_t, int64_t>, int64_t> code_refs_;
  bool stopping_ = false;
  // Set by Drain: start nothing; call `drained_` once nothing runs.
  bool draining_ = false;
  std::function<void()> drained_;
  absl::BitGen rng_;  // retry jitter
  std::thread thread_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SCHEDULER_H_
