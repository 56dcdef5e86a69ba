// EventHub: the daemon's progress stream. Assigns strictly increasing
// sequence numbers, keeps the last events in a ring so a watcher can resume
// with from_seq, keeps a view of the runs (counters, running instances) from
// which snapshots are cut, and hands events to subscribers: each event is
// encoded once when published and the same bytes go to every watcher. A
// subscriber is a position in the ring plus a count of the events it has
// not taken yet; one that falls too far behind gets a fresh snapshot
// instead of stalling the publisher or growing memory. A paced subscriber
// gets its events in batches on ticks `batch_interval` apart, so 50 watchers
// of a busy run cost a few messages per second each, not one per event.
// Events are published by the store's writer thread after the state they
// describe is committed. Times (event times, pacing ticks) are read from a
// Clock: the daemon's hub reads the real one and has a pacer thread that
// sleeps until the next tick; tests give a fake clock, move it by hand and
// call Tick (no thread, no sleep). Thread-safe.
#ifndef ASFLOW_SERVER_EVENT_HUB_H_
#define ASFLOW_SERVER_EVENT_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/service.pb.h"
#include "server/clock.h"

namespace asflow {

struct EventHubOptions {
  // Events kept for resumption (Watch from_seq) and for subscribers that
  // have not taken them yet: at least subscriber_queue. ~190 bytes each
  // (an instance event with its task's counters), so 3 MB when full; a
  // watcher that falls further behind, or resumes from further back, gets
  // a snapshot instead.
  size_t ring_size = 16384;
  // Events a subscriber may leave untaken before it is reset to a snapshot.
  size_t subscriber_queue = 16384;
  // Finished runs kept in the view (older ones are served from the store).
  size_t keep_finished_runs = 256;
  // A paced subscriber takes events at most this often (a run's final
  // event, a snapshot and a full batch go at once). The live view redraws
  // every 100 ms, so it loses nothing.
  absl::Duration batch_interval = absl::Milliseconds(100);
  // Where the hub reads the time; must outlive it. nullptr: the real
  // clock, and a pacer thread that notifies paced subscribers on their
  // ticks. Given (tests' fake clock): no thread; the owner calls Tick
  // after moving the clock.
  Clock* clock = nullptr;
};

// A published event, encoded once and shared (immutable) by the ring and
// every subscriber that takes it.
struct EncodedEvent {
  int64_t seq = 0;
  // The run it concerns; 0 for events about every run.
  int64_t run_id = 0;
  // It shows run `run_id` in a final state (a Watch of that run ends after it).
  bool run_final = false;
  std::string bytes;  // the serialised v1::Event
};
using EncodedEventPtr = std::shared_ptr<const EncodedEvent>;

class EventHub {
 public:
  class Subscription;

  explicit EventHub(const EventHubOptions& options = {});
  ~EventHub();
  EventHub(const EventHub&) = delete;
  EventHub& operator=(const EventHub&) = delete;

  // Assigns seq and time, applies the event to the view, encodes and
  // buffers it. Never blocks on a subscriber.
  void Publish(v1::Event event);

  // Subscribes to events of `run_id` (0: all runs). The first event taken
  // is a snapshot, unless from_seq > 0 and every event after from_seq is
  // still buffered, in which case those events come first. `notify` is
  // called (without hub locks held, from the publishing thread or the hub's
  // pacing thread) when events become available after a Pop returned
  // false. A `paced` subscriber is handed events at most every
  // batch_interval, or every `interval` if that is longer (up to
  // kMaxBatchInterval).
  std::shared_ptr<Subscription> Subscribe(int64_t run_id, int64_t from_seq, std::function<void()> notify,
                                          bool paced = false, absl::Duration interval = absl::ZeroDuration());
  static constexpr absl::Duration kMaxBatchInterval = absl::Seconds(1);
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);
  // Appends to *out the next events for `sub`, in seq order: a snapshot
  // alone, or up to `max_events` events (and beyond `max_bytes` only for the
  // first); it stops after an event that ends `sub`'s run. False if none is
  // ready (then `notify` fires when some are).
  bool PopBatch(Subscription* sub, size_t max_events, size_t max_bytes, std::vector<EncodedEventPtr>* out);
  // The next event for `sub`, decoded; false if none is ready.
  bool Pop(Subscription* sub, v1::Event* out);
  // The encoded v1::Event whose `batch` holds `events`' bytes, in order: a
  // batch message. Paced watchers take their batches on the same ticks, so
  // most take the same events: the last batch is kept, and a call with the
  // same events (the same objects) returns the same bytes instead of
  // encoding them again for each watcher.
  std::shared_ptr<const std::string> EncodeBatch(const std::vector<EncodedEventPtr>& events);

  // The view's copy of a run, if it is there (active or recently finished).
  std::optional<v1::Run> FindRun(int64_t run_id);
  // The view's runs that are still running, by id.
  std::vector<v1::Run> ActiveRuns();
  int64_t last_seq();
  size_t subscriber_count();

  // Called with every event Publish applies, in seq order, under the hub's
  // lock: it must be quick and must not call the hub. Add observers before
  // events are published (e.g. the daemon's metrics).
  using Observer = std::function<void(const v1::Event&)>;
  void AddObserver(Observer observer);

  // Notifies the paced subscribers whose next batch is due by the clock
  // (what the pacer thread does on each tick). For a hub given a clock.
  void Tick();

  // Counts for /metrics.
  struct Stats {
    size_t subscribers = 0;
    size_t ring_events = 0;
    int64_t published = 0;  // events published by this hub
    // Snapshots handed out in place of events a subscriber had not taken
    // (it fell behind, or resumed from too far back).
    int64_t gaps = 0;
    int64_t snapshots = 0;  // every snapshot handed out, gaps included
  };
  Stats stats();

 private:
  void ApplyLocked(const v1::Event& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Event SnapshotLocked(int64_t run_id, bool gap) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static bool Matches(const EncodedEvent& event, int64_t run_id);
  // The first multiple of `interval` (since the epoch) after `now`: every
  // paced subscriber with the same interval has its next batch due on the
  // same ticks, so the pacer wakes once per tick for all of them and their
  // writes go out together (and share one encoded batch).
  static absl::Time NextTick(absl::Time now, absl::Duration interval);
  // The notifications of paced subscribers due by `now`, whose timers it
  // clears; *next gets the earliest later one (InfiniteFuture if none).
  std::vector<std::function<void()>> DueLocked(absl::Time now, absl::Time* next)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The pacer thread (real clock only): notifies paced subscribers whose
  // wait is over.
  void PaceLoop();

  const EventHubOptions options_;
  RealClock real_clock_;
  Clock* const clock_;  // options_.clock or &real_clock_
  absl::Mutex mu_;
  int64_t seq_ ABSL_GUARDED_BY(mu_);
  // Consecutive seqs: ring_[i]->seq == ring_.front()->seq + i.
  std::deque<EncodedEventPtr> ring_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, v1::Run> runs_ ABSL_GUARDED_BY(mu_);
  std::deque<int64_t> finished_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<int64_t, int64_t>, v1::Instance> running_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscription>> subs_ ABSL_GUARDED_BY(mu_);
  std::vector<Observer> observers_ ABSL_GUARDED_BY(mu_);
  int64_t published_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t gaps_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t snapshots_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // The pacer sleeps until pacer_deadline_ unless pacer_wake_ is set (a
  // wake-up due earlier, or stop).
  absl::Time pacer_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool pacer_wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread pacer_;
  // EncodeBatch's last batch: its events (kept alive, so their addresses
  // identify them) and their encoding.
  absl::Mutex batch_mu_;
  std::vector<EncodedEventPtr> batch_events_ ABSL_GUARDED_BY(batch_mu_);
  std::shared_ptr<const std::string> batch_bytes_ ABSL_GUARDED_BY(batch_mu_);
};

// One watcher's place in the stream. Opaque outside the hub.
class EventHub::Subscription {
 private:
  friend class EventHub;
  int64_t run_id = 0;
  std::function<void()> notify;
  bool paced = false;
  absl::Duration interval;       // paced: at most one batch per interval
  int64_t next_seq = 0;          // the first event not taken yet
  size_t pending = 0;            // matching events published since, not taken
  bool needs_snapshot = false;   // start, or reset after falling behind
  bool gap = false;              // the next snapshot replaces lost events
  bool waiting = false;          // Pop found nothing: notify on next event
  bool urgent = false;           // its run's final event is pending: no pacing
  absl::Time not_before = absl::InfinitePast();  // paced: the next batch
  bool timer = false;            // paced: the pacer notifies at not_before
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_EVENT_HUB_H_
