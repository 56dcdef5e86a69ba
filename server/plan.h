// Plan: which queued executions may start now. Pure bookkeeping (no I/O, no
// threads, no clock): per task definition a limit and one FIFO per run,
// served round-robin across runs; per pool a number of slots, served
// round-robin across task definitions; optionally a rate per task
// definition (a token bucket of capacity 1: starts at least 1/rate apart).
// Every operation is O(1) amortised, so a run of 100,000 instances costs
// nothing extra to schedule. Time is passed in, never read: tests drive it.
// Not thread-safe: owned by the scheduler thread.
#ifndef ASFLOW_SERVER_PLAN_H_
#define ASFLOW_SERVER_PLAN_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"

namespace asflow {

using ExecId = int64_t;

class Plan {
 public:
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Declares (or updates) a pool with `slots` concurrent executions. A
  // pool only named by SetTaskDef has none (e.g. a remote pool no worker
  // has joined).
  void SetPoolSlots(const std::string& pool, int slots);
  // Declares (or updates) a task definition: at most `limit` (>= 1) running
  // across all runs, in `pool`, and at most `rate_per_second` starts per
  // second (0: unlimited). The last call wins (a resubmitted flow may change
  // its limit).
  void SetTaskDef(const std::string& task_key, int limit, const std::string& pool,
                  double rate_per_second = 0);

  // Queues `id` behind the other executions of `run_id` for `task_key`.
  // REQUIRES: SetTaskDef(task_key) was called; id is not queued or running.
  void Enqueue(ExecId id, const std::string& task_key, int64_t run_id);
  // Removes a queued execution; false if it was not queued.
  bool Dequeue(ExecId id);
  // Picks the next execution allowed to start at `now` (its task's limit,
  // rate and its pool's slots permit) and counts it as running.
  std::optional<ExecId> NextStartable(absl::Time now);
  // When a rate-limited task definition with queued work gets its next
  // token; InfiniteFuture if none waits on a rate.
  absl::Time NextWakeup() const;
  // A running execution ended: frees its limit and pool slot.
  void Finished(ExecId id);

  int running(const std::string& task_key) const;
  int queued(const std::string& task_key) const;
  int pool_used(const std::string& pool) const;
  // Slots of `pool` as last declared; 0 for a pool never declared.
  int pool_slots(const std::string& pool) const;

 private:
  struct Pool;
  struct TaskDef {
    std::string key;
    int limit = 1;
    Pool* pool = nullptr;
    int running = 0;
    int queued = 0;
    bool in_ring = false;
    absl::Duration interval = absl::ZeroDuration();  // 1 / rate
    absl::Time next_token = absl::InfinitePast();
    bool rate_waiting = false;  // in rate_waiting_, not in the ring
    // One FIFO per run, visited round-robin: `rotation` holds run ids that
    // may have queued work (stale entries are dropped lazily).
    absl::flat_hash_map<int64_t, std::deque<ExecId>> by_run;
    std::deque<int64_t> rotation;
  };
  struct Pool {
    int slots = 0;  // a pool has no capacity until declared
    int used = 0;
    // Task definitions that have queued work and room under their limit.
    std::deque<TaskDef*> ring;
  };
  struct ExecEntry {
    TaskDef* task = nullptr;
    int64_t run_id = 0;
    bool running = false;
    Pool* pool = nullptr;  // the pool whose slot it holds while running
  };

  Pool* GetPool(const std::string& name);
  void MaybeAddToRing(TaskDef* task);
  std::optional<ExecId> PopFrom(TaskDef* task);

  absl::flat_hash_map<std::string, std::unique_ptr<Pool>> pools_;
  absl::flat_hash_map<std::string, std::unique_ptr<TaskDef>> tasks_;
  absl::flat_hash_map<ExecId, ExecEntry> execs_;
  // Task definitions with queued work waiting for their next token.
  std::vector<TaskDef*> rate_waiting_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_PLAN_H_
