// The seam between the scheduler and whatever executes instances: a job to
// run (ExecJob), what came of it (ExecResult), the Runner interface that
// LocalPool (in-process) and WorkerHub (remote pools) implement, and the
// events a runner reports back (RunnerEvents). The scheduler only ever
// sees these; tests drive it with a fake Runner.
#ifndef ASFLOW_SERVER_RUNNER_H_
#define ASFLOW_SERVER_RUNNER_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "exec/subprocess.h"

namespace asflow {

using ExecId = int64_t;

// One execution to run: a command (or built-in / SDK handler) and where its
// output goes.
struct ExecJob {
  ExecId id = 0;
  // The in-process pool gets a complete spec (cwd = workspace, the merged
  // environment). A remote pool gets argv, timeout and kill grace, and in
  // `env` only the "K=V" the instance adds (ASFLOW_PARAM_*): the worker
  // runs it in a scratch directory with its own environment and PATH.
  SubprocessSpec process;
  // Workspace root and the output path relative to it; an empty output
  // means stdout is counted but not kept.
  std::string workspace;
  std::string output;
  // The output is a directory (`on` ends with '/'): the command gets an
  // empty temporary one as $ASFLOW_OUTPUT_DIR, committed whole on success
  // (common/atomic_dir.h); stdout is counted, not kept.
  bool output_dir = false;
  // The pool that runs it ("local": the in-process pool).
  std::string pool;
  // A handler instead of `process` (exec/builtins.h: the built-ins run
  // in-process; others on workers that offer them), given `params`.
  std::string builtin;
  std::string params;
  // "task(param=value)", for logs.
  std::string label;
  // zstd or gzip level of the output; 0: the daemon's default.
  int compression_level = 0;
  // Pool "code": the code session that runs it, and the call id it knows
  // the instance by (FlowService.Session).
  int64_t session = 0;
  int64_t call_id = 0;
  // A chained start (Runner::ChainsStarts): run once execution `after`
  // (call `after_call` of the same session) ends well; its slot then
  // passes to this job (RunnerEvents::on_handoff). 0: run now.
  ExecId after = 0;
  int64_t after_call = 0;
  // Which attempt this is (1 for the first).
  int attempt = 1;
  // Set by the runner: cancels the running command.
  std::shared_ptr<Canceller> canceller;
};

// What came of an ExecJob.
struct ExecResult {
  ExecId id = 0;
  SubprocessResult process;
  // Opening, writing or committing the output failed (the command may have
  // succeeded); the output file was not created.
  absl::Status output_status;
  int64_t bytes = 0;  // uncompressed stdout bytes
  int64_t lines = 0;  // newline-terminated lines, plus a final partial one
  // Infrastructure, not the command: the worker running it was lost (its
  // partial output was discarded), or no worker could take it. Either way
  // the instance is queued again; kLost counts towards the loss limit.
  // kWithdrawn: a code session stopped the call on its own (its caller
  // went away); queued again for whoever still waits, not an attempt.
  enum class Infra { kNone, kLost, kUnplaced, kWithdrawn };
  Infra infra = Infra::kNone;
  bool ok() const { return infra == Infra::kNone && process.ok() && output_status.ok(); }
  // One line for users: the output error, else the process outcome.
  std::string Describe() const;
};

// Progress of a running job: uncompressed bytes and lines of stdout so far.
using ProgressFn = std::function<void(ExecId, int64_t bytes, int64_t lines)>;

// Progress a job reports about itself (a code session's
// flow.task.progress): a total (0: unknown), how much is done, a label.
struct SelfProgress {
  double total = 0;
  double completed = 0;
  std::string description;
};

// How often a running job reports progress at most.
inline constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

// What runners report, from their own threads. Every job's result arrives
// exactly once through on_done (lost and unplaced ones included). The
// scheduler's functions only queue work for its thread.
struct RunnerEvents {
  std::function<void(ExecResult)> on_done;
  ProgressFn on_progress;
  // A job's command started as process group `pgid` (local pool only).
  std::function<void(ExecId, pid_t pgid)> on_spawn;
  // The slots now available in a pool whose capacity changes (remote
  // pools, as workers come and go).
  std::function<void(const std::string& pool, int slots)> on_pool_slots;
  // Progress a job reports about itself (code sessions).
  std::function<void(ExecId, SelfProgress)> on_self_progress;
  // The next chunk of a job's stderr, as it arrives (for asflowctl logs
  // -f); called on the runner's thread, must not block.
  std::function<void(ExecId, absl::string_view)> on_stderr;
  // Execution `from` ended well and its chained successor `to` has begun:
  // the slot `from` held is `to`'s now. Before `from`'s on_done.
  std::function<void(ExecId from, ExecId to)> on_handoff;
};

// Runs ExecJobs somewhere and reports each result exactly once through the
// RunnerEvents it was built with. Implementations are thread-safe.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void Start(ExecJob job) = 0;
  // Starts `jobs` in order, as one batch where the runner can (a code
  // session gets a chain's starts in one message, so its process never
  // sees a chained start after the call it follows has ended).
  virtual void StartAll(std::vector<ExecJob> jobs) {
    for (ExecJob& job : jobs) Start(std::move(job));
  }
  // Asks a started job to stop (its group gets SIGTERM, SIGKILL after the
  // grace); its result still arrives. Unknown or finished ids are ignored.
  virtual void Cancel(ExecId id) = 0;
  // Takes back a chained job (ExecJob::after) unless it has begun: then it
  // runs to its end. Where nothing is chained, the same as Cancel.
  virtual void Revoke(ExecId id) { Cancel(id); }
  // Whether jobs for code session `session` may be chained (ExecJob::after):
  // started ahead, to begin where the job they follow ends. Thread-safe.
  virtual bool ChainsStarts(int64_t /*session*/) const { return false; }
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_RUNNER_H_
