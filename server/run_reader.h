// RunReader: the read side of asflow.v1.FlowService (GetRun, ListRuns,
// ListTasks) as plain functions of request and response messages, shared
// by the gRPC service and the HTTP JSON API so both answer alike. A run is
// read from the event hub's view while it is there (fresher than the
// store), else from the store. Thread-safe.
#ifndef ASFLOW_SERVER_RUN_READER_H_
#define ASFLOW_SERVER_RUN_READER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "asflow/v1/service.pb.h"
#include "server/event_hub.h"
#include "server/store.h"

namespace asflow {

class RunReader {
 public:
  // Both must outlive the reader.
  RunReader(EventHub* hub, Store* store) : hub_(hub), store_(store) {}

  // NotFound "run 42 not found".
  absl::StatusOr<v1::Run> GetRun(int64_t run_id) const;
  // InvalidArgument for a bad page_token.
  absl::StatusOr<v1::ListRunsResponse> ListRuns(const v1::ListRunsRequest& request) const;
  // NotFound for an unknown run; InvalidArgument for a bad page_token or a
  // params filter without a task.
  absl::StatusOr<v1::ListTasksResponse> ListTasks(const v1::ListTasksRequest& request) const;

  // Fills instance->attempt_history from the attempts table (and the
  // instance row for a clean success, which has no row of its own).
  absl::Status AddAttempts(const InstanceRecord& row, v1::Instance* instance) const;

 private:

  EventHub* const hub_;
  Store* const store_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_RUN_READER_H_
