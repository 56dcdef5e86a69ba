#include "server/remote_output.h"

#include <algorithm>
#include <utility>

namespace asflow {

void RemoteOutput::OpenOnce() {
  if (sink_ != nullptr) return;
  sink_ = std::make_unique<StdoutSink>(job_, file_options_, progress_);
  status_ = sink_->Open();
}

bool RemoteOutput::Append(absl::string_view data) {
  OpenOnce();
  if (status_.ok()) status_ = sink_->Append(data);
  return status_.ok();
}

void RemoteOutput::Refuse(absl::Status why) {
  if (status_.ok()) status_ = std::move(why);
}

void RemoteOutput::Finish(ExecResult* result, const absl::Status& check) {
  // A job that sent nothing still makes its (empty) output if it succeeded;
  // one that failed or was lost before sending anything makes no file.
  if (sink_ != nullptr || (check.ok() && result->process.ok())) OpenOnce();
  absl::Status output = !status_.ok() ? status_ : check;
  if (sink_ == nullptr) {
    if (!output.ok()) result->output_status = output;
    return;
  }
  sink_->Finish(output.ok() && result->process.ok(), result);
  if (!output.ok()) result->output_status = output;
}

CommitPool::CommitPool(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Loop(); });
}

CommitPool::~CommitPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (auto& t : threads_) t.join();  // after the queue is empty
}

void CommitPool::Run(std::function<void()> work) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(work));
}

void CommitPool::Loop() {
  for (;;) {
    std::function<void()> work;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, nothing left
      work = std::move(queue_.front());
      queue_.pop_front();
    }
    work();
  }
}

}  // namespace asflow
