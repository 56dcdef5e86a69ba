// ProgressSink: how `asflowctl run` and `watch` show a run they follow —
// the live view on a terminal, plain lines elsewhere, or JSON for scripts.
// Each sink also tracks the run's state (finished, final Run, last seq).
// Handle/Finish are called from the following thread; Suspend may be called
// from the Ctrl-C thread. Implementations are thread-safe.
#ifndef ASFLOW_CLIENT_PROGRESS_SINK_H_
#define ASFLOW_CLIENT_PROGRESS_SINK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "asflow/v1/service.pb.h"

namespace asflow {

// How progress is shown while following a run.
enum class ProgressMode {
  kAuto,   // the live view on a terminal, plain lines otherwise
  kLines,  // plain lines, no escape codes
  kJson,   // one JSON object per Watch event
};

class ProgressSink {
 public:
  virtual ~ProgressSink() = default;
  virtual void Handle(const v1::Event& event) = 0;
  // Events as the daemon sends them in a batch: each an encoded Event, in
  // seq order (views into the message read). By default each is decoded
  // and handled.
  virtual void HandleEncoded(const std::vector<absl::string_view>& events);
  virtual std::optional<v1::Run> run() const = 0;
  bool finished() const {
    std::optional<v1::Run> r = run();
    return r && r->state() != v1::RUN_RUNNING;
  }
  virtual int64_t last_seq() const = 0;
  // How often to take batches from the daemon (WatchRequest.batch_interval_ms):
  // 0 for the daemon's default (100 ms, the live view's redraw).
  virtual int batch_interval_ms() const { return 0; }
  // Shows a one-line notice (e.g. a lost connection) without breaking the
  // display.
  virtual void Notice(const std::string& line) = 0;
  // While suspended the display is cleared and not redrawn (e.g. while a
  // prompt is on the screen).
  virtual void Suspend(bool suspended) = 0;
  // The run ended: the final frame and the summary.
  virtual void Finish() = 0;
};

// kAuto picks the live view when stdout is a terminal, showing at most
// `max_running` running instances.
std::unique_ptr<ProgressSink> MakeProgressSink(ProgressMode mode, int64_t run_id, int max_running = 8);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_PROGRESS_SINK_H_
