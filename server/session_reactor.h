// SessionReactor: one FlowService.Session stream (a code session,
// docs/sessions.md) on gRPC's callback API. Reads op batches one at a time
// and hands each op to the SessionHub (the first must be hello); writes the
// hub's queued events for its session in batches, one write in flight,
// woken by the hub; while the hub says they may wait (Holdable), no sooner
// than write_spacing after the previous write began (an alarm writes them
// then). Leave is called exactly once (read side over, cancel,
// or a protocol error), Finish exactly once after the last write; OnDone
// frees it.
#ifndef ASFLOW_SERVER_SESSION_REACTOR_H_
#define ASFLOW_SERVER_SESSION_REACTOR_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/service.grpc.pb.h"
#include "grpcpp/alarm.h"
#include "server/session_hub.h"

namespace asflow {

class SessionReactor final : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  // `hub` must outlive every reactor (the server waits for live reactors).
  SessionReactor(SessionHub* hub, grpc::CallbackServerContext* ctx);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  // Lets the hub's notification outlive the reactor: OnDone clears
  // `reactor` under `mu` before the reactor is freed.
  struct Alive {
    absl::Mutex mu;
    SessionReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Handles one read batch; an error ends the session.
  absl::Status HandleOps();
  void MaybeWrite();
  void OnSpacingAlarm();
  // Leaves the hub (once) and finishes with `status` once no write is in
  // flight.
  void End(const grpc::Status& status, const std::string& reason);
  void FinishIfDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  SessionHub* const hub_;
  grpc::CallbackServerContext* const ctx_;
  const std::shared_ptr<Alive> alive_ = std::make_shared<Alive>();
  v1::SessionRequest request_;  // the read in flight (reader side only)
  std::shared_ptr<SessionHub::Session> session_;  // set by hello (reader side)

  absl::Mutex mu_;
  v1::SessionResponse response_ ABSL_GUARDED_BY(mu_);  // the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_write_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool alarm_set_ ABSL_GUARDED_BY(mu_) = false;
  // Writes held events once the spacing is over; a new one each time (an
  // alarm is not set again from its own callback).
  std::unique_ptr<grpc::Alarm> alarm_ ABSL_GUARDED_BY(mu_);
  bool joined_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;    // End was called
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // Finish was called
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SESSION_REACTOR_H_
