#include "server/metrics.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "server/process_stats.h"
#include "server/prometheus_text.h"

namespace asflow {

std::string InstanceStateLabel(v1::InstanceState state) {
  return absl::AsciiStrToLower(v1::InstanceState_Name(state));
}

std::string RunStateLabel(v1::RunState state) {
  switch (state) {
    case v1::RUN_RUNNING: return "running";
    case v1::RUN_SUCCEEDED: return "succeeded";
    case v1::RUN_FAILED: return "failed";
    case v1::RUN_CANCELLED: return "cancelled";
    default: return "unspecified";
  }
}

const std::map<std::string, std::string>& Metrics::PoolsOf(int64_t run_id) {
  auto it = pools_.find(run_id);
  if (it != pools_.end()) return it->second;
  std::map<std::string, std::string>& pools = pools_[run_id];
  auto rec = sources_.store->GetRun(run_id);
  v1::SubmitFlowRequest request;
  if (rec.ok() && request.ParseFromString(rec->request)) {
    for (const v1::TaskSpec& task : request.spec().tasks()) {
      pools[task.name()] = task.pool().empty() ? "local" : task.pool();
    }
  }
  return pools;
}

std::string Metrics::Render() {
  absl::MutexLock lock(&mu_);
  PrometheusText out;
  out.Family("asflow_build_info", "gauge", "Always 1; the asflowd version as a label.");
  out.Sample("asflow_build_info", {{"version", ASFLOW_VERSION}}, 1);

  // Instances of the runs running now, from the hub's view.
  std::vector<v1::Run> active = sources_.hub->ActiveRuns();
  struct Key {
    std::string flow, task, pool;
    bool operator<(const Key& o) const { return std::tie(flow, task, pool) < std::tie(o.flow, o.task, o.pool); }
  };
  std::map<Key, v1::TaskCounters> by_task;
  std::set<int64_t> live;
  for (const v1::Run& run : active) {
    live.insert(run.id());
    const auto& pools = PoolsOf(run.id());
    for (const v1::TaskCounters& t : run.tasks()) {
      auto pool = pools.find(t.task());
      v1::TaskCounters& sum = by_task[{run.flow(), t.task(), pool == pools.end() ? "local" : pool->second}];
      sum.set_queued(sum.queued() + t.queued());
      sum.set_running(sum.running() + t.running());
      sum.set_done(sum.done() + t.done());
      sum.set_cached(sum.cached() + t.cached());
      sum.set_skipped(sum.skipped() + t.skipped());
      sum.set_suppressed(sum.suppressed() + t.suppressed());
      sum.set_failed(sum.failed() + t.failed());
      sum.set_cancelled(sum.cancelled() + t.cancelled());
      sum.set_retrying(sum.retrying() + t.retrying());
    }
  }
  for (auto it = pools_.begin(); it != pools_.end();) {
    it = live.count(it->first) > 0 ? std::next(it) : pools_.erase(it);
  }
  out.Family("asflow_instances", "gauge",
             "Instances of the runs running now, by flow, task, pool and state (queued includes retrying).");
  for (const auto& [key, c] : by_task) {
    const std::pair<const char*, int64_t> states[] = {
        {"queued", c.queued()},   {"running", c.running()},       {"done", c.done()},
        {"cached", c.cached()},   {"skipped", c.skipped()},       {"suppressed", c.suppressed()},
        {"failed", c.failed()},   {"cancelled", c.cancelled()}};
    for (const auto& [state, n] : states) {
      out.Sample("asflow_instances", {{"flow", key.flow}, {"task", key.task}, {"pool", key.pool}, {"state", state}},
                 static_cast<double>(n));
    }
  }
  out.Family("asflow_instances_retrying", "gauge",
             "Queued instances of the runs running now that wait for a retry's backoff.");
  for (const auto& [key, c] : by_task) {
    out.Sample("asflow_instances_retrying", {{"flow", key.flow}, {"task", key.task}, {"pool", key.pool}},
               static_cast<double>(c.retrying()));
  }

  // Counters since the daemon started.
  auto totals = sources_.runs->Tasks();
  out.Family("asflow_instance_starts_total", "counter", "Attempts started, by flow and task.");
  for (const auto& [key, t] : totals) {
    out.Sample("asflow_instance_starts_total", {{"flow", key.first}, {"task", key.second}}, static_cast<double>(t.starts));
  }
  out.Family("asflow_instance_retries_total", "counter",
             "Attempts that failed and were queued for a retry, by flow and task.");
  for (const auto& [key, t] : totals) {
    out.Sample("asflow_instance_retries_total", {{"flow", key.first}, {"task", key.second}},
               static_cast<double>(t.retries));
  }
  out.Family("asflow_instances_finished_total", "counter",
             "Instances that reached a final state (cached ones included), by flow, task and state.");
  for (const auto& [key, t] : totals) {
    for (size_t i = 0; i < RunMetrics::kFinalStates.size(); ++i) {
      out.Sample("asflow_instances_finished_total",
                 {{"flow", key.first}, {"task", key.second}, {"state", InstanceStateLabel(RunMetrics::kFinalStates[i])}},
                 static_cast<double>(t.finished[i]));
    }
  }
  const v1::RunState kRunStates[] = {v1::RUN_RUNNING, v1::RUN_SUCCEEDED, v1::RUN_FAILED, v1::RUN_CANCELLED};
  out.Family("asflow_runs_started_total", "counter", "Runs submitted since the daemon started.");
  out.Sample("asflow_runs_started_total", {}, static_cast<double>(sources_.runs->runs_started()));
  auto finished = sources_.runs->RunsFinished();
  out.Family("asflow_runs_finished_total", "counter", "Runs that ended since the daemon started, by final state.");
  for (v1::RunState state : kRunStates) {
    if (state == v1::RUN_RUNNING) continue;
    out.Sample("asflow_runs_finished_total", {{"state", RunStateLabel(state)}}, static_cast<double>(finished[state]));
  }
  auto counts = sources_.store->CountRuns();
  if (counts.ok()) {
    std::map<v1::RunState, int64_t> by_state;
    for (const auto& [state, n] : *counts) by_state[state] += n;
    out.Family("asflow_runs", "gauge", "Runs in the state database, by state.");
    for (v1::RunState state : kRunStates) {
      out.Sample("asflow_runs", {{"state", RunStateLabel(state)}}, static_cast<double>(by_state[state]));
    }
  }

  // The store.
  out.Family("asflow_store_commit_duration_seconds", "histogram",
             "Time of each group transaction of the state database, BEGIN to COMMIT (fsync included).");
  out.HistogramSamples("asflow_store_commit_duration_seconds", {}, sources_.store->commit_latency().Read());
  out.Family("asflow_store_queue_depth", "gauge", "Writes queued for the state database, not yet committed.");
  out.Sample("asflow_store_queue_depth", {}, static_cast<double>(sources_.store->pending_writes()));
  out.Family("asflow_store_transactions_total", "counter", "Group transactions committed.");
  out.Sample("asflow_store_transactions_total", {}, static_cast<double>(sources_.store->transactions_committed()));

  // The event hub.
  EventHub::Stats hub = sources_.hub->stats();
  out.Family("asflow_event_hub_subscribers", "gauge", "Watch streams and HTTP event streams subscribed.");
  out.Sample("asflow_event_hub_subscribers", {}, static_cast<double>(hub.subscribers));
  out.Family("asflow_event_hub_events_total", "counter", "Events published.");
  out.Sample("asflow_event_hub_events_total", {}, static_cast<double>(hub.published));
  out.Family("asflow_event_hub_buffered_events", "gauge", "Events kept for resumption and slow subscribers.");
  out.Sample("asflow_event_hub_buffered_events", {}, static_cast<double>(hub.ring_events));
  out.Family("asflow_event_hub_snapshots_total", "counter", "Snapshots handed to subscribers.");
  out.Sample("asflow_event_hub_snapshots_total", {}, static_cast<double>(hub.snapshots));
  out.Family("asflow_event_hub_gaps_total", "counter",
             "Snapshots handed out in place of events a subscriber fell too far behind to take (or resumed too "
             "late for).");
  out.Sample("asflow_event_hub_gaps_total", {}, static_cast<double>(hub.gaps));
  if (sources_.event_streams) {
    out.Family("asflow_http_event_streams", "gauge", "Event streams open on the HTTP listener.");
    out.Sample("asflow_http_event_streams", {}, sources_.event_streams());
  }

  // Pools and workers.
  std::map<std::string, std::pair<int, int>> workers;  // pool -> (active, draining)
  for (const v1::WorkerInfo& w : sources_.workers->List()) {
    for (const std::string& pool : w.pools()) {
      auto& n = workers[pool];
      (w.draining() ? n.second : n.first) += 1;
    }
  }
  out.Family("asflow_workers", "gauge", "Remote workers connected, by pool and state (active or draining).");
  for (const auto& [pool, n] : workers) {
    out.Sample("asflow_workers", {{"pool", pool}, {"state", "active"}}, n.first);
    out.Sample("asflow_workers", {{"pool", pool}, {"state", "draining"}}, n.second);
  }
  out.Family("asflow_pool_slots", "gauge",
             "Slots of each pool: the in-process pool 'local', and the slots of the active workers of each remote "
             "pool.");
  out.Sample("asflow_pool_slots", {{"pool", "local"}}, sources_.local_slots);
  for (const auto& [pool, n] : workers) {
    out.Sample("asflow_pool_slots", {{"pool", pool}}, sources_.workers->PoolSlots(pool));
  }

  // The process.
  ProcessStats p = ReadProcessStats();
  out.Family("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
  out.Sample("process_cpu_seconds_total", {}, p.cpu_seconds);
  out.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  out.Sample("process_resident_memory_bytes", {}, static_cast<double>(p.resident_bytes));
  out.Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  out.Sample("process_virtual_memory_bytes", {}, static_cast<double>(p.virtual_bytes));
  out.Family("process_open_fds", "gauge", "Open file descriptors.");
  out.Sample("process_open_fds", {}, static_cast<double>(p.open_fds));
  out.Family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  out.Sample("process_max_fds", {}, static_cast<double>(p.max_fds));
  out.Family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch, in seconds.");
  out.Sample("process_start_time_seconds", {}, p.start_time_seconds);
  out.Family("process_threads", "gauge", "Threads of the process.");
  out.Sample("process_threads", {}, static_cast<double>(p.threads));
  return out.text();
}

}  // namespace asflow
