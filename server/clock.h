// Clock: where the scheduler reads the time. The daemon uses the real one;
// scheduler tests use a fake they move by hand, so retry backoffs, rate
// spacing and cooldowns are pinned exactly without sleeping. Timers are
// the scheduler's own (TimerQueue, Plan::NextWakeup), kept in this clock's
// time; its driver thread sleeps until the earliest. Thread-safe.
#ifndef ASFLOW_SERVER_CLOCK_H_
#define ASFLOW_SERVER_CLOCK_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace asflow {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// absl::Now().
class RealClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_CLOCK_H_
