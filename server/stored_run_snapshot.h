// StoredRunSnapshot: what a Watch of one run starts from when the event
// hub does not hold that run. A run the hub does not hold is either
// finished long ago (evicted from its view, or from before a restart) —
// then its stored state is the whole stream, as a final snapshot — or just
// submitted, with its first events on their way to the hub.
//
// The store commits a transaction before its writer thread runs the
// callbacks that publish it, so between the two a read sees a run that
// failed at submission as failed while the hub has not heard of it: a
// Watch answered from the store then would miss the instance events
// (`asflowctl run` printed the failure only in the summary, under load).
// So a finished stored run waits for the writes the store's writer has
// taken (its commit among them) to be handed to their callbacks, and is
// served from the store only if the hub still does not hold it.
#ifndef ASFLOW_SERVER_STORED_RUN_SNAPSHOT_H_
#define ASFLOW_SERVER_STORED_RUN_SNAPSHOT_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "asflow/v1/service.pb.h"
#include "server/event_hub.h"
#include "server/store.h"

namespace asflow {

// The snapshot (seq: the hub's last) holding run `run_id` as stored, if the
// Watch is to be answered from the store; null if it is to subscribe to
// the hub (which holds the run, or will: it is still running). NotFound
// for an unknown run. May block for the writes the store has taken (one group
// commit), only when the hub does not hold the run and the store has it
// finished.
absl::StatusOr<std::unique_ptr<v1::Event>> StoredRunSnapshot(EventHub& hub, Store& store, int64_t run_id);

}  // namespace asflow

#endif  // ASFLOW_SERVER_STORED_RUN_SNAPSHOT_H_
