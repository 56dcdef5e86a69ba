#include "server/plan.h"

#include <algorithm>

namespace asflow {

Plan::Pool* Plan::GetPool(const std::string& name) {
  auto& pool = pools_[name];
  if (pool == nullptr) pool = std::make_unique<Pool>();
  return pool.get();
}

void Plan::SetPoolSlots(const std::string& pool, int slots) {
  GetPool(pool)->slots = std::max(0, slots);
}

void Plan::SetTaskDef(const std::string& task_key, int limit, const std::string& pool,
                      double rate_per_second) {
  auto& task = tasks_[task_key];
  if (task == nullptr) {
    task = std::make_unique<TaskDef>();
    task->key = task_key;
  }
  task->limit = std::max(1, limit);
  task->interval = rate_per_second > 0 ? absl::Seconds(1.0 / rate_per_second) : absl::ZeroDuration();
  Pool* new_pool = GetPool(pool);
  if (task->pool != nullptr && task->pool != new_pool) {
    // Executions already running keep their old pool's slots until they
    // finish (Running::pool); only queued work moves. Rare (a flow
    // resubmitted with another pool), so a linear scrub of the old ring is
    // fine.
    auto& ring = task->pool->ring;
    ring.erase(std::remove(ring.begin(), ring.end(), task.get()), ring.end());
    task->in_ring = false;
  }
  task->pool = new_pool;
  MaybeAddToRing(task.get());
}

void Plan::MaybeAddToRing(TaskDef* task) {
  if (!task->in_ring && !task->rate_waiting && !task->gate_waiting && task->queued > 0 && task->running < task->limit) {
    task->pool->ring.push_back(task);
    task->in_ring = true;
  }
}

void Plan::SetTaskGates(const std::string& task_key, std::vector<Gate*> gates) {
  TaskDef* task = tasks_.at(task_key).get();
  if (task->gate_waiting) {
    // Parked on a gate it may no longer use: back to the ring, where its
    // new gates are checked.
    for (auto& [gate, waiters] : gate_waiters_) {
      waiters.erase(std::remove(waiters.begin(), waiters.end(), task), waiters.end());
    }
    task->gate_waiting = false;
  }
  task->gates = std::move(gates);
  MaybeAddToRing(task);
}

std::vector<Gate*> Plan::GatesOf(const std::string& task_key) const {
  auto it = tasks_.find(task_key);
  return it == tasks_.end() ? std::vector<Gate*>() : it->second->gates;
}

int Plan::QueuedThrough(const Gate* gate) const {
  int queued = 0;
  for (const auto& [key, task] : tasks_) {
    if (std::find(task->gates.begin(), task->gates.end(), gate) != task->gates.end()) queued += task->queued;
  }
  return queued;
}

void Plan::SetLiveness(std::function<bool(int64_t run_id, int64_t item)> live) { live_ = std::move(live); }

void Plan::Enqueue(int64_t item, const std::string& task_key, int64_t run_id) {
  TaskDef* task = tasks_.at(task_key).get();
  Fifo& fifo = task->by_run[run_id];
  if (fifo.items.empty()) task->rotation.push_back(run_id);
  fifo.items.push_back(item);
  ++task->queued;
  MaybeAddToRing(task);
}

void Plan::EnqueueAhead(int64_t item, const std::string& task_key, int64_t run_id) {
  TaskDef* task = tasks_.at(task_key).get();
  Fifo& fifo = task->by_run[run_id];
  if (fifo.items.empty()) task->rotation.push_front(run_id);
  // Few are ever ahead at once, so the insert moves few items.
  fifo.items.insert(fifo.items.begin() + static_cast<std::ptrdiff_t>(fifo.ahead), item);
  ++fifo.ahead;
  ++task->queued;
  MaybeAddToRing(task);
}

std::optional<PlanPick> Plan::PopFrom(TaskDef* task) {
  while (!task->rotation.empty()) {
    int64_t run_id = task->rotation.front();
    task->rotation.pop_front();
    auto fifo = task->by_run.find(run_id);
    if (fifo == task->by_run.end()) continue;  // stale rotation entry
    Fifo& q = fifo->second;
    // Lazy removal: cancelling a large run costs nothing until its items
    // come up here, and then O(1) each.
    while (!q.items.empty() && live_ && !live_(run_id, q.items.front())) {
      q.PopFront();
      --task->queued;
    }
    if (q.items.empty()) {
      task->by_run.erase(fifo);
      continue;
    }
    int64_t item = q.items.front();
    q.PopFront();
    if (q.items.empty()) {
      task->by_run.erase(fifo);
    } else {
      task->rotation.push_back(run_id);  // round-robin across runs
    }
    return PlanPick{run_id, item};
  }
  return std::nullopt;
}

std::optional<PlanPick> Plan::NextStartable(absl::Time now) {
  // Task definitions whose token has come go back into their pool's ring.
  for (size_t i = 0; i < rate_waiting_.size();) {
    TaskDef* task = rate_waiting_[i];
    if (task->next_token <= now) {
      task->rate_waiting = false;
      rate_waiting_[i] = rate_waiting_.back();
      rate_waiting_.pop_back();
      MaybeAddToRing(task);
    } else {
      ++i;
    }
  }
  // Task definitions parked on a gate that has room again (one in flight
  // finished, its token came, its cooldown or pause ended) go back too.
  for (auto it = gate_waiters_.begin(); it != gate_waiters_.end();) {
    if (Throttle::OpensAt(*it->first) > now) {
      ++it;
      continue;
    }
    std::vector<TaskDef*> waiters = std::move(it->second);
    gate_waiters_.erase(it++);
    for (TaskDef* task : waiters) {
      task->gate_waiting = false;
      MaybeAddToRing(task);
    }
  }
  for (auto& [name, pool] : pools_) {
    while (pool->used < pool->slots && !pool->ring.empty()) {
      TaskDef* task = pool->ring.front();
      pool->ring.pop_front();
      task->in_ring = false;
      if (task->queued == 0 || task->running >= task->limit) continue;
      if (task->interval > absl::ZeroDuration() && task->next_token > now) {
        task->rate_waiting = true;
        rate_waiting_.push_back(task);
        continue;
      }
      Gate* closed = nullptr;
      for (Gate* gate : task->gates) {
        if (Throttle::OpensAt(*gate) > now) {
          closed = gate;
          break;
        }
      }
      if (closed != nullptr) {
        task->gate_waiting = true;
        gate_waiters_[closed].push_back(task);
        continue;
      }
      std::optional<PlanPick> pick = PopFrom(task);
      if (!pick) continue;
      --task->queued;
      ++task->running;
      ++pool->used;
      pending_ = Pending{task, pool.get(), task->next_token, {}};
      for (Gate* gate : task->gates) pending_->gates.emplace_back(gate, Throttle::Acquire(*gate, now));
      if (task->interval > absl::ZeroDuration()) {
        // Capacity 1: no burst after idling, starts stay 1/rate apart.
        task->next_token = std::max(task->next_token, now) + task->interval;
      }
      MaybeAddToRing(task);  // to the back: round-robin across tasks
      return pick;
    }
  }
  return std::nullopt;
}

absl::Time Plan::NextWakeup() const {
  absl::Time wake = absl::InfiniteFuture();
  for (const TaskDef* task : rate_waiting_) {
    if (task->queued > 0) wake = std::min(wake, task->next_token);
  }
  for (const auto& [gate, waiters] : gate_waiters_) {
    absl::Time at = Throttle::OpensAt(*gate);
    if (at != absl::InfiniteFuture()) wake = std::min(wake, at);
  }
  return wake;
}

void Plan::Bind(ExecId id) {
  Running& r = running_[id];
  r.task = pending_->task;
  r.pool = pending_->pool;
  for (const auto& [gate, token] : pending_->gates) r.gates.push_back(gate);
  pending_.reset();
}

void Plan::Release() {
  Pending p = *pending_;
  pending_.reset();
  p.task->next_token = p.token_before;
  for (const auto& [gate, token] : p.gates) Throttle::GiveBack(*gate, token);
  Free(p.task, p.pool);
}

void Plan::Finished(ExecId id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  Running r = std::move(it->second);
  running_.erase(it);
  for (Gate* gate : r.gates) Throttle::Release(*gate);
  Free(r.task, r.pool);
}

std::optional<int64_t> Plan::TakeSuccessor(const std::string& task_key, int64_t run_id, absl::Time now) {
  auto t = tasks_.find(task_key);
  if (t == tasks_.end()) return std::nullopt;
  TaskDef* task = t->second.get();
  // Only while the limit holds the queue back: with room, the next call
  // starts now on its own.
  if (task->queued == 0 || task->running < task->limit || task->interval > absl::ZeroDuration() ||
      task->by_run.size() != 1) {
    return std::nullopt;
  }
  Pool* pool = task->pool;
  if (pool->used >= pool->slots && !pool->ring.empty()) return std::nullopt;
  for (Gate* gate : task->gates) {
    if (gate->interval > absl::ZeroDuration() || gate->Cooling(now) || gate->Paused(now) ||
        gate_waiters_.contains(gate)) {
      return std::nullopt;
    }
  }
  auto fifo = task->by_run.find(run_id);
  if (fifo == task->by_run.end()) return std::nullopt;
  Fifo& q = fifo->second;
  while (!q.items.empty() && live_ && !live_(run_id, q.items.front())) {
    q.PopFront();
    --task->queued;
  }
  std::optional<int64_t> item;
  if (!q.items.empty() && q.items.front() >= 0) {
    item = q.items.front();
    q.PopFront();
    --task->queued;
  }
  if (q.items.empty()) {
    // It was the only FIFO: every rotation entry is stale now.
    task->by_run.erase(fifo);
    task->rotation.clear();
  }
  return item;
}

bool Plan::Handoff(ExecId from, ExecId to) {
  auto it = running_.find(from);
  if (it == running_.end()) return false;
  Running r = std::move(it->second);
  running_.erase(it);
  running_[to] = std::move(r);
  return true;
}

void Plan::Free(TaskDef* task, Pool* pool) {
  --task->running;
  --pool->used;
  MaybeAddToRing(task);
}

int Plan::running(const std::string& task_key) const {
  auto it = tasks_.find(task_key);
  return it == tasks_.end() ? 0 : it->second->running;
}

int Plan::queued(const std::string& task_key) const {
  auto it = tasks_.find(task_key);
  return it == tasks_.end() ? 0 : it->second->queued;
}

int Plan::pool_slots(const std::string& pool) const {
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : it->second->slots;
}

int Plan::pool_used(const std::string& pool) const {
  auto it = pools_.find(pool);
  return it == pools_.end() ? 0 : it->second->used;
}

}  // namespace asflow
