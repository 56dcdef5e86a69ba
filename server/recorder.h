// Recorder: turns the scheduler's state changes into store writes, and each
// committed write into its event on the hub. An event is published only
// once the state it shows is committed; a write that is lost (disk full,
// I/O error) publishes nothing and is reported to `on_lost` with the run it
// concerns, so the scheduler can fail that run with the store's error
// instead of telling anyone a state that is not on disk. Called on the
// scheduler thread; its write callbacks run on the store's writer thread
// (they only publish and report).
#ifndef ASFLOW_SERVER_RECORDER_H_
#define ASFLOW_SERVER_RECORDER_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "asflow/v1/service.pb.h"
#include "asflow/v1/session.pb.h"
#include "server/event_hub.h"
#include "server/log_hub.h"
#include "server/runner.h"
#include "server/run_state.h"
#include "server/state_store.h"

namespace asflow {

class Recorder {
 public:
  // Called on the store's writer thread: must only queue work.
  using LostFn = std::function<void(int64_t run_id, const absl::Status& status)>;
  // Sends an event to a code session (thread-safe, never blocks).
  using SessionSendFn = std::function<void(int64_t session, v1::SessionEvent event)>;

  // `store` and `hub` must outlive the recorder. `send` tells code
  // sessions what became of their calls and runs, once committed.
  // `logs` (may be null) hears when a run's final state is committed.
  Recorder(StateStore* store, EventHub* hub, LostFn on_lost, SessionSendFn send = nullptr, LogHub* logs = nullptr);

  // Writes the instance's row; once committed, publishes an instance event
  // of `kind` (none for KIND_UNSPECIFIED) with its task's counters as they
  // are now. bytes and lines: its output so far (PROGRESS) or in all
  // (FINISHED); `self`: the progress it reports itself. A final state of a
  // code run's instance answers the calls waiting for it (taken from
  // run.code->calls) once committed.
  void Instance(RunRt& run, int64_t seq, v1::InstanceEvent::Kind kind, int64_t bytes = 0, int64_t lines = 0,
                const SelfProgress* self = nullptr);
  // A new instance's first row (queued, or cached without error): batched
  // with the others of the expansion under way, else written at once.
  void NewInstance(RunRt& run, int64_t seq);
  // Sends the expansion's batched rows.
  void FlushNewInstances(RunRt& run);
  // Writes the run (state, counters); publishes it once committed (and
  // tells a code run's session when it is over).
  void Run(const RunRt& run);
  // Stores a run's request again (a code run's declared tasks).
  void Request(const RunRt& run);
  // The run failed because the store lost a write: its record is written
  // if the store can, and the event is published at once, since clients
  // must hear why their run stopped although the store may keep an older
  // state (the run then resumes at the next start). The event's counters
  // are the last committed ones.
  void RunLost(const RunRt& run);
  // A row written for a run not (or no longer) active.
  void Row(InstanceRecord record);

  // The API form of a run as the scheduler holds it.
  static v1::Run RunProto(const RunRt& run);

 private:
  StateStore* const store_;
  EventHub* const hub_;
  const LostFn on_lost_;
  const SessionSendFn send_;
  LogHub* const logs_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_RECORDER_H_
