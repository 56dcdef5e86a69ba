#include "server/run_metrics.h"

namespace asflow {

RunMetrics::Seen& RunMetrics::SeenLocked(Track& track, const std::string& task) {
  // One lookup per event, no allocation once the task is known (events
  // are observed on the store's writer thread, under the hub's lock).
  auto it = track.tasks.find(task);
  if (it != track.tasks.end()) return it->second;
  Seen& seen = track.tasks[task];
  seen.totals = &totals_[{track.flow, task}];
  return seen;
}

void RunMetrics::CountLocked(Track& track, const v1::TaskCounters& now) {
  // `seen` keeps the highest count of each final state seen (they only
  // grow within a run), so an event carrying older counters than one
  // before it can never count an instance twice.
  Seen& entry = SeenLocked(track, now.task());
  v1::TaskCounters& seen = entry.counters;
  TaskTotals& totals = *entry.totals;
  const v1::TaskCounters* r = &now;
  auto bump = [&](int64_t (v1::TaskCounters::*get)() const, void (v1::TaskCounters::*set)(int64_t), size_t i) {
    int64_t grew = (r->*get)() - (seen.*get)();
    if (grew <= 0) return;
    totals.finished[i] += grew;
    (seen.*set)((r->*get)());
  };
  bump(&v1::TaskCounters::done, &v1::TaskCounters::set_done, 0);
  bump(&v1::TaskCounters::cached, &v1::TaskCounters::set_cached, 1);
  bump(&v1::TaskCounters::skipped, &v1::TaskCounters::set_skipped, 2);
  bump(&v1::TaskCounters::suppressed, &v1::TaskCounters::set_suppressed, 3);
  bump(&v1::TaskCounters::failed, &v1::TaskCounters::set_failed, 4);
  bump(&v1::TaskCounters::cancelled, &v1::TaskCounters::set_cancelled, 5);
  // retrying goes up (a retry is scheduled) and down (it starts).
  if (now.retrying() > seen.retrying()) totals.retries += now.retrying() - seen.retrying();
  seen.set_retrying(now.retrying());
}

void RunMetrics::Observe(const v1::Event& event) {
  absl::MutexLock lock(&mu_);
  if (event.has_run()) {
    const v1::Run& run = event.run().run();
    auto it = runs_.find(run.id());
    if (it == runs_.end()) {
      if (run.state() != v1::RUN_RUNNING) return;  // finished before we saw it run
      it = runs_.emplace(run.id(), Track{run.flow(), {}}).first;
      if (run.created_ms() < since_ms_) {
        // Resumed: what it did before this daemon started is not ours.
        for (const v1::TaskCounters& t : run.tasks()) SeenLocked(it->second, t.task()).counters = t;
      } else {
        ++runs_started_;
      }
    }
    for (const v1::TaskCounters& t : run.tasks()) CountLocked(it->second, t);
    if (run.state() != v1::RUN_RUNNING) {
      ++runs_finished_[run.state()];
      runs_.erase(it);
    }
    return;
  }
  if (!event.has_instance()) return;
  const v1::InstanceEvent& ie = event.instance();
  auto it = runs_.find(ie.instance().run_id());
  if (it == runs_.end()) return;  // every run announces itself first
  if (ie.kind() == v1::InstanceEvent::STARTED) ++SeenLocked(it->second, ie.instance().task()).totals->starts;
  if (ie.has_counters()) CountLocked(it->second, ie.counters());
}

std::map<std::pair<std::string, std::string>, RunMetrics::TaskTotals> RunMetrics::Tasks() const {
  absl::MutexLock lock(&mu_);
  return totals_;
}

int64_t RunMetrics::runs_started() const {
  absl::MutexLock lock(&mu_);
  return runs_started_;
}

std::map<v1::RunState, int64_t> RunMetrics::RunsFinished() const {
  absl::MutexLock lock(&mu_);
  return runs_finished_;
}

}  // namespace asflow
