// LogsReactor: one FlowService.Logs stream. First the stored tails of the
// matching instances' finished attempts (from SQLite), then what their
// running attempts wrote so far (the LogHub's kept tail), then — with
// `follow` — each chunk as it arrives, until the run's final state is
// committed. One write in flight; Finish exactly once; OnDone
// unsubscribes and frees the reactor.
#ifndef ASFLOW_SERVER_LOGS_REACTOR_H_
#define ASFLOW_SERVER_LOGS_REACTOR_H_

#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "asflow/v1/service.grpc.pb.h"
#include "server/guarded_callback.h"
#include "server/log_hub.h"
#include "server/run_reader.h"
#include "server/store.h"

namespace asflow {

class LogsReactor final : public grpc::ServerWriteReactor<v1::LogChunk> {
 public:
  // The filter of a request: InvalidArgument for a match without a task or
  // with too many terms.
  static absl::StatusOr<LogFilter> FilterOf(const v1::LogsRequest& request);

  // `logs`, `store` and `reader` must outlive every reactor. REQUIRES:
  // the run exists.
  LogsReactor(LogHub* logs, Store* store, const RunReader* reader, const v1::LogsRequest& request, LogFilter filter);

  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  void MaybeWrite();
  void FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  LogHub* const logs_;
  const bool follow_;
  std::shared_ptr<GuardedCallback> wake_ = std::make_shared<GuardedCallback>();
  std::shared_ptr<LogHub::Subscription> sub_;
  absl::Mutex mu_;
  std::deque<v1::LogChunk> queue_ ABSL_GUARDED_BY(mu_);
  v1::LogChunk writing_chunk_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // Nothing more will come: the queue is the rest of the stream.
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_LOGS_REACTOR_H_
