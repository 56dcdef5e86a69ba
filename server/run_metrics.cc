#include "server/run_metrics.h"

namespace asflow {
namespace {

int64_t CountOf(const v1::TaskCounters& c, v1::InstanceState state) {
  switch (state) {
    case v1::DONE: return c.done();
    case v1::CACHED: return c.cached();
    case v1::SKIPPED: return c.skipped();
    case v1::SUPPRESSED: return c.suppressed();
    case v1::FAILED: return c.failed();
    case v1::CANCELLED: return c.cancelled();
    default: return 0;
  }
}

}  // namespace

void RunMetrics::CountLocked(Track& track, const v1::TaskCounters& now) {
  v1::TaskCounters& before = track.tasks[now.task()];
  TaskTotals& totals = totals_[{track.flow, now.task()}];
  for (size_t i = 0; i < kFinalStates.size(); ++i) {
    int64_t grew = CountOf(now, kFinalStates[i]) - CountOf(before, kFinalStates[i]);
    if (grew > 0) totals.finished[i] += grew;
  }
  if (now.retrying() > before.retrying()) totals.retries += now.retrying() - before.retrying();
  before = now;
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
        for (const v1::TaskCounters& t : run.tasks()) it->second.tasks[t.task()] = t;
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
  if (ie.kind() == v1::InstanceEvent::STARTED) ++totals_[{it->second.flow, ie.instance().task()}].starts;
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
