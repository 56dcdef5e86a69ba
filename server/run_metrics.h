// RunMetrics: the daemon's instance and run counters for /metrics, kept by
// watching every event the event hub publishes (EventHub::AddObserver), so
// the scheduler needs no hook of its own. Finished instances are counted
// from the per-task counters the events carry (the increase of done,
// cached, skipped, ... between two events of a run), so instances that
// never get an event of their own (cached when their task expands) count
// too. Labels are flow and task names only: their number is bounded by the
// flows a daemon runs, never by instances. Counts start when the daemon
// does: a run created before `since` (resumed after a restart) counts only
// what it does from then on. Thread-safe.
#ifndef ASFLOW_SERVER_RUN_METRICS_H_
#define ASFLOW_SERVER_RUN_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/service.pb.h"

namespace asflow {

class RunMetrics {
 public:
  explicit RunMetrics(absl::Time since) : since_ms_(absl::ToUnixMillis(since)) {}

  // One published event (a snapshot or batch is ignored). Quick: called
  // under the hub's lock.
  void Observe(const v1::Event& event);

  // The final states counted, in label order.
  static constexpr std::array<v1::InstanceState, 6> kFinalStates = {
      v1::DONE, v1::CACHED, v1::SKIPPED, v1::SUPPRESSED, v1::FAILED, v1::CANCELLED};

  struct TaskTotals {
    int64_t starts = 0;   // STARTED events (an attempt began)
    int64_t retries = 0;  // attempts that failed and were queued for a retry
    std::array<int64_t, kFinalStates.size()> finished{};  // by kFinalStates
  };
  // (flow, task) -> totals since `since`.
  std::map<std::pair<std::string, std::string>, TaskTotals> Tasks() const;
  int64_t runs_started() const;
  // Runs that reached each final state.
  std::map<v1::RunState, int64_t> RunsFinished() const;

 private:
  struct Seen {
    v1::TaskCounters counters;  // the highest counts seen
    TaskTotals* totals = nullptr;  // in totals_ (a std::map: it never moves)
  };
  struct Track {
    std::string flow;
    absl::flat_hash_map<std::string, Seen> tasks;
  };
  // The task's entry in `track`, made on first sight.
  Seen& SeenLocked(Track& track, const std::string& task) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds what grew from the track's counters to `now`, and keeps `now`.
  void CountLocked(Track& track, const v1::TaskCounters& now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int64_t since_ms_;
  mutable absl::Mutex mu_;
  // Runs still running, by id.
  absl::flat_hash_map<int64_t, Track> runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, TaskTotals> totals_ ABSL_GUARDED_BY(mu_);
  int64_t runs_started_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<v1::RunState, int64_t> runs_finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_RUN_METRICS_H_
