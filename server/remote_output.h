// RemoteOutput: the output of a job that runs elsewhere (a remote worker,
// a code session) and streams its stdout back in chunks: the atomic output
// file (StdoutSink) opened on first use, each chunk appended, then
// committed or discarded with the result. And CommitPool, the threads that
// finish outputs (fsync, rename, directory fsync: slow I/O kept off the
// streams' reader threads). RemoteOutput is used by one reader thread at a
// time, then handed to a commit thread once; CommitPool is thread-safe.
#ifndef ASFLOW_SERVER_REMOTE_OUTPUT_H_
#define ASFLOW_SERVER_REMOTE_OUTPUT_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/atomic_file.h"
#include "server/local_pool.h"
#include "server/runner.h"

namespace asflow {

class RemoteOutput {
 public:
  // `file_options` and `progress` must outlive it.
  RemoteOutput(ExecJob job, const AtomicFileOptions& file_options, const ProgressFn& progress)
      : job_(std::move(job)), file_options_(file_options), progress_(progress) {}

  const ExecJob& job() const { return job_; }
  // Appends the next chunk (opening the file first). False once writing
  // has failed: more output is pointless, the caller cancels the job.
  bool Append(absl::string_view data);
  // Fails the output with `why` (unless it failed already): nothing more is
  // written and Finish removes it.
  void Refuse(absl::Status why);
  // Uncompressed bytes received so far.
  int64_t bytes() const { return sink_ == nullptr ? 0 : sink_->bytes(); }
  // Ends the output and fills `result`'s bytes, lines and output_status:
  // committed if the job succeeded and every write did (and `check`, a
  // last verdict of the caller's, is OK), else removed.
  void Finish(ExecResult* result, const absl::Status& check = absl::OkStatus());

 private:
  void OpenOnce();

  const ExecJob job_;
  const AtomicFileOptions& file_options_;
  const ProgressFn& progress_;
  std::unique_ptr<StdoutSink> sink_;
  absl::Status status_;  // the first open or write error
};

class CommitPool {
 public:
  explicit CommitPool(int threads);
  // Runs what is queued, then joins.
  ~CommitPool();
  CommitPool(const CommitPool&) = delete;
  CommitPool& operator=(const CommitPool&) = delete;
  void Run(std::function<void()> work);

 private:
  void Loop();
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_REMOTE_OUTPUT_H_
