// Retention: `asflowd --keep-runs` prunes the history of finished runs so
// that the state file stays bounded while schedules add runs without end.
// A pass picks the finished runs beyond the limits (RunsToPrune, pure) and,
// for each, deletes its instance rows in small batches through the Store's
// writer (each batch one queued write between the scheduler's, then a
// pause), keeping the rows caching and `reset` still need: suppressed and
// failed instances (their error text stays until `asflowctl reset`). A run
// with no row left is deleted; one with kept rows stays, marked pruned:
// hidden from `runs`, still found by `show`, `tasks` and `reset`. Freed
// pages go back to the file system (PRAGMA incremental_vacuum) when the
// file was created with auto_vacuum=INCREMENTAL (every file this version
// creates). Thread-safe.
#ifndef ASFLOW_SERVER_RETENTION_H_
#define ASFLOW_SERVER_RETENTION_H_

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/clock.h"
#include "server/store.h"

namespace asflow {

// How much history to keep. Both limits are caps: a finished run goes
// when it is past either.
struct KeepRuns {
  int64_t count = 0;                         // newest N finished runs; 0: no cap
  absl::Duration age = absl::ZeroDuration(); // finished within; 0: no cap
  bool enabled() const { return count > 0 || age > absl::ZeroDuration(); }
};

// The default: "30d,1000".
KeepRuns DefaultKeepRuns();
// "30d", "12h", "100", "30d,100" (either order), or "all" (keep
// everything). InvalidArgument "--keep-runs 'x': ..." otherwise.
absl::StatusOr<KeepRuns> ParseKeepRuns(absl::string_view text);
// "30d,1000", "100", "all".
std::string FormatKeepRuns(const KeepRuns& keep);

// A run as the rule sees it.
struct RunAge {
  int64_t id = 0;
  bool finished = false;    // not RUN_RUNNING
  int64_t finished_ms = 0;
};

// The ids of `runs` (any order) to prune at `now`: finished runs past the
// `count` newest finished ones (by id), or finished before now - age.
// Running runs are never pruned and not counted.
std::vector<int64_t> RunsToPrune(std::vector<RunAge> runs, const KeepRuns& keep, absl::Time now);

struct RetentionOptions {
  KeepRuns keep = DefaultKeepRuns();
  // Instance rows deleted per write.
  int batch_rows = 2000;
  // Pause after each batch, so the scheduler's writes go first.
  absl::Duration pause = absl::Milliseconds(5);
  // Time between passes (the thread); a pass also runs at start.
  absl::Duration every = absl::Seconds(60);
};

// What a pass did.
struct PruneStats {
  int64_t runs_deleted = 0;  // rows gone
  int64_t runs_hidden = 0;   // kept for their suppressed/failed rows
  int64_t instances_deleted = 0;
  int64_t pages_freed = 0;
};

class Retention {
 public:
  Retention(Store* store, Clock* clock, RetentionOptions options);
  ~Retention();  // Stop
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;

  // One pass, on the caller's thread (blocks on the store's commits).
  absl::StatusOr<PruneStats> PruneOnce();
  // A pass now, then one every options.every, on a thread of its own.
  void Start();
  void Stop();

 private:
  absl::StatusOr<int64_t> PruneRun(int64_t run_id, PruneStats& stats);
  // Runs `apply` as one write and waits for its commit.
  absl::Status WriteAndWait(Store::RawApply apply);
  void Loop();

  Store* const store_;
  Clock* const clock_;
  const RetentionOptions options_;
  bool incremental_ = false;  // auto_vacuum=INCREMENTAL; set by PruneOnce's thread

  absl::Mutex mu_;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_RETENTION_H_
