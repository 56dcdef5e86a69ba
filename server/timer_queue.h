// TimerQueue: executions waiting for a moment — a retry's backoff, or a
// short pause after no worker could take them — earliest first, in the
// scheduler's clock. Pure bookkeeping; not thread-safe (the scheduler
// thread owns it).
#ifndef ASFLOW_SERVER_TIMER_QUEUE_H_
#define ASFLOW_SERVER_TIMER_QUEUE_H_

#include <cstdint>
#include <functional>
#include <queue>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace asflow {

class TimerQueue {
 public:
  // `id` becomes due at `at`. Ties keep insertion order.
  void Add(absl::Time at, int64_t id) { timers_.push(Timer{at, next_++, id}); }

  // Removes and returns the ids due at `now` (at <= now), earliest first.
  std::vector<int64_t> PopDue(absl::Time now) {
    std::vector<int64_t> due;
    while (!timers_.empty() && timers_.top().at <= now) {
      due.push_back(timers_.top().id);
      timers_.pop();
    }
    return due;
  }

  // When the earliest timer is due; InfiniteFuture when there is none.
  absl::Time Next() const { return timers_.empty() ? absl::InfiniteFuture() : timers_.top().at; }
  size_t size() const { return timers_.size(); }

 private:
  struct Timer {
    absl::Time at;
    uint64_t order;
    int64_t id;
    bool operator>(const Timer& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t next_ = 0;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_TIMER_QUEUE_H_
