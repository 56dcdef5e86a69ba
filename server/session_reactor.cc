#include "server/session_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/wake_batch.h"
#include "rpc/status.h"

namespace asflow {

SessionReactor::SessionReactor(SessionHub* hub, grpc::CallbackServerContext* ctx) : hub_(hub), ctx_(ctx) {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = this;
  }
  StartRead(&request_);
}

absl::Status SessionReactor::HandleOps() {
  for (const v1::SessionOp& op : request_.ops()) {
    if (session_ == nullptr) {
      if (!op.has_hello()) return absl::InvalidArgumentError("the first op must be hello");
      std::function<void()> notify = [weak = std::weak_ptr<Alive>(alive_)] {
        std::shared_ptr<Alive> alive = weak.lock();
        if (alive == nullptr) return;
        absl::MutexLock lock(&alive->mu);
        if (alive->reactor != nullptr) alive->reactor->MaybeWrite();
      };
      auto session = hub_->Join(op.hello(), ctx_->peer(), std::move(notify), [ctx = ctx_] { ctx->TryCancel(); });
      if (!session.ok()) return session.status();
      session_ = std::move(*session);
      {
        absl::MutexLock lock(&mu_);
        joined_ = true;
      }
      MaybeWrite();  // the welcome
      continue;
    }
    if (absl::Status s = hub_->Handle(*session_, op); !s.ok()) return s;
  }
  return absl::OkStatus();
}

void SessionReactor::OnReadDone(bool ok) {
  if (!ok) {
    // The client closed its side (or the stream broke): its runs detach;
    // what is queued for it is still written.
    return End(grpc::Status::OK, "the client closed its stream");
  }
  absl::Status handled;
  {
    // What the request's ops queue for this (or another) session's writer
    // goes out together once they are handled.
    WakeBatch batch;
    handled = HandleOps();
  }
  if (absl::Status s = handled; !s.ok()) {
    return End(ToGrpcStatus(s), absl::StrCat("protocol error: ", s.message()));
  }
  request_.Clear();
  StartRead(&request_);
}

void SessionReactor::MaybeWrite() {
  absl::MutexLock lock(&mu_);
  if (writing_ || finished_ || !joined_ || alarm_set_) return;
  const absl::Time now = absl::Now();
  const absl::Duration spacing = hub_->options().write_spacing;
  if (!ending_ && now < last_write_ + spacing && hub_->Holdable(*session_)) {
    // The alarm's callback runs on a gRPC thread, possibly after OnDone:
    // it reaches the reactor through alive_, as the hub's notify does.
    alarm_set_ = true;
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(absl::ToChronoTime(last_write_ + spacing), [weak = std::weak_ptr<Alive>(alive_)](bool) {
      std::shared_ptr<Alive> alive = weak.lock();
      if (alive == nullptr) return;
      absl::MutexLock lock(&alive->mu);
      if (alive->reactor != nullptr) alive->reactor->OnSpacingAlarm();
    });
    return;
  }
  response_.Clear();
  if (!hub_->TakeOutgoing(*session_, &response_)) {
    FinishIfDoneLocked();
    return;
  }
  writing_ = true;
  last_write_ = now;
  StartWrite(&response_);
}

void SessionReactor::OnSpacingAlarm() {
  {
    absl::MutexLock lock(&mu_);
    alarm_set_ = false;
  }
  MaybeWrite();
}

void SessionReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok && !finished_) {
      finished_ = true;
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "session stream broken"));
      return;
    }
  }
  MaybeWrite();
}

void SessionReactor::End(const grpc::Status& status, const std::string& reason) {
  {
    absl::MutexLock lock(&mu_);
    if (ending_) return;
    ending_ = true;
    status_ = status;
  }
  if (session_ != nullptr) hub_->Leave(*session_, reason);
  absl::MutexLock lock(&mu_);
  FinishIfDoneLocked();
}

void SessionReactor::FinishIfDoneLocked() {
  // After End, once the queued events are out (a protocol error finishes at
  // once: the client gets the status, not more events).
  if (!ending_ || finished_ || writing_) return;
  if (status_.ok() && joined_ && session_ != nullptr) {
    v1::SessionResponse rest;
    if (hub_->TakeOutgoing(*session_, &rest)) {
      response_ = std::move(rest);
      writing_ = true;
      StartWrite(&response_);
      return;
    }
  }
  finished_ = true;
  Finish(status_);
}

void SessionReactor::OnCancel() {
  End(grpc::Status::CANCELLED, "its stream was cancelled");
  absl::MutexLock lock(&mu_);
  if (!finished_) {
    finished_ = true;
    Finish(grpc::Status::CANCELLED);
  }
}

void SessionReactor::OnDone() {
  {
    absl::MutexLock lock(&alive_->mu);
    alive_->reactor = nullptr;
  }
  delete this;  // gRPC's contract for callback reactors: freed in OnDone
}

}  // namespace asflow
