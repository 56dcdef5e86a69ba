#include "server/watch_reactor.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "grpcpp/support/slice.h"
#include "server/tsan_hand_off.h"

namespace asflow {
namespace {

// A one-slice buffer of `bytes`, which `owner` keeps alive until gRPC
// releases the slice (after the write).
template <typename T>
grpc::ByteBuffer SharedBuffer(std::shared_ptr<const T> owner, const std::string& bytes) {
  auto* keep = new std::shared_ptr<const T>(std::move(owner));
  grpc::Slice slice(const_cast<char*>(bytes.data()), bytes.size(),
                    [](void* p) { delete static_cast<std::shared_ptr<const T>*>(p); }, keep);
  return grpc::ByteBuffer(&slice, 1);
}

}  // namespace

WatchReactor::WatchReactor(EventHub* hub, const v1::WatchRequest& request,
                           std::unique_ptr<v1::Event> final_snapshot)
    : hub_(hub),
      run_id_(request.run_id()),
      batch_(request.batch()) {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = this;
  }
  if (final_snapshot != nullptr) {
    absl::MutexLock lock(&mu_);
    auto bytes = std::make_shared<const std::string>(final_snapshot->SerializeAsString());
    buffer_ = SharedBuffer(bytes, *bytes);
    writing_ = true;
    last_ = true;
    TsanRelease(&edge_.published);
    TsanRelease(&edge_.write_started);
    StartWrite(&buffer_);
    return;
  }
  sub_ = hub_->Subscribe(run_id_, request.from_seq(), Notifier(), batch_,
                         absl::Milliseconds(request.batch_interval_ms()));  // the hub clamps it
  TsanRelease(&edge_.published);  // before MaybeWrite may start a write
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

void WatchReactor::MaybeWrite() {
  absl::MutexLock lock(&mu_);
  if (writing_ || finished_ || sub_ == nullptr) return;
  taken_.clear();
  if (!hub_->PopBatch(sub_.get(), batch_ ? kBatchEvents : 1, kBatchBytes, &taken_)) {
    return;  // the hub notifies us later
  }
  if (batch_) {
    std::shared_ptr<const std::string> bytes = hub_->EncodeBatch(taken_);
    buffer_ = SharedBuffer(bytes, *bytes);
  } else {
    buffer_ = SharedBuffer(taken_.front(), taken_.front()->bytes);
  }
  const EncodedEvent& back = *taken_.back();
  last_ = run_id_ != 0 && back.run_final && back.run_id == run_id_;
  taken_.clear();
  writing_ = true;
  TsanRelease(&edge_.write_started);
  StartWrite(&buffer_);
}

void WatchReactor::OnWriteDone(bool ok) {
  TsanAcquire(&edge_.published);
  TsanAcquire(&edge_.write_started);
  absl::Cleanup ended = [this] { TsanRelease(&edge_.reaction_ended); };
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    buffer_.Clear();  // lets go of the shared bytes
    if (finished_) return;
    if (!ok || last_) {
      finished_ = true;
      TsanRelease(&edge_.finish_started);
      Finish(ok ? grpc::Status::OK : grpc::Status(grpc::StatusCode::UNAVAILABLE, "watch stream broken"));
      return;
    }
  }
  MaybeWrite();
}

void WatchReactor::OnCancel() {
  TsanAcquire(&edge_.published);
  absl::Cleanup ended = [this] { TsanRelease(&edge_.reaction_ended); };
  absl::MutexLock lock(&mu_);
  if (finished_) return;
  finished_ = true;
  TsanRelease(&edge_.finish_started);
  Finish(grpc::Status::CANCELLED);
}

void WatchReactor::OnDone() {
  // After every reaction and the end of every operation (gRPC's contract).
  TsanAcquire(&edge_.published);
  TsanAcquire(&edge_.write_started);
  TsanAcquire(&edge_.finish_started);
  TsanAcquire(&edge_.reaction_ended);
  if (sub_ != nullptr) hub_->Unsubscribe(sub_);
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = nullptr;
  }
  delete this;  // gRPC's contract for callback reactors: freed in OnDone
}

}  // namespace asflow
