// The runner seam between the scheduler and whatever executes instances,
// and LocalPool, the daemon's in-process pool: a fixed set of threads (one
// per slot, never one per instance) that run commands with the exec library
// and stream their stdout into atomic output files.
#ifndef ASFLOW_SERVER_LOCAL_POOL_H_
#define ASFLOW_SERVER_LOCAL_POOL_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "common/atomic_file.h"
#include "server/plan.h"
#include "worker/subprocess.h"

namespace asflow {

// One execution to run: a command and where its stdout goes.
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
  // The pool that runs it ("local": the in-process pool).
  std::string pool;
  // A built-in handler instead of `process`: "builtin.noop" writes nothing,
  // "builtin.echo" writes `params` (the instance's JSON) and a newline.
  // They cost no process, so they measure the daemon's own overhead.
  std::string builtin;
  std::string params;
  // "task[param=value]", for logs.
  std::string label;
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
  enum class Infra { kNone, kLost, kUnplaced };
  Infra infra = Infra::kNone;
  bool ok() const { return infra == Infra::kNone && process.ok() && output_status.ok(); }
  // One line for users: the output error, else the process outcome.
  std::string Describe() const;
};

// Runs ExecJobs somewhere and reports each result exactly once through the
// callback it was built with. Implementations are thread-safe.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void Start(ExecJob job) = 0;
  // Asks a started job to stop (its group gets SIGTERM, SIGKILL after the
  // grace); its result still arrives. Unknown or finished ids are ignored.
  virtual void Cancel(ExecId id) = 0;
};

// Progress of a running job: uncompressed bytes and lines of stdout so far.
using ProgressFn = std::function<void(ExecId, int64_t bytes, int64_t lines)>;

// A job's command started as process group `pgid`.
using SpawnFn = std::function<void(ExecId, pid_t pgid)>;

// How often a running job reports progress at most.
inline constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

// Where a job's stdout goes, wherever the command runs: counted (bytes,
// lines), reported as progress at most every kProgressInterval, and
// written to the job's atomic output file if it keeps one. Used by the
// in-process pool (RunJob) and for remote workers' streamed chunks. Not
// thread-safe.
class StdoutSink {
 public:
  // `job` and `progress` must outlive the sink.
  StdoutSink(const ExecJob& job, const AtomicFileOptions& file_options, const ProgressFn& progress);
  // Opens the temporary beneath the workspace without following symlinks
  // (AtomicFile::OpenBeneath: a symlink planted or swapped in at any time
  // cannot redirect it). OK without doing anything if the job keeps no
  // output.
  absl::Status Open();
  // Counts and writes the next chunk (after a successful Open).
  absl::Status Append(absl::string_view chunk);
  // Bytes appended so far.
  int64_t bytes() const { return bytes_; }
  // Commits the output if `keep` (the command succeeded), else removes the
  // temporary; fills result->bytes, lines and output_status.
  void Finish(bool keep, ExecResult* result);

 private:
  const ExecJob& job_;
  const AtomicFileOptions& file_options_;
  const ProgressFn& progress_;
  std::unique_ptr<AtomicFile> file_;
  int64_t bytes_ = 0;
  int64_t lines_ = 0;
  bool ends_with_newline_ = true;
  absl::Time next_report_;
};

// Runs one job to completion in the calling thread: StdoutSink, then the
// subprocess or built-in handler, then commit or abort.
ExecResult RunJob(const ExecJob& job, const AtomicFileOptions& file_options,
                  const ProgressFn& progress = nullptr, const SpawnFn& spawned = nullptr);

// In-process pool of `threads` runner threads. Thread-safe. The destructor
// drops queued jobs (never started, no callback) and joins the threads
// after their current jobs end.
class LocalPool : public Runner {
 public:
  LocalPool(int threads, AtomicFileOptions file_options,
            std::function<void(ExecResult)> on_done, ProgressFn on_progress = nullptr,
            SpawnFn on_spawn = nullptr);
  ~LocalPool() override;

  void Start(ExecJob job) override;
  void Cancel(ExecId id) override;

 private:
  void Loop();

  const AtomicFileOptions file_options_;
  const std::function<void(ExecResult)> on_done_;
  const ProgressFn on_progress_;
  const SpawnFn on_spawn_;
  absl::Mutex mu_;
  std::deque<ExecJob> queue_ ABSL_GUARDED_BY(mu_);
  // Queued and running jobs' cancellers.
  absl::flat_hash_map<ExecId, std::shared_ptr<Canceller>> cancellers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LOCAL_POOL_H_
