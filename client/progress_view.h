// ProgressView: the live progress screen of one run — a pure model fed with
// Watch events and a renderer that turns it into lines no wider than the
// terminal. No I/O and no clock reads: callers pass `now`. Drawing the lines
// on a TTY is TerminalRenderer's job. Not thread-safe.
#ifndef ASFLOW_CLIENT_PROGRESS_VIEW_H_
#define ASFLOW_CLIENT_PROGRESS_VIEW_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "asflow/v1/service.pb.h"

namespace asflow {

struct ProgressViewOptions {
  // Running instances listed at most; the rest become "… and K more running".
  int max_running = 8;
  // Most recently finished instances listed under the running ones.
  int max_finished = 3;
  // Retry notes listed at most (newest first).
  int max_retries = 3;
  // Rates are instances finished per second over this trailing window.
  absl::Duration rate_window = absl::Seconds(10);
  // ASCII only: bars of '#' and '.', "..." instead of "…".
  bool plain = false;
};

class ProgressView {
 public:
  ProgressView(int64_t run_id, ProgressViewOptions options = {});

  // Folds one Watch event in. Events of other runs are ignored; a snapshot
  // replaces everything known (gap or not).
  void Apply(const v1::Event& event);

  // The screen at `now`: the flow line, one line per task, the running
  // instances and notes. No line is wider than `width` display columns
  // (UTF-8 code points). Before any event: a single "waiting" line.
  std::vector<std::string> Render(absl::Time now, int width) const;

  // The final table: run state and duration, per-task counts, the error.
  // Empty before any event showed the run.
  std::vector<std::string> Summary() const;

  // The run as last seen; nullopt before any event showed it.
  const std::optional<v1::Run>& run() const { return run_; }
  bool finished() const { return run_ && run_->state() != v1::RUN_RUNNING; }
  // The highest event seq applied: pass as WatchRequest.from_seq to resume.
  int64_t last_seq() const { return last_seq_; }

 private:
  struct RetryNote {
    v1::Instance instance;
    int64_t time_ms = 0;
  };

  v1::TaskCounters* MutableTask(const std::string& task);
  void ApplyInstance(const v1::InstanceEvent& event, int64_t time_ms);
  // Instances of `task` finished per second around `now`; nullopt if none
  // finished within the window.
  std::optional<double> Rate(const std::string& task, int64_t now_ms) const;

  // `width` cells, the first width*part/whole of them filled.
  std::string Bar(int64_t part, int64_t whole, int width) const;
  std::string Fit(absl::string_view text, int width) const;
  const char* Ellipsis() const { return options_.plain ? "..." : "…"; }

  // Constant after construction.
  const int64_t run_id_;
  const ProgressViewOptions options_;

  std::optional<v1::Run> run_;
  std::map<int64_t, v1::Instance> running_;  // by Instance.seq
  std::map<int64_t, RetryNote> retries_;     // by Instance.seq, until it starts again
  std::deque<v1::Instance> finished_;        // newest first, at most max_finished
  // Per task: time_ms of FINISHED events within the last rate_window.
  std::map<std::string, std::deque<int64_t>> finish_times_;
  // Finish times are complete only from here on (the last snapshot).
  int64_t history_since_ms_ = 0;
  // Per task: when its first instance started (as seen by this view).
  std::map<std::string, int64_t> first_start_ms_;
  int64_t last_seq_ = 0;
};

// Display columns of UTF-8 `text` (code points; wide glyphs count as one).
int DisplayWidth(absl::string_view text);
// "0 B", "999 B", "1.2 kB", "3.4 MB" (powers of 1000).
std::string FormatBytes(int64_t bytes);
// "0:42", "12:05", "1:02:03".
std::string FormatClock(int64_t seconds);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_PROGRESS_VIEW_H_
