// WatchReactor: one Watch stream. Takes events from its EventHub
// subscription with at most one write in flight; when the hub has nothing,
// it waits for the hub's notification. A watcher that asked for batches
// gets every event available (paced by the hub) in one message; others get
// one event per message. Either way the message is bytes the hub encoded
// (an event once, a batch once for every watcher that takes the same
// events), written as raw gRPC slices that share those bytes: nothing is
// copied or serialised per watcher. A stream
// for one run finishes (OK) after the event that shows the run in a final
// state. Finish is called exactly once; OnDone unsubscribes and frees the
// reactor.
#ifndef ASFLOW_SERVER_WATCH_REACTOR_H_
#define ASFLOW_SERVER_WATCH_REACTOR_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/service.grpc.pb.h"
#include "grpcpp/support/byte_buffer.h"
#include "server/event_hub.h"

namespace asflow {

// The Watch method is registered raw (FlowServiceImpl), so messages are
// grpc::ByteBuffers holding encoded v1::Events.
class WatchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // Limits of one batch message (well under gRPC's 4 MB default).
  static constexpr size_t kBatchEvents = 2048;
  static constexpr size_t kBatchBytes = 512 * 1024;

  // `hub` must outlive every reactor (the server waits for live reactors
  // before the hub is destroyed). `final_snapshot`, if set, is the stored
  // state of a finished run the hub no longer holds: it is written and the
  // stream ends.
  WatchReactor(EventHub* hub, const v1::WatchRequest& request, std::unique_ptr<v1::Event> final_snapshot);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void MaybeWrite();

  // Lets the hub's notification outlive the reactor safely: OnDone clears
  // `reactor` under `mu` before the reactor is freed.
  struct Alive {
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };
  std::function<void()> Notifier();

  EventHub* const hub_;
  const int64_t run_id_;
  const bool batch_;
  const std::shared_ptr<Alive> alive_ = std::make_shared<Alive>();
  std::shared_ptr<EventHub::Subscription> sub_;
  absl::Mutex mu_;
  grpc::ByteBuffer buffer_ ABSL_GUARDED_BY(mu_);  // the write in flight
  std::vector<EncodedEventPtr> taken_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool last_ ABSL_GUARDED_BY(mu_) = false;  // finish after this write
  // Addresses naming the hand-offs through gRPC's core that TSan cannot
  // see (server/tsan_hand_off.h): the reactor published to gRPC's
  // threads, a write or Finish started, a reaction over (OnDone comes
  // after). Never read or written.
  struct {
    char published, write_started, finish_started, reaction_ended;
  } edge_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_WATCH_REACTOR_H_
