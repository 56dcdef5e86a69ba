// FakeClock: a Clock that tests move by hand (Advance), so times, retry
// backoffs and pacing ticks are pinned exactly without sleeping. Not
// thread-safe: the test and what it drives share one thread.
#ifndef ASFLOW_TESTS_SERVER_FAKE_CLOCK_H_
#define ASFLOW_TESTS_SERVER_FAKE_CLOCK_H_

#include "absl/time/time.h"
#include "server/clock.h"

namespace asflow::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_(start) {}
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_;
};

}  // namespace asflow::testing

#endif  // ASFLOW_TESTS_SERVER_FAKE_CLOCK_H_
