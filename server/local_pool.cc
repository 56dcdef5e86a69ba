#include "server/local_pool.h"

#include <string.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/safe_path.h"

namespace asflow {

std::string ExecResult::Describe() const {
  if (!output_status.ok()) return std::string(output_status.message());
  return process.Describe();
}

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

ExecResult RunJob(const ExecJob& job, const AtomicFileOptions& file_options,
                  const ProgressFn& progress, const SpawnFn& spawned) {
  ExecResult result;
  result.id = job.id;
  std::unique_ptr<AtomicFile> file;
  if (!job.output.empty()) {
    // Checked here, just before writing, so a symlink planted after submit
    // cannot redirect the output outside the workspace.
    absl::Status inside = CheckInsideWorkspace(job.workspace, job.output);
    if (!inside.ok()) {
      result.output_status = inside;
      return result;
    }
    auto opened = AtomicFile::Open(absl::StrCat(job.workspace, "/", job.output), file_options);
    if (!opened.ok()) {
      result.output_status = opened.status();
      return result;
    }
    file = std::move(*opened);
  }
  bool ends_with_newline = true;
  absl::Time next_report = absl::Now() + kProgressInterval;
  auto on_stdout = [&](absl::string_view chunk) -> absl::Status {
    result.bytes += chunk.size();
    result.lines += CountNewlines(chunk);
    if (!chunk.empty()) ends_with_newline = chunk.back() == '\n';
    if (progress != nullptr) {
      absl::Time now = absl::Now();
      if (now >= next_report) {
        next_report = now + kProgressInterval;
        progress(job.id, result.bytes, result.lines);
      }
    }
    return file ? file->Append(chunk) : absl::OkStatus();
  };
  if (!job.builtin.empty()) {
    result.process.exit_code = 0;
    if (job.builtin == "builtin.echo") {
      result.process.output_status = on_stdout(absl::StrCat(job.params, "\n"));
    }
  } else {
    SubprocessSpec spec = job.process;
    if (spawned != nullptr) spec.on_spawn = [&](pid_t pgid) { spawned(job.id, pgid); };
    result.process = RunSubprocess(spec, on_stdout, job.canceller.get());
  }
  if (!ends_with_newline) ++result.lines;
  if (file) {
    if (result.process.ok()) {
      result.output_status = file->Commit();
    } else {
      file->Abort();
    }
  }
  return result;
}

LocalPool::LocalPool(int threads, AtomicFileOptions file_options,
                     std::function<void(ExecResult)> on_done, ProgressFn on_progress,
                     SpawnFn on_spawn)
    : file_options_(std::move(file_options)),
      on_done_(std::move(on_done)),
      on_progress_(std::move(on_progress)),
      on_spawn_(std::move(on_spawn)) {
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
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(job));
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
    on_done_(RunJob(job, file_options_, on_progress_, on_spawn_));
  }
}

}  // namespace asflow
