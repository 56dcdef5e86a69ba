// EventCoalescer: folds the Watch events of a tick into the few a dashboard
// needs to show the same thing, so a page of a 100,000-instance run gets a
// handful of messages per tick however fast instances finish. A consumer
// that applies the flushed events in order (a snapshot replaces what it
// knows; a run event replaces the run and its counters; an instance event
// STARTED/PROGRESS sets a running instance, FINISHED/QUEUED removes it; a
// run in a final state has nothing running) ends up with the same runs,
// counters and running instances as one that applied every event, and
// sees every failed, skipped and suppressed instance up to `max_problems`
// per flush. Instances that started and finished within one tick without
// a problem are not sent at all: their counts are in the run's counters.
// Not thread-safe (one per event stream).
#ifndef ASFLOW_SERVER_EVENT_COALESCER_H_
#define ASFLOW_SERVER_EVENT_COALESCER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "asflow/v1/service.pb.h"

namespace asflow {

struct EventCoalescerOptions {
  // The run followed; 0: every run.
  int64_t run_id = 0;
  // Follow running and problem instances (a run's page); false: runs and
  // their counters only (the runs table).
  bool instances = true;
  // Failed, skipped and suppressed instances sent per flush at most; the
  // flush says when more were left out (the page then lists them from the
  // API instead).
  size_t max_problems = 200;
};

class EventCoalescer {
 public:
  explicit EventCoalescer(EventCoalescerOptions options) : options_(options) {}

  // Folds in one event (a snapshot, run or instance event; not a batch).
  void Add(const v1::Event& event);

  struct Flushed {
    std::vector<v1::Event> events;
    // Problem instances were left out (more than max_problems).
    bool truncated = false;
  };
  // What changed since the last flush, in the order to apply it; empty if
  // nothing did.
  Flushed Flush();

 private:
  using Key = std::pair<int64_t, int64_t>;  // (run id, seq)

  const EventCoalescerOptions options_;
  std::optional<v1::Event> snapshot_;
  std::map<int64_t, v1::Run> runs_;
  std::set<int64_t> touched_runs_;
  // Instances the consumer has been told are running (as of the last flush).
  std::set<Key> told_running_;
  // The latest event of each instance that changed since the last flush.
  std::map<Key, v1::Event> changed_;
  std::vector<v1::Event> problems_;
  bool truncated_ = false;
  int64_t last_seq_ = 0;
  int64_t last_time_ms_ = 0;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_EVENT_COALESCER_H_
