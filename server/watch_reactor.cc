#include "server/watch_reactor.h"

namespace asflow {

WatchReactor::WatchReactor(EventHub* hub, const v1::WatchRequest& request,
                           std::unique_ptr<v1::Event> initial)
    : hub_(hub), run_id_(request.run_id()), batch_(request.batch()) {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = this;
  }
  if (initial != nullptr) {
    absl::MutexLock lock(&mu_);
    event_ = std::move(*initial);
    writing_ = true;
    last_ = IsFinal(event_);
    if (!last_) {
      sub_ = hub_->Subscribe(run_id_, event_.seq(), Notifier(), batch_);
    }
    StartWrite(&event_);
    return;
  }
  sub_ = hub_->Subscribe(run_id_, request.from_seq(), Notifier(), batch_);
  MaybeWrite();
}

std::function<void()> WatchReactor::Notifier() {
  return [weak = std::weak_ptr<Alive>(alive_)] {
    std::shared_ptr<Alive> alive = weak.lock();
    if (alive == nullptr) return;
    absl::MutexLock lock(&alive->mu);
    if (alive->reactor != nullptr) alive->reactor->MaybeWrite();
  };
}

bool WatchReactor::IsFinal(const v1::Event& event) const {
  if (run_id_ == 0) return false;
  if (event.has_run()) return event.run().run().state() != v1::RUN_RUNNING;
  if (event.has_snapshot()) {
    for (const auto& run : event.snapshot().runs()) {
      if (run.id() == run_id_) return run.state() != v1::RUN_RUNNING;
    }
  }
  return false;
}

void WatchReactor::MaybeWrite() {
  absl::MutexLock lock(&mu_);
  if (writing_ || finished_ || sub_ == nullptr) return;
  taken_.clear();
  if (!hub_->PopBatch(sub_.get(), batch_ ? kBatchEvents : 1, kBatchBytes, &taken_)) {
    return;  // the hub notifies us later
  }
  event_.Clear();
  if (batch_) {
    for (const EncodedEventPtr& event : taken_) event_.add_batch(event->bytes);
  } else if (!event_.ParseFromString(taken_.front()->bytes)) {
    finished_ = true;
    Finish(grpc::Status(grpc::StatusCode::INTERNAL, "undecodable event"));
    return;
  }
  const EncodedEvent& back = *taken_.back();
  last_ = run_id_ != 0 && back.run_final && back.run_id == run_id_;
  taken_.clear();
  writing_ = true;
  StartWrite(&event_);
}

void WatchReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (finished_) return;
    if (!ok || last_) {
      finished_ = true;
      Finish(ok ? grpc::Status::OK : grpc::Status(grpc::StatusCode::UNAVAILABLE, "watch stream broken"));
      return;
    }
  }
  MaybeWrite();
}

void WatchReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  Finish(grpc::Status::CANCELLED);
}

void WatchReactor::OnDone() {
  if (sub_ != nullptr) hub_->Unsubscribe(sub_);
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = nullptr;
  }
  delete this;  // gRPC's contract for callback reactors: freed in OnDone
}

}  // namespace asflow
