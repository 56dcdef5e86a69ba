// EventStream: one HTTP event stream (Server-Sent Events) of asflowd's
// event hub: GET /api/v1/events. Each SSE message carries the events of one
// hub batch as a JSON array of asflow.v1.Event in protobuf's JSON mapping
// (the messages Watch sends), with the seq of its last event as the SSE id,
// so a reconnecting EventSource resumes with Last-Event-ID. With `summary`
// the events go through an EventCoalescer first (what the dashboard
// uses): a few events per tick however busy the run. The caller's thread
// (an HTTP worker) pulls text with Next; the hub's notification only wakes
// it. Thread-safe: Close may be called from any thread.
#ifndef ASFLOW_SERVER_EVENT_STREAM_H_
#define ASFLOW_SERVER_EVENT_STREAM_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/service.pb.h"
#include "server/event_coalescer.h"
#include "server/event_hub.h"
#include "server/store.h"

namespace asflow {

struct EventStreamOptions {
  int64_t run_id = 0;    // 0: every run
  int64_t from_seq = 0;  // resume after this event (not with summary)
  bool summary = false;  // coalesced for a dashboard (see EventCoalescer)
  // The hub hands events at most this often (it clamps to [100 ms, 1 s]).
  absl::Duration interval = absl::Milliseconds(250);
  // With nothing to send this long, a comment line keeps proxies from
  // closing the stream and finds a closed one.
  absl::Duration keepalive = absl::Seconds(10);
};

class EventStream {
 public:
  // NotFound if run_id names no run. A run that finished long ago (no
  // longer in the hub's view) gets its stored state as a snapshot, then the
  // end. `hub` and `store` must outlive the stream.
  static absl::StatusOr<std::unique_ptr<EventStream>> Open(EventHub* hub, Store* store,
                                                           const EventStreamOptions& options);
  ~EventStream();

  // Waits up to `wait` for events, then appends the SSE text of what there
  // is to *out (possibly nothing, or a keep-alive comment). False once the
  // stream is over: its run ended (the last text, an "end" event, has then
  // been appended) or Close was called (no "end": the daemon is stopping,
  // and a browser should come back).
  bool Next(absl::Duration wait, std::string* out);
  // Ends the stream: a waiting Next returns false at once.
  void Close();

 private:
  // Woken by the hub; outlives the stream if the hub still holds the
  // notification.
  struct Signal {
    absl::Mutex mu;
    bool ready ABSL_GUARDED_BY(mu) = true;
    bool closed ABSL_GUARDED_BY(mu) = false;
  };

  EventStream(EventHub* hub, const EventStreamOptions& options);
  // Whether the followed run ended before this stream's events begin (it
  // resumed after the final event); sets ended_before_. With mu of
  // signal_ held: only reads the hub.
  bool RunEndedBefore();
  // Appends one SSE message holding `events` (JSON array) with id `seq`.
  static void AppendMessage(const std::vector<v1::Event>& events, int64_t seq, std::string* out);

  EventHub* const hub_;
  const EventStreamOptions options_;
  const std::shared_ptr<Signal> signal_ = std::make_shared<Signal>();
  std::shared_ptr<EventHub::Subscription> sub_;
  std::optional<EventCoalescer> coalescer_;
  // A finished run's stored state, sent instead of subscribing.
  std::optional<v1::Event> final_snapshot_;
  bool started_ = false;
  bool ended_before_ = false;
  bool ended_ = false;
  absl::Time last_write_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_EVENT_STREAM_H_
