// Metrics: asflowd's /metrics page in Prometheus' text format, assembled
// at scrape time from what the daemon already keeps: the event hub's view
// of running runs (instances by task, pool and state), RunMetrics'
// counters, the store (runs by state, commit latency, queue depth), the
// worker hub (workers and slots per pool) and /proc/self. Names follow
// Prometheus' conventions: asflow_ prefix, _total counters, seconds and
// bytes; labels are flow, task, pool and state names, never instance or
// run ids, so the number of series stays bounded. Thread-safe.
#ifndef ASFLOW_SERVER_METRICS_H_
#define ASFLOW_SERVER_METRICS_H_

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/event_hub.h"
#include "server/run_metrics.h"
#include "server/store.h"
#include "server/worker_hub.h"

namespace asflow {

struct MetricsSources {
  EventHub* hub = nullptr;
  Store* store = nullptr;
  WorkerHub* workers = nullptr;
  const RunMetrics* runs = nullptr;
  // Slots of the in-process pool "local".
  int local_slots = 0;
  // Event streams open on the HTTP listener (null: none).
  std::function<int()> event_streams;
};

class Metrics {
 public:
  // Every source must outlive the object.
  explicit Metrics(MetricsSources sources) : sources_(std::move(sources)) {}

  // The whole page.
  std::string Render();

 private:
  // Task name -> pool of run `run_id`, from its stored request (cached
  // while the run runs).
  const std::map<std::string, std::string>& PoolsOf(int64_t run_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const MetricsSources sources_;
  absl::Mutex mu_;  // one scrape at a time
  std::map<int64_t, std::map<std::string, std::string>> pools_ ABSL_GUARDED_BY(mu_);
};

// "queued", "done", ...: the state as a label value.
std::string InstanceStateLabel(v1::InstanceState state);
// "running", "succeeded", "failed", "cancelled".
std::string RunStateLabel(v1::RunState state);

}  // namespace asflow

#endif  // ASFLOW_SERVER_METRICS_H_
