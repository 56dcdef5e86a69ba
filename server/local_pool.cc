#include "server/local_pool.h"

#include <string.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/strings/match.h"
#include "common/atomic_dir.h"
#include "common/beneath.h"
#include "exec/builtins.h"

namespace asflow {

namespace {

// memchr is vectorised in glibc; std::count over chars is ~8% of a large
// stream's CPU time in the daemon.
int64_t CountNewlines(absl::string_view data) {
  int64_t n = 0;
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end) {
    const void* hit = memchr(p, '\n', end - p);
    if (hit == nullptr) break;
    ++n;
    p = static_cast<const char*>(hit) + 1;
  }
  return n;
}

}  // namespace

StdoutSink::StdoutSink(const ExecJob& job, const AtomicFileOptions& file_options,
                       const ProgressFn& progress)
    : job_(job), file_options_(file_options), progress_(progress),
      next_report_(absl::Now() + kProgressInterval) {}

absl::Status StdoutSink::Open() {
  if (job_.output.empty() || job_.output_dir) return absl::OkStatus();
  absl::StatusOr<UniqueFd> root = OpenRoot(job_.workspace);
  if (!root.ok()) return root.status();
  AtomicFileOptions options = file_options_;
  if (job_.compression_level > 0) {
    options.codec.zstd_level = job_.compression_level;
    options.codec.gzip_level = std::min(job_.compression_level, 9);
  }
  auto opened = AtomicFile::OpenBeneath(root->get(), job_.workspace, job_.output, options);
  if (!opened.ok()) return opened.status();
  file_ = std::move(*opened);
  return absl::OkStatus();
}

absl::Status StdoutSink::Append(absl::string_view chunk) {
  bytes_ += chunk.size();
  lines_ += CountNewlines(chunk);
  if (!chunk.empty()) ends_with_newline_ = chunk.back() == '\n';
  if (progress_ != nullptr) {
    absl::Time now = absl::Now();
    if (now >= next_report_) {
      next_report_ = now + kProgressInterval;
      progress_(job_.id, bytes_, lines_);
    }
  }
  return file_ ? file_->Append(chunk) : absl::OkStatus();
}

void StdoutSink::Finish(bool keep, ExecResult* result) {
  result->bytes = bytes_;
  result->lines = lines_ + (ends_with_newline_ ? 0 : 1);
  if (file_ == nullptr) return;
  if (keep) {
    result->output_status = file_->Commit();
  } else {
    file_->Abort();
  }
  file_.reset();
}

ExecResult RunJob(const ExecJob& job, const AtomicFileOptions& file_options, const RunnerEvents& events) {
  ExecResult result;
  result.id = job.id;
  StdoutSink sink(job, file_options, events.on_progress);
  if (absl::Status s = sink.Open(); !s.ok()) {
    result.output_status = s;
    return result;
  }
  // A directory output: an empty temporary beside it, for the command.
  std::unique_ptr<AtomicDir> dir;
  if (job.output_dir) {
    absl::StatusOr<UniqueFd> root = OpenRoot(job.workspace);
    auto opened = root.ok() ? AtomicDir::OpenBeneath(root->get(), job.workspace, job.output, file_options.sync)
                            : root.status();
    if (!opened.ok()) {
      result.output_status = opened.status();
      return result;
    }
    dir = std::move(*opened);
  }
  auto on_stdout = [&](absl::string_view chunk) { return sink.Append(chunk); };
  if (!job.builtin.empty()) {
    result.process.exit_code = 0;
    if (job.builtin == kBuiltinEcho) {
      result.process.output_status = on_stdout(absl::StrCat(job.params, "\n"));
    }
  } else {
    SubprocessSpec spec = job.process;
    if (dir != nullptr) {
      constexpr absl::string_view kVar = "ASFLOW_OUTPUT_DIR=";
      spec.env.erase(std::remove_if(spec.env.begin(), spec.env.end(),
                                    [&](const std::string& e) { return absl::StartsWith(e, kVar); }),
                     spec.env.end());
      spec.env.push_back(absl::StrCat(kVar, dir->temp_path()));
    }
    if (events.on_spawn != nullptr) spec.on_spawn = [&](pid_t pgid) { events.on_spawn(job.id, pgid); };
    if (events.on_stderr != nullptr) spec.on_stderr = [&](absl::string_view chunk) { events.on_stderr(job.id, chunk); };
    result.process = RunSubprocess(spec, on_stdout, job.canceller.get());
  }
  sink.Finish(result.process.ok(), &result);
  if (dir != nullptr) {
    if (result.process.ok()) {
      result.output_status = dir->Commit();
    } else {
      dir->Abort();
    }
  }
  return result;
}

LocalPool::LocalPool(int threads, AtomicFileOptions file_options, RunnerEvents events)
    : file_options_(std::move(file_options)), events_(std::move(events)) {
  threads = std::max(1, threads);
  threads_.reserve(threads);
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

LocalPool::~LocalPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_.clear();
  }
  for (auto& t : threads_) t.join();
}

void LocalPool::Start(ExecJob job) {
  // Built-in handlers end on their own at once; a canceller holds an fd.
  if (job.builtin.empty()) job.canceller = std::make_shared<Canceller>();
  absl::MutexLock lock(&mu_);
  if (job.canceller != nullptr) cancellers_[job.id] = job.canceller;
  queue_.push_back(std::move(job));
}

void LocalPool::Cancel(ExecId id) {
  absl::MutexLock lock(&mu_);
  auto it = cancellers_.find(id);
  if (it != cancellers_.end()) it->second->Cancel();
}

void LocalPool::Loop() {
  for (;;) {
    ExecJob job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    ExecResult result = RunJob(job, file_options_, events_);
    {
      absl::MutexLock lock(&mu_);
      cancellers_.erase(job.id);
    }
    events_.on_done(std::move(result));
  }
}

}  // namespace asflow
