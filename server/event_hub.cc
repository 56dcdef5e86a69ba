#include "server/event_hub.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace asflow {

EventHub::EventHub(const EventHubOptions& options) : options_(options) {
  // Sequence numbers start from the clock (x1000), so they keep increasing
  // across daemon restarts and a watcher's from_seq from before a restart
  // can never be mistaken for a position in the new stream.
  seq_ = absl::ToUnixMillis(absl::Now()) * 1000;
}

bool EventHub::Matches(const v1::Event& event, int64_t run_id) {
  if (run_id == 0) return true;
  switch (event.body_case()) {
    case v1::Event::kRun:
      return event.run().run().id() == run_id;
    case v1::Event::kInstance:
      return event.instance().instance().run_id() == run_id;
    default:
      return true;
  }
}

void EventHub::ApplyLocked(const v1::Event& event) {
  if (event.has_run()) {
    const v1::Run& run = event.run().run();
    bool was_known = runs_.count(run.id()) > 0;
    bool was_finished = was_known && runs_[run.id()].state() != v1::RUN_RUNNING;
    runs_[run.id()] = run;
    if (run.state() != v1::RUN_RUNNING && !was_finished) {
      finished_.push_back(run.id());
      while (finished_.size() > options_.keep_finished_runs) {
        runs_.erase(finished_.front());
        finished_.pop_front();
      }
    }
    return;
  }
  if (!event.has_instance()) return;
  const v1::Instance& inst = event.instance().instance();
  auto run = runs_.find(inst.run_id());
  if (run != runs_.end() && event.instance().has_counters()) {
    const v1::TaskCounters& counters = event.instance().counters();
    auto* tasks = run->second.mutable_tasks();
    auto it = std::find_if(tasks->begin(), tasks->end(),
                           [&](const v1::TaskCounters& t) { return t.task() == counters.task(); });
    if (it != tasks->end()) {
      *it = counters;
    } else {
      *tasks->Add() = counters;
    }
  }
  auto key = std::make_pair(inst.run_id(), inst.seq());
  switch (event.instance().kind()) {
    case v1::InstanceEvent::STARTED:
    case v1::InstanceEvent::PROGRESS:
      running_[key] = inst;
      break;
    default:  // finished, or queued again for a retry
      running_.erase(key);
  }
}

void EventHub::Publish(v1::Event event) {
  std::vector<std::function<void()>> to_notify;
  {
    absl::MutexLock lock(&mu_);
    event.set_seq(++seq_);
    event.set_time_ms(absl::ToUnixMillis(absl::Now()));
    ApplyLocked(event);
    if (event.has_run() && event.run().run().state() != v1::RUN_RUNNING) {
      // A finished run leaves nothing running behind in the view.
      int64_t id = event.run().run().id();
      running_.erase(running_.lower_bound({id, INT64_MIN}), running_.upper_bound({id, INT64_MAX}));
    }
    EventPtr shared = std::make_shared<const v1::Event>(std::move(event));
    const v1::Event& published = *shared;
    ring_.push_back(shared);
    if (ring_.size() > options_.ring_size) ring_.pop_front();
    for (const auto& sub : subs_) {
      if (!Matches(published, sub->run_id)) continue;
      if (!sub->needs_snapshot) {
        if (sub->queue.size() >= options_.subscriber_queue) {
          // Too slow: drop its backlog; it gets a snapshot instead.
          sub->queue.clear();
          sub->needs_snapshot = true;
          sub->gap = true;
        } else {
          sub->queue.push_back(shared);
        }
      }
      if (sub->waiting) {
        sub->waiting = false;
        to_notify.push_back(sub->notify);
      }
    }
  }
  for (auto& fn : to_notify) fn();
}

v1::Event EventHub::SnapshotLocked(int64_t run_id, bool gap) {
  v1::Event event;
  event.set_seq(seq_);
  event.set_time_ms(absl::ToUnixMillis(absl::Now()));
  v1::Snapshot* snap = event.mutable_snapshot();
  snap->set_gap(gap);
  for (const auto& [id, run] : runs_) {
    if (run_id == 0 || id == run_id) *snap->add_runs() = run;
  }
  for (const auto& [key, inst] : running_) {
    if (run_id == 0 || key.first == run_id) *snap->add_running() = inst;
  }
  return event;
}

std::shared_ptr<EventHub::Subscription> EventHub::Subscribe(int64_t run_id, int64_t from_seq,
                                                            std::function<void()> notify) {
  auto sub = std::make_shared<Subscription>();
  sub->run_id = run_id;
  sub->notify = std::move(notify);
  absl::MutexLock lock(&mu_);
  bool replayable = from_seq > 0 && from_seq <= seq_ &&
                    (from_seq == seq_ || (!ring_.empty() && ring_.front()->seq() <= from_seq + 1));
  if (replayable) {
    for (const EventPtr& event : ring_) {
      if (event->seq() > from_seq && Matches(*event, run_id)) sub->queue.push_back(event);
    }
  } else {
    sub->needs_snapshot = true;
    sub->gap = from_seq > 0;
  }
  subs_.push_back(sub);
  return sub;
}

void EventHub::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

bool EventHub::Pop(Subscription* sub, v1::Event* out) {
  absl::MutexLock lock(&mu_);
  if (sub->needs_snapshot) {
    *out = SnapshotLocked(sub->run_id, sub->gap);
    sub->needs_snapshot = false;
    sub->gap = false;
    return true;
  }
  if (sub->queue.empty()) {
    sub->waiting = true;
    return false;
  }
  *out = *sub->queue.front();  // the reactor writes its own copy
  sub->queue.pop_front();
  return true;
}

std::optional<v1::Run> EventHub::FindRun(int64_t run_id) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

int64_t EventHub::last_seq() {
  absl::MutexLock lock(&mu_);
  return seq_;
}

size_t EventHub::subscriber_count() {
  absl::MutexLock lock(&mu_);
  return subs_.size();
}

}  // namespace asflow
