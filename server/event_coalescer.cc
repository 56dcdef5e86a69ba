#include "server/event_coalescer.h"

#include <algorithm>

namespace asflow {
namespace {

bool IsProblem(v1::InstanceState state) {
  return state == v1::FAILED || state == v1::SKIPPED || state == v1::SUPPRESSED;
}

}  // namespace

void EventCoalescer::Add(const v1::Event& event) {
  last_seq_ = std::max(last_seq_, event.seq());
  last_time_ms_ = event.time_ms();
  if (event.has_snapshot()) {
    // The consumer replaces what it knows: everything pending is moot.
    snapshot_ = event;
    if (!options_.instances) snapshot_->mutable_snapshot()->clear_running();
    runs_.clear();
    for (const v1::Run& run : event.snapshot().runs()) runs_[run.id()] = run;
    told_running_.clear();
    if (options_.instances) {
      for (const v1::Instance& inst : event.snapshot().running()) told_running_.insert({inst.run_id(), inst.seq()});
    }
    changed_.clear();
    problems_.clear();
    touched_runs_.clear();
    truncated_ = false;
    return;
  }
  if (event.has_run()) {
    const v1::Run& run = event.run().run();
    if (options_.run_id != 0 && run.id() != options_.run_id) return;
    runs_[run.id()] = run;
    touched_runs_.insert(run.id());
    if (run.state() != v1::RUN_RUNNING) {
      // The consumer drops the run's running instances itself.
      auto in_run = [&](const Key& k) { return k.first == run.id(); };
      for (auto it = told_running_.begin(); it != told_running_.end();) it = in_run(*it) ? told_running_.erase(it) : std::next(it);
      for (auto it = changed_.begin(); it != changed_.end();) it = in_run(it->first) ? changed_.erase(it) : std::next(it);
    }
    return;
  }
  if (!event.has_instance()) return;
  const v1::InstanceEvent& ie = event.instance();
  const v1::Instance& inst = ie.instance();
  if (options_.run_id != 0 && inst.run_id() != options_.run_id) return;
  auto run = runs_.find(inst.run_id());
  if (run != runs_.end() && ie.has_counters()) {
    auto* tasks = run->second.mutable_tasks();
    auto it = std::find_if(tasks->begin(), tasks->end(),
                           [&](const v1::TaskCounters& t) { return t.task() == ie.counters().task(); });
    if (it != tasks->end()) {
      *it = ie.counters();
    } else {
      *tasks->Add() = ie.counters();
    }
    touched_runs_.insert(inst.run_id());
  }
  if (!options_.instances) return;
  Key key{inst.run_id(), inst.seq()};
  bool told = told_running_.count(key) > 0;
  switch (ie.kind()) {
    case v1::InstanceEvent::STARTED:
    case v1::InstanceEvent::PROGRESS: {
      v1::Event& slot = changed_[key];
      slot = event;
      slot.mutable_instance()->clear_counters();  // the run event carries them
      break;
    }
    default: {  // FINISHED, or QUEUED again (retry, lost worker)
      bool problem = ie.kind() == v1::InstanceEvent::FINISHED && IsProblem(inst.state());
      if (problem && problems_.size() < options_.max_problems) {
        changed_.erase(key);  // the problem event also ends its running row
        problems_.push_back(event);
        problems_.back().mutable_instance()->clear_counters();
        break;
      }
      if (problem) truncated_ = true;
      if (told) {
        v1::Event& slot = changed_[key];
        slot = event;
        slot.mutable_instance()->clear_counters();
      } else {
        changed_.erase(key);  // started and ended within the tick: nothing to show
      }
    }
  }
}

EventCoalescer::Flushed EventCoalescer::Flush() {
  Flushed out;
  if (snapshot_) out.events.push_back(std::move(*snapshot_));
  snapshot_.reset();
  for (auto& [key, event] : changed_) {
    if (event.instance().kind() == v1::InstanceEvent::STARTED || event.instance().kind() == v1::InstanceEvent::PROGRESS) {
      told_running_.insert(key);
    } else {
      told_running_.erase(key);
    }
    out.events.push_back(std::move(event));
  }
  changed_.clear();
  for (v1::Event& event : problems_) {
    told_running_.erase({event.instance().instance().run_id(), event.instance().instance().seq()});
    out.events.push_back(std::move(event));
  }
  problems_.clear();
  for (int64_t id : touched_runs_) {
    v1::Event event;
    event.set_seq(last_seq_);
    event.set_time_ms(last_time_ms_);
    *event.mutable_run()->mutable_run() = runs_[id];
    out.events.push_back(std::move(event));
  }
  touched_runs_.clear();
  out.truncated = truncated_;
  truncated_ = false;
  // Finished runs are not needed any more once flushed (the runs table
  // keeps them; the run page's stream ends).
  for (auto it = runs_.begin(); it != runs_.end();) {
    it = it->second.state() != v1::RUN_RUNNING ? runs_.erase(it) : std::next(it);
  }
  return out;
}

}  // namespace asflow
