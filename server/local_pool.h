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
#include "absl/synchronization/mutex.h"
#include "common/atomic_file.h"
#include "server/plan.h"
#include "worker/subprocess.h"

namespace asflow {

// One execution to run: a command and where its stdout goes.
struct ExecJob {
  ExecId id = 0;
  SubprocessSpec process;
  // Workspace root and the output path relative to it; an empty output
  // means stdout is counted but not kept.
  std::string workspace;
  std::string output;
  // Shared with the scheduler, which may cancel at any time.
  std::shared_ptr<Canceller> canceller;
  // A built-in handler instead of `process`: "builtin.noop" writes nothing,
  // "builtin.echo" writes `params` (the instance's JSON) and a newline.
  // They cost no process, so they measure the daemon's own overhead.
  std::string builtin;
  std::string params;
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
  bool ok() const { return process.ok() && output_status.ok(); }
  // One line for users: the output error, else the process outcome.
  std::string Describe() const;
};

// Runs ExecJobs somewhere and reports each result exactly once through the
// callback it was built with. Implementations are thread-safe.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void Start(ExecJob job) = 0;
};

// Progress of a running job: uncompressed bytes and lines of stdout so far.
using ProgressFn = std::function<void(ExecId, int64_t bytes, int64_t lines)>;

// A job's command started as process group `pgid`.
using SpawnFn = std::function<void(ExecId, pid_t pgid)>;

// How often a running job reports progress at most.
inline constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);

// Runs one job to completion in the calling thread: path check, atomic
// output, subprocess, commit or abort. Reports progress (if `progress` is
// set) at most every kProgressInterval while output arrives. Shared by
// LocalPool and asflow-worker-style runners.
ExecResult RunJob(const ExecJob& job, const AtomicFileOptions& file_options,
                  const ProgressFn& progress = nullptr, const SpawnFn& spawned = nullptr);

// In-process pool of `threads` runner threads. Thread-safe. The destructor
// cancels queued jobs (never started, no callback) and joins the threads
// after their current jobs end.
class LocalPool : public Runner {
 public:
  LocalPool(int threads, AtomicFileOptions file_options,
            std::function<void(ExecResult)> on_done, ProgressFn on_progress = nullptr,
            SpawnFn on_spawn = nullptr);
  ~LocalPool() override;

  void Start(ExecJob job) override;

 private:
  void Loop();

  const AtomicFileOptions file_options_;
  const std::function<void(ExecResult)> on_done_;
  const ProgressFn on_progress_;
  const SpawnFn on_spawn_;
  absl::Mutex mu_;
  std::deque<ExecJob> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LOCAL_POOL_H_
