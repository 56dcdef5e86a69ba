// Schedules: flow files the daemon submits on a timetable (`asflowctl
// schedule add flow.yaml --every 6h`). Kept in the state file's
// `schedules` table, so they survive restarts; fired from their own
// thread on the daemon's Clock, through the scheduler's Submit like any
// run. Rules (docs/behaviour.md, "Schedules"):
// - the flow file is read again at every fire (edits take effect at the
//   next one); it must lie inside the workspace and is opened beneath it;
// - a fire whose previous run is still going starts nothing and is
//   counted as a skip;
// - fires missed while the daemon was down (or the clock jumped) make up
//   one fire, at once, not one per missed time.
// Thread-safe.
#ifndef ASFLOW_SERVER_SCHEDULES_H_
#define ASFLOW_SERVER_SCHEDULES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.pb.h"
#include "server/clock.h"
#include "server/schedule_times.h"
#include "server/store.h"

namespace asflow {

// What Schedules works with; all must outlive it.
struct ScheduleDeps {
  Store* store = nullptr;
  Clock* clock = nullptr;
  // Starts a run (Scheduler::Submit); `done` gets its id or why not, on
  // any thread, possibly before submit returns.
  std::function<void(v1::SubmitFlowRequest, std::function<void(absl::StatusOr<int64_t>)>)> submit;
  // Checks the workspace against the allowed roots and makes it canonical
  // (Scheduler::CheckWorkspace).
  std::function<absl::Status(v1::SubmitFlowRequest*)> check_workspace;
  // The state of run `id`.
  std::function<absl::StatusOr<v1::RunState>(int64_t id)> run_state;
};

class Schedules {
 public:
  explicit Schedules(ScheduleDeps deps);
  // Stops the thread.
  ~Schedules();
  Schedules(const Schedules&) = delete;
  Schedules& operator=(const Schedules&) = delete;

  // Reads the schedules table. REQUIRES: before Start and Tick, once.
  absl::Status Load();
  // The thread that sleeps until the next fire and calls Tick.
  void Start();
  void Stop();

  // Fires every schedule due by the clock (tests call it on a fake clock).
  void Tick();
  // The earliest fire of an active schedule; InfiniteFuture if none.
  absl::Time NextWakeup() const;

  // `done` runs once the change is committed, on the store's writer thread
  // (or at once for a refused request).
  void Add(v1::AddScheduleRequest request, std::function<void(absl::StatusOr<v1::Schedule>)> done);
  void Remove(const v1::ScheduleRef& ref, std::function<void(absl::StatusOr<v1::Schedule>)> done);
  void SetPaused(const v1::ScheduleRef& ref, bool paused, std::function<void(absl::StatusOr<v1::Schedule>)> done);
  // Every schedule by id, with last_run_state filled in.
  std::vector<v1::Schedule> List();

  // The request a fire submits: the flow file read beneath the workspace
  // and parsed. InvalidArgument naming the file otherwise.
  static absl::StatusOr<v1::SubmitFlowRequest> BuildRequest(const v1::Schedule& schedule);

 private:
  struct Entry {
    v1::Schedule proto;
    ScheduleTimes times;
    bool submitting = false;  // a fire's Submit has not answered yet
  };

  Entry* FindLocked(const v1::ScheduleRef& ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes the schedule's row (insert or replace); `done` as PutRaw's.
  void Persist(const v1::Schedule& schedule, std::function<void(const absl::Status&)> done = nullptr);
  void OnSubmitted(int64_t id, absl::StatusOr<int64_t> run);
  void Loop();

  // Constant after construction.
  const ScheduleDeps deps_;

  mutable absl::Mutex mu_;
  std::map<int64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // Names of schedules being added (not committed yet).
  std::vector<std::string> adding_ ABSL_GUARDED_BY(mu_);
  bool changed_ ABSL_GUARDED_BY(mu_) = false;  // wakes the thread
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_SCHEDULES_H_
