#include "server/event_hub.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace asflow {

EventHub::EventHub(const EventHubOptions& options)
    : options_(options), clock_(options.clock != nullptr ? options.clock : &real_clock_) {
  // Sequence numbers start from the clock (x1000), so they keep increasing
  // across daemon restarts and a watcher's from_seq from before a restart
  // can never be mistaken for a position in the new stream.
  seq_ = absl::ToUnixMillis(clock_->Now()) * 1000;
  // A given clock is moved by its owner, who calls Tick: a thread sleeping
  // in real time would not follow it.
  if (options.clock == nullptr) pacer_ = std::thread([this] { PaceLoop(); });
}

EventHub::~EventHub() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    pacer_wake_ = true;
  }
  if (pacer_.joinable()) pacer_.join();
}

absl::Time EventHub::NextTick(absl::Time now, absl::Duration interval) {
  int64_t step = absl::ToInt64Nanoseconds(interval);
  if (step <= 0) return now;
  return absl::FromUnixNanos((absl::ToUnixNanos(now) / step + 1) * step);
}

bool EventHub::Matches(const EncodedEvent& event, int64_t run_id) {
  return run_id == 0 || event.run_id == 0 || event.run_id == run_id;
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
    event.set_time_ms(absl::ToUnixMillis(clock_->Now()));
    ApplyLocked(event);
    ++published_;
    for (const Observer& observer : observers_) observer(event);
    auto encoded = std::make_shared<EncodedEvent>();
    encoded->seq = event.seq();
    if (event.has_run()) {
      encoded->run_id = event.run().run().id();
      encoded->run_final = event.run().run().state() != v1::RUN_RUNNING;
      if (encoded->run_final) {
        // A finished run leaves nothing running behind in the view.
        int64_t id = encoded->run_id;
        running_.erase(running_.lower_bound({id, INT64_MIN}), running_.upper_bound({id, INT64_MAX}));
      }
    } else if (event.has_instance()) {
      encoded->run_id = event.instance().instance().run_id();
    }
    event.SerializeToString(&encoded->bytes);
    ring_.push_back(encoded);
    if (ring_.size() > options_.ring_size) ring_.pop_front();
    for (const auto& sub : subs_) {
      if (!Matches(*encoded, sub->run_id)) continue;
      if (!sub->needs_snapshot && ++sub->pending > options_.subscriber_queue) {
        // Too slow: skip its backlog; it gets a snapshot instead.
        sub->needs_snapshot = true;
        sub->gap = true;
        sub->pending = 0;
      }
      bool ends = encoded->run_final && encoded->run_id == sub->run_id;
      if (ends) sub->urgent = true;
      if (sub->waiting || (ends && sub->timer)) {
        sub->waiting = false;
        sub->timer = false;
        to_notify.push_back(sub->notify);
      }
    }
  }
  for (auto& fn : to_notify) fn();
}

v1::Event EventHub::SnapshotLocked(int64_t run_id, bool gap) {
  v1::Event event;
  event.set_seq(seq_);
  event.set_time_ms(absl::ToUnixMillis(clock_->Now()));
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
                                                            std::function<void()> notify, bool paced,
                                                            absl::Duration interval) {
  auto sub = std::make_shared<Subscription>();
  sub->run_id = run_id;
  sub->notify = std::move(notify);
  sub->paced = paced;
  sub->interval = std::clamp(interval, options_.batch_interval, std::max(options_.batch_interval, kMaxBatchInterval));
  absl::MutexLock lock(&mu_);
  bool replayable = from_seq > 0 && from_seq <= seq_ &&
                    (from_seq == seq_ || (!ring_.empty() && ring_.front()->seq <= from_seq + 1));
  if (replayable) {
    sub->next_seq = from_seq + 1;
    for (const EncodedEventPtr& event : ring_) {
      if (event->seq > from_seq && Matches(*event, run_id)) {
        ++sub->pending;
        if (event->run_final && event->run_id == run_id) sub->urgent = true;
      }
    }
  } else {
    sub->needs_snapshot = true;
    sub->gap = from_seq > 0;
  }
  if (replayable && run_id != 0 && !sub->urgent) {
    // Resumed at or after the run's final event (a client whose stream
    // broke just after it): nothing more comes for the run. Its final
    // snapshot ends the stream at once instead of leaving it open.
    auto run = runs_.find(run_id);
    if (run != runs_.end() && run->second.state() != v1::RUN_RUNNING) {
      sub->needs_snapshot = true;
      sub->pending = 0;
    }
  }
  subs_.push_back(sub);
  return sub;
}

void EventHub::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

bool EventHub::PopBatch(Subscription* sub, size_t max_events, size_t max_bytes,
                        std::vector<EncodedEventPtr>* out) {
  absl::MutexLock lock(&mu_);
  if (!sub->needs_snapshot && sub->pending > 0 && (ring_.empty() || sub->next_seq < ring_.front()->seq)) {
    // Events it had not taken left the ring.
    sub->needs_snapshot = true;
    sub->gap = true;
  }
  absl::Time now = clock_->Now();
  if (sub->needs_snapshot) {
    auto encoded = std::make_shared<EncodedEvent>();
    encoded->seq = seq_;
    encoded->run_id = sub->run_id;
    auto run = runs_.find(sub->run_id);
    encoded->run_final = run != runs_.end() && run->second.state() != v1::RUN_RUNNING;
    SnapshotLocked(sub->run_id, sub->gap).SerializeToString(&encoded->bytes);
    ++snapshots_;
    if (sub->gap) ++gaps_;
    out->push_back(std::move(encoded));
    sub->needs_snapshot = false;
    sub->gap = false;
    sub->next_seq = seq_ + 1;
    sub->pending = 0;
    sub->urgent = false;
    sub->not_before = NextTick(now, sub->interval);
    return true;
  }
  if (sub->pending == 0) {
    sub->next_seq = seq_ + 1;  // nothing of its own in between
    sub->waiting = true;
    return false;
  }
  if (sub->paced && !sub->urgent && sub->pending < max_events && now < sub->not_before) {
    if (!sub->timer) {
      sub->timer = true;
      if (sub->not_before < pacer_deadline_) pacer_wake_ = true;
    }
    return false;
  }
  size_t index = sub->next_seq - ring_.front()->seq;
  size_t taken = 0, bytes = 0;
  while (index < ring_.size() && taken < max_events) {
    const EncodedEventPtr& event = ring_[index];
    if (!Matches(*event, sub->run_id)) {
      ++index;
      continue;
    }
    if (taken > 0 && bytes + event->bytes.size() > max_bytes) break;
    ++index;
    ++taken;
    bytes += event->bytes.size();
    out->push_back(event);
    if (event->run_final && event->run_id == sub->run_id) break;  // its stream ends here
  }
  sub->next_seq = ring_.front()->seq + index;
  sub->pending -= std::min(sub->pending, taken);
  if (sub->pending == 0) sub->urgent = false;
  sub->not_before = NextTick(now, sub->interval);
  return taken > 0;
}

bool EventHub::Pop(Subscription* sub, v1::Event* out) {
  std::vector<EncodedEventPtr> one;
  if (!PopBatch(sub, 1, 0, &one)) return false;
  return out->ParseFromString(one.front()->bytes);
}

std::shared_ptr<const std::string> EventHub::EncodeBatch(const std::vector<EncodedEventPtr>& events) {
  absl::MutexLock lock(&batch_mu_);
  if (batch_bytes_ != nullptr && batch_events_ == events) return batch_bytes_;
  // Event.batch (field 6, length-delimited) once per event: the tag byte,
  // the length as a varint, the bytes.
  constexpr char kBatchTag = (v1::Event::kBatchFieldNumber << 3) | 2;
  size_t size = 0;
  for (const EncodedEventPtr& event : events) size += 1 + 10 + event->bytes.size();
  auto bytes = std::make_shared<std::string>();
  bytes->reserve(size);
  for (const EncodedEventPtr& event : events) {
    bytes->push_back(kBatchTag);
    uint64_t n = event->bytes.size();
    while (n >= 0x80) {
      bytes->push_back(static_cast<char>((n & 0x7f) | 0x80));
      n >>= 7;
    }
    bytes->push_back(static_cast<char>(n));
    bytes->append(event->bytes);
  }
  batch_events_ = events;
  batch_bytes_ = std::move(bytes);
  return batch_bytes_;
}

std::vector<std::function<void()>> EventHub::DueLocked(absl::Time now, absl::Time* next) {
  *next = absl::InfiniteFuture();
  std::vector<std::function<void()>> due;
  for (const auto& sub : subs_) {
    if (!sub->timer) continue;
    if (sub->not_before <= now) {
      sub->timer = false;
      due.push_back(sub->notify);
    } else {
      *next = std::min(*next, sub->not_before);
    }
  }
  return due;
}

void EventHub::Tick() {
  std::vector<std::function<void()>> due;
  {
    absl::MutexLock lock(&mu_);
    absl::Time next;
    due = DueLocked(clock_->Now(), &next);
  }
  for (auto& fn : due) fn();
}

void EventHub::PaceLoop() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    absl::Time next;
    std::vector<std::function<void()>> due = DueLocked(clock_->Now(), &next);
    if (!due.empty()) {
      mu_.Unlock();
      for (auto& fn : due) fn();
      mu_.Lock();
      continue;
    }
    pacer_deadline_ = next;
    pacer_wake_ = false;
    mu_.AwaitWithDeadline(absl::Condition(&pacer_wake_), next);
  }
}

std::optional<v1::Run> EventHub::FindRun(int64_t run_id) {
  absl::MutexLock lock(&mu_);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second;
}

std::vector<v1::Run> EventHub::ActiveRuns() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::Run> runs;
  for (const auto& [id, run] : runs_) {
    if (run.state() == v1::RUN_RUNNING) runs.push_back(run);
  }
  return runs;
}

void EventHub::AddObserver(Observer observer) {
  absl::MutexLock lock(&mu_);
  observers_.push_back(std::move(observer));
}

EventHub::Stats EventHub::stats() {
  absl::MutexLock lock(&mu_);
  Stats stats;
  stats.subscribers = subs_.size();
  stats.ring_events = ring_.size();
  stats.published = published_;
  stats.gaps = gaps_;
  stats.snapshots = snapshots_;
  return stats;
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
