#include "server/stored_run_snapshot.h"

namespace asflow {

absl::StatusOr<std::unique_ptr<v1::Event>> StoredRunSnapshot(EventHub& hub, Store& store, int64_t run_id) {
  if (hub.FindRun(run_id)) return nullptr;
  auto rec = store.GetRun(run_id);
  if (!rec.ok()) return rec.status();
  // A running one is just being submitted: its first event is on its way.
  if (rec->run.state() == v1::RUN_RUNNING) return nullptr;
  // Committed as finished, so taken by the writer already: the callbacks
  // of that commit (which publish it) have run once the writes it has
  // taken are applied. A wait of one group commit at most, on a gRPC
  // thread: not for the whole queue.
  if (absl::Status s = store.AwaitCallbacks(); !s.ok()) return s;
  if (hub.FindRun(run_id)) return nullptr;
  auto snapshot = std::make_unique<v1::Event>();
  snapshot->set_seq(hub.last_seq());
  *snapshot->mutable_snapshot()->add_runs() = std::move(rec->run);
  return snapshot;
}

}  // namespace asflow
