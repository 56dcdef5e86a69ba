// LocalPool, the daemon's in-process pool: a fixed set of threads (one per
// slot, never one per instance) that run commands with the exec library and
// stream their stdout into atomic output files; and StdoutSink, where a
// job's output goes wherever it runs (also for remote workers' chunks).
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
#include "server/runner.h"

namespace asflow {

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
// subprocess or built-in handler, then commit or abort. `events`' on_spawn
// and on_progress are called if set.
ExecResult RunJob(const ExecJob& job, const AtomicFileOptions& file_options, const RunnerEvents& events);

// In-process pool of `threads` runner threads. Thread-safe. The destructor
// drops queued jobs (never started, no callback) and joins the threads
// after their current jobs end.
class LocalPool : public Runner {
 public:
  // `events.on_done` gets every started job's result; on_progress and
  // on_spawn are optional (on_pool_slots is not used: the pool's size is
  // fixed).
  LocalPool(int threads, AtomicFileOptions file_options, RunnerEvents events);
  ~LocalPool() override;

  void Start(ExecJob job) override;
  void Cancel(ExecId id) override;

 private:
  void Loop();

  const AtomicFileOptions file_options_;
  const RunnerEvents events_;
  absl::Mutex mu_;
  std::deque<ExecJob> queue_ ABSL_GUARDED_BY(mu_);
  // Queued and running jobs' cancellers.
  absl::flat_hash_map<ExecId, std::shared_ptr<Canceller>> cancellers_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LOCAL_POOL_H_
