// EventHub: the daemon's progress stream. Assigns strictly increasing
// sequence numbers, keeps the last events in a ring so a watcher can resume
// with from_seq, keeps a view of the runs (counters, running instances) from
// which snapshots are cut, and fans events out to subscribers through
// bounded queues: a subscriber that falls behind gets a fresh snapshot
// instead of stalling the publisher or growing memory. Events are published
// by the store's writer thread after the state they describe is committed.
// Thread-safe.
#ifndef ASFLOW_SERVER_EVENT_HUB_H_
#define ASFLOW_SERVER_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.pb.h"

namespace asflow {

struct EventHubOptions {
  // Events kept for resumption (Watch from_seq).
  size_t ring_size = 65536;
  // Events queued per subscriber before it is reset to a snapshot.
  size_t subscriber_queue = 16384;
  // Finished runs kept in the view (older ones are served from the store).
  size_t keep_finished_runs = 256;
};

class EventHub {
 public:
  class Subscription;

  explicit EventHub(const EventHubOptions& options = {});
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Assigns seq and time, applies the event to the view, buffers it and
  // queues it for matching subscribers. Never blocks on a subscriber.
  void Publish(v1::Event event);

  // Subscribes to events of `run_id` (0: all runs). The first event popped
  // is a snapshot, unless from_seq > 0 and every event after from_seq is
  // still buffered, in which case those events come first. `notify` is
  // called (without hub locks held, from the publishing thread) when an
  // event becomes available after Pop returned false.
  std::shared_ptr<Subscription> Subscribe(int64_t run_id, int64_t from_seq,
                                          std::function<void()> notify);
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);
  // Moves the next event for `sub` into *out; false if none is ready (then
  // `notify` fires when one is).
  bool Pop(Subscription* sub, v1::Event* out);

  // The view's copy of a run, if it is there (active or recently finished).
  std::optional<v1::Run> FindRun(int64_t run_id);
  int64_t last_seq();
  size_t subscriber_count();

 private:
  void ApplyLocked(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Event SnapshotLocked(int64_t run_id, bool gap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool Matches(const v1::Event& event, int64_t run_id);

  const EventHubOptions options_;
  absl::Mutex mu_;
  int64_t seq_ ABSL_GUARDED_BY(mu_);
  // Events are immutable once published and shared by the ring and every
  // subscriber queue: 50 watchers cost pointers, not 50 copies.
  using EventPtr = std::shared_ptr<const v1::Event>;
  std::deque<EventPtr> ring_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, v1::Run> runs_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> finished_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int64_t, int64_t>, v1::Instance> running_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscription>> subs_ ABSL_GUARDED_BY(mu_);
};

// One watcher's queue. Opaque outside the hub.
class EventHub::Subscription {
 private:
  friend class EventHub;
  int64_t run_id = 0;
  std::function<void()> notify;
  std::deque<std::shared_ptr<const v1::Event>> queue;
  bool needs_snapshot = false;  // start, or reset after falling behind
  bool gap = false;             // the next snapshot replaces lost events
  bool waiting = false;         // Pop found nothing: notify on next event
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_EVENT_HUB_H_
