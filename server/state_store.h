// StateStore: what the scheduler needs of durable state, as an interface,
// so scheduler tests run on an in-memory fake (and a fault-injecting
// wrapper) instead of SQLite. Store (server/store.h) is the real one.
//
// Writes are asynchronous and applied in call order; each reports its own
// outcome to its callback exactly once, after the transaction that holds it
// ended: OK means committed, anything else means the write is lost (the
// state it describes is not on disk). Callbacks run on the store's writer
// thread and must not block. Thread-safe.
#ifndef ASFLOW_SERVER_STATE_STORE_H_
#define ASFLOW_SERVER_STATE_STORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/store_records.h"

namespace asflow {

class StateStore {
 public:
  using InstanceDone = std::function<void(const InstanceRecord&, const absl::Status&)>;
  using RunDone = std::function<void(const v1::Run&, const absl::Status&)>;
  using RowsDone = std::function<void(const absl::Status&)>;

  virtual ~StateStore() = default;

  // Inserts the run (ignoring run.id) and returns its new id, larger than
  // every id before. Synchronous: the run exists once this returns.
  virtual absl::StatusOr<int64_t> CreateRun(const v1::Run& run, const std::string& request) = 0;
  // Inserts or replaces instance (run_id, seq); `done` gets the record as
  // written and the write's status.
  virtual void PutInstance(InstanceRecord record, InstanceDone done = nullptr) = 0;
  // Inserts or replaces each row in one write.
  virtual void PutNew(NewRows rows, RowsDone done = nullptr) = 0;
  // Updates the run's state, finished_ms, error and stored v1::Run.
  virtual void PutRun(v1::Run run, RunDone done = nullptr) = 0;
  // Appends one attempt of an instance (its history: asflowctl show,
  // logs).
  virtual void PutAttempt(AttemptRecord record, RowsDone done = nullptr) = 0;
  // Replaces how the run was submitted (a code run's declared tasks).
  virtual void PutRunRequest(int64_t run_id, std::string request, RowsDone done = nullptr) = 0;
  // Waits until every write queued before is done; the first write error
  // since the previous Flush, or OK.
  virtual absl::Status Flush() = 0;

  // Reads of committed state.
  virtual absl::StatusOr<RunRecord> GetRun(int64_t id) = 0;
  virtual absl::StatusOr<std::vector<RunRecord>> ListRuns(int limit, bool only_running, int64_t before_id = 0,
                                                          bool with_request = true) = 0;
  virtual absl::StatusOr<std::vector<InstanceRecord>> LoadInstances(int64_t run_id) = 0;
  virtual absl::StatusOr<std::vector<FoundInstance>> FindInstances(const InstanceFilter& filter) = 0;
  // Daemon-wide facts (e.g. "boot_id"); "" when unset. SetMeta returns
  // once committed.
  virtual absl::StatusOr<std::string> GetMeta(const std::string& key) = 0;
  virtual absl::Status SetMeta(const std::string& key, const std::string& value) = 0;

  // Names the store in messages (its file).
  virtual const std::string& path() const = 0;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_STATE_STORE_H_
