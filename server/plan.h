// Plan: which queued executions may start now. Pure bookkeeping (no I/O, no
// threads, no clock): per task definition a limit and one FIFO per run,
// served round-robin across runs; per pool a number of slots, served
// round-robin across task definitions. Every operation is O(1) amortised,
// so a run of 100,000 instances costs nothing extra to schedule.
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

namespace asflow {

using ExecId = int64_t;

class Plan {
 public:
  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  // Declares (or updates) a pool with `slots` concurrent executions.
  void SetPoolSlots(const std::string& pool, int slots);
  // Declares (or updates) a task definition: at most `limit` (>= 1) running
  // across all runs, in `pool`. The last call wins (a resubmitted flow may
  // change its limit).
  void SetTaskDef(const std::string& task_key, int limit, const std::string& pool);

  // Queues `id` behind the other executions of `run_id` for `task_key`.
  // REQUIRES: SetTaskDef(task_key) was called; id is not queued or running.
  void Enqueue(ExecId id, const std::string& task_key, int64_t run_id);
  // Removes a queued execution; false if it was not queued.
  bool Dequeue(ExecId id);
  // Picks the next execution allowed to start (its task's limit and its
  // pool's slots permit) and counts it as running.
  std::optional<ExecId> NextStartable();
  // A running execution ended: frees its limit and pool slot.
  void Finished(ExecId id);

  int running(const std::string& task_key) const;
  int queued(const std::string& task_key) const;
  int pool_used(const std::string& pool) const;

 private:
  struct Pool;
  struct TaskDef {
    std::string key;
    int limit = 1;
    Pool* pool = nullptr;
    int running = 0;
    int queued = 0;
    bool in_ring = false;
    // One FIFO per run, visited round-robin: `rotation` holds run ids that
    // may have queued work (stale entries are dropped lazily).
    absl::flat_hash_map<int64_t, std::deque<ExecId>> by_run;
    std::deque<int64_t> rotation;
  };
  struct Pool {
    int slots = 1;
    int used = 0;
    // Task definitions that have queued work and room under their limit.
    std::deque<TaskDef*> ring;
  };
  struct ExecEntry {
    TaskDef* task = nullptr;
    int64_t run_id = 0;
    bool running = false;
  };

  Pool* GetPool(const std::string& name);
  void MaybeAddToRing(TaskDef* task);
  std::optional<ExecId> PopFrom(TaskDef* task);

  absl::flat_hash_map<std::string, std::unique_ptr<Pool>> pools_;
  absl::flat_hash_map<std::string, std::unique_ptr<TaskDef>> tasks_;
  absl::flat_hash_map<ExecId, ExecEntry> execs_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_PLAN_H_
