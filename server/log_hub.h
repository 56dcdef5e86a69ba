// LogHub: the live stderr of running attempts, for FlowService.Logs
// (asflowctl logs -f). Runners append each chunk of an attempt's stderr as
// it arrives (from their own threads, without going through the
// scheduler); the hub keeps the last `keep_bytes` of each running attempt
// (so a reader that joins late sees what its stored tail would hold) and
// copies every chunk to the subscribers whose filter matches one of the
// attempt's instances. An attempt stays here until its row in the store
// is committed (End), so a reader that reads the store after subscribing
// finds every attempt in one place or the other. Each subscriber's queue
// is bounded: what a slow reader misses is counted, never buffered
// without end. Thread-safe.
#ifndef ASFLOW_SERVER_LOG_HUB_H_
#define ASFLOW_SERVER_LOG_HUB_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.pb.h"
#include "server/runner.h"

namespace asflow {

// One instance an attempt runs for (an execution shared by runs has one
// per run).
struct LogSource {
  int64_t run_id = 0;
  int64_t seq = 0;
  std::string task;
  std::string params;  // canonical JSON (CanonicalParams)
};

// Which instances a reader wants: one run, optionally one task and
// bindings that contain each needle (ParamNeedle).
struct LogFilter {
  int64_t run_id = 0;
  std::string task;
  std::vector<std::string> needles;
  bool Matches(const LogSource& source) const;
};

// An attempt of one instance: (run_id, seq, started_ms) tells it apart
// from the same instance's other attempts.
using AttemptKey = std::tuple<int64_t, int64_t, int64_t>;

class LogHub {
 public:
  // Bytes a subscriber may have queued before further chunks are dropped
  // (and counted in the next chunk's dropped_bytes).
  static constexpr size_t kMaxQueuedBytes = 1 << 20;

  // `keep_bytes`: the live tail kept per running attempt (asflowd
  // --stderr-tail).
  explicit LogHub(size_t keep_bytes) : keep_bytes_(keep_bytes) {}
  LogHub(const LogHub&) = delete;
  LogHub& operator=(const LogHub&) = delete;

  // Execution `id` starts attempt `attempt` at `started_ms` for `sources`.
  // Replaces what an earlier attempt of `id` left (it ends on its own).
  void Begin(ExecId id, int attempt, int64_t started_ms, std::vector<LogSource> sources);
  // A run joins the running attempt of `id` (an instance shared by runs).
  void Join(ExecId id, LogSource source);
  // The next bytes of `id`'s running attempt's stderr. Unknown ids are
  // ignored.
  void Append(ExecId id, absl::string_view data);
  // The attempt of `id` that started at `started_ms` is over and in the
  // store (or needs no row): readers find it there from now on.
  void End(ExecId id, int64_t started_ms);
  // Run `run_id`'s final state is committed: followers of it stop.
  void RunEnded(int64_t run_id);

  // A reader's queue. Thread-safe.
  class Subscription {
   public:
    // The chunks queued since the last call, in order; `run_ended` is set
    // once the run has ended (after those chunks).
    std::vector<v1::LogChunk> Take(bool* run_ended);

   private:
    friend class LogHub;
    Subscription(LogHub* hub, LogFilter filter, std::function<void()> notify)
        : hub_(hub), filter_(std::move(filter)), notify_(std::move(notify)) {}
    LogHub* const hub_;
    const LogFilter filter_;
    const std::function<void()> notify_;
    // Guarded by hub_->mu_.
    std::vector<v1::LogChunk> queue_;
    size_t queued_bytes_ = 0;
    bool run_ended_ = false;
    absl::flat_hash_map<AttemptKey, int64_t> dropped_;
  };

  // Subscribes a reader. `snapshot` gets, for each matching running (or
  // not yet stored) attempt, one chunk with its kept tail (possibly
  // empty), and `live` their keys; later chunks go to the subscription,
  // and `notify` is called (from the appending thread, no hub lock held;
  // it must not block) whenever its queue was empty and is not any more,
  // or the run ends.
  std::shared_ptr<Subscription> Subscribe(LogFilter filter, std::function<void()> notify,
                                          std::vector<v1::LogChunk>* snapshot, absl::flat_hash_set<AttemptKey>* live);
  void Unsubscribe(const std::shared_ptr<Subscription>& sub);

  // Attempts held (for tests).
  size_t attempts() const;

 private:
  struct Attempt {
    int attempt = 0;
    int64_t started_ms = 0;
    std::vector<LogSource> sources;
    std::string tail;  // the last keep_bytes_
    int64_t total = 0;  // bytes appended
  };

  static v1::LogChunk ChunkFor(const Attempt& a, const LogSource& s, absl::string_view data);
  // Queues `chunk` on `sub`; true if its queue was empty before.
  bool QueueLocked(Subscription& sub, v1::LogChunk chunk, const AttemptKey& key) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t keep_bytes_;
  mutable absl::Mutex mu_;
  // The attempt each execution runs now.
  absl::flat_hash_map<ExecId, std::shared_ptr<Attempt>> running_ ABSL_GUARDED_BY(mu_);
  // Attempts over but not yet stored, by (exec, started_ms).
  absl::flat_hash_map<std::pair<ExecId, int64_t>, std::shared_ptr<Attempt>> unstored_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscription>> subs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LOG_HUB_H_
