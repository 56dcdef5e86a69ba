// Plan: which queued work may start now. Pure bookkeeping (no I/O, no
// threads, no clock): per task definition a limit and one FIFO per run,
// served round-robin across runs; per pool a number of slots, served
// round-robin across task definitions; optionally a rate per task
// definition (a token bucket of capacity 1: starts at least 1/rate apart).
// Every operation is O(1) amortised, so a run of 100,000 instances costs
// nothing extra to schedule. Time is passed in, never read: tests drive it.
// Not thread-safe: owned by the scheduler thread.
//
// A queued item is the caller's 64-bit value and nothing else (8 bytes in
// a FIFO): the plan keeps no entry per queued item, only per running
// execution. Items are removed lazily: the caller's liveness check drops
// an item that no longer needs to start when it reaches the head of its
// FIFO.
#ifndef ASFLOW_SERVER_PLAN_H_
#define ASFLOW_SERVER_PLAN_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/time/time.h"
#include "server/throttle.h"

namespace asflow {

using ExecId = int64_t;

// The item NextStartable chose, and the run whose FIFO it came from.
struct PlanPick {
  int64_t run_id = 0;
  int64_t item = 0;
};

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

  // The gates (throttle keys, the task's own gate: server/throttle.h) every
  // start of `task_key` also needs room in; they stay the Throttle's. The
  // last call wins. REQUIRES: SetTaskDef(task_key) was called.
  void SetTaskGates(const std::string& task_key, std::vector<Gate*> gates);
  // The gates of `task_key` (empty for an unknown task).
  std::vector<Gate*> GatesOf(const std::string& task_key) const;
  // Items queued for the task definitions that pass through `gate`.
  int QueuedThrough(const Gate* gate) const;

  // Whether a queued item still needs to start; items for which it returns
  // false are dropped when they reach the head of their FIFO (they count
  // in queued() until then). Default: every item is live.
  void SetLiveness(std::function<bool(int64_t run_id, int64_t item)> live);
  // Queues `item` behind the other items of `run_id` for `task_key`.
  // REQUIRES: SetTaskDef(task_key) was called.
  void Enqueue(int64_t item, const std::string& task_key, int64_t run_id);
  // Queues `item` ahead of the items of `run_id` for `task_key` queued with
  // Enqueue, behind those queued ahead before it (work that started before
  // — a retry whose backoff ended — goes before work that never started).
  // A run with nothing else queued takes the next turn of its task.
  // REQUIRES: SetTaskDef(task_key) was called.
  void EnqueueAhead(int64_t item, const std::string& task_key, int64_t run_id);
  // Picks the next live item allowed to start at `now` (its task's limit,
  // rate and its pool's slots permit) and counts it as running.
  // REQUIRES: the previous pick was bound or released.
  std::optional<PlanPick> NextStartable(absl::Time now);
  // The last pick started as execution `id`: Finished(id) frees its slot.
  void Bind(ExecId id);
  // The last pick did not start (the caller found nothing left to run):
  // its limit, slot and rate token are given back.
  void Release();
  // When a rate-limited task definition with queued work gets its next
  // token, or a gate that holds one back may open (its token, cooldown or
  // timed pause); InfiniteFuture if none waits on time.
  absl::Time NextWakeup() const;
  // A running execution ended: frees its limit and pool slot.
  void Finished(ExecId id);

  // Chained starts (the session protocol's StartCall.after): a successor
  // for a running execution of `task_key` in run `run_id` — the head of
  // that run's FIFO, taken off the queue without counting as running —
  // when the task's limit is reached (with room, the item would simply
  // start) and nothing else could claim the slot the running one will leave: no
  // other run has work queued for the task, the task has no rate, none of
  // its gates paces, cools down, is paused or has another task waiting, and
  // its pool has room or nobody waiting. Only never-started items (>= 0).
  std::optional<int64_t> TakeSuccessor(const std::string& task_key, int64_t run_id, absl::Time now);
  // The slot running execution `from` holds (limit, pool slot, gates in
  // flight) is now `to`'s. False (nothing changed) if `from` holds none.
  bool Handoff(ExecId from, ExecId to);

  int running(const std::string& task_key) const;
  // Executions running in every pool.
  int running_total() const { return static_cast<int>(running_.size()); }
  int queued(const std::string& task_key) const;
  int pool_used(const std::string& pool) const;
  // Slots of `pool` as last declared; 0 for a pool never declared.
  int pool_slots(const std::string& pool) const;

 private:
  struct Pool;
  // One run's queued items of one task: the first `ahead` were queued with
  // EnqueueAhead.
  struct Fifo {
    std::deque<int64_t> items;
    size_t ahead = 0;
    void PopFront() {
      items.pop_front();
      if (ahead > 0) --ahead;
    }
  };
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
    // Gates it also needs; parked on one that had no room (in
    // gate_waiters_, not in the ring) until it opens.
    std::vector<Gate*> gates;
    bool gate_waiting = false;
    // One FIFO per run, visited round-robin: `rotation` holds run ids that
    // may have queued work (stale entries are dropped lazily).
    absl::flat_hash_map<int64_t, Fifo> by_run;
    std::deque<int64_t> rotation;
  };
  struct Pool {
    int slots = 0;  // a pool has no capacity until declared
    int used = 0;
    // Task definitions that have queued work and room under their limit.
    std::deque<TaskDef*> ring;
  };
  // A running execution: what it holds.
  struct Running {
    TaskDef* task = nullptr;
    Pool* pool = nullptr;  // not task->pool: the task may move meanwhile
    absl::InlinedVector<Gate*, 2> gates;  // what it holds in flight
  };
  // A pick not yet bound or released.
  struct Pending {
    TaskDef* task = nullptr;
    Pool* pool = nullptr;
    absl::Time token_before;  // the rate token to give back on Release
    absl::InlinedVector<std::pair<Gate*, absl::Time>, 2> gates;  // and each gate's
  };

  Pool* GetPool(const std::string& name);
  void MaybeAddToRing(TaskDef* task);
  std::optional<PlanPick> PopFrom(TaskDef* task);
  // A running item ended (or never started): frees its limit and slot.
  void Free(TaskDef* task, Pool* pool);

  absl::flat_hash_map<std::string, std::unique_ptr<Pool>> pools_;
  absl::flat_hash_map<std::string, std::unique_ptr<TaskDef>> tasks_;
  absl::flat_hash_map<ExecId, Running> running_;
  std::optional<Pending> pending_;
  std::function<bool(int64_t, int64_t)> live_;
  // Task definitions with queued work waiting for their next token.
  std::vector<TaskDef*> rate_waiting_;
  // Task definitions parked on a gate with no room, by gate.
  absl::flat_hash_map<Gate*, std::vector<TaskDef*>> gate_waiters_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_PLAN_H_
