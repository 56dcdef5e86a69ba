// LinePrinter: turns a Watch stream into plain progress lines — one line
// per instance started and finished, one per task when its instances are
// known, and a summary when the run ends. No escape codes, so it reads the
// same in a terminal, a log file or CI. Not thread-safe.
#ifndef ASFLOW_CLIENT_LINE_PRINTER_H_
#define ASFLOW_CLIENT_LINE_PRINTER_H_

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "asflow/v1/service.pb.h"

namespace asflow {

class LinePrinter {
 public:
  // Prints progress of `run_id` to `out` (not owned); with a null `out` it
  // only tracks the run's state.
  LinePrinter(FILE* out, int64_t run_id);

  void Handle(const v1::Event& event);
  // An event seen but not handed over (e.g. an instance event while only
  // tracking the run's state): only last_seq moves.
  void Skip(int64_t seq) { last_seq_ = std::max(last_seq_, seq); }
  // The run's state as last seen; nullopt before any event showed it.
  std::optional<v1::Run> run() const { return run_; }
  bool finished() const { return run_ && run_->state() != v1::RUN_RUNNING; }
  int64_t last_seq() const { return last_seq_; }
  // Prints the final table: per-task counts, duration, error.
  void PrintSummary() const;
  // One line per task with its progress so far (for periodic totals).
  void PrintTotals() const;

 private:
  void UpdateRun(const v1::Run& run);
  template <typename... Args>
  void Print(const absl::FormatSpec<Args...>& format, const Args&... args) const {
    if (out_ != nullptr) absl::FPrintF(out_, format, args...);
  }

  FILE* const out_;
  const int64_t run_id_;
  std::optional<v1::Run> run_;
  std::map<std::string, bool> announced_;  // task -> expansion printed
  std::map<std::string, std::string> waiting_;  // task -> last "waiting" printed
  int64_t last_seq_ = 0;
};

// "task(k=v, ...)".
std::string Label(const v1::Instance& instance);
// ", N identical bindings merged" for a task that merged some; else "".
std::string MergedNote(const v1::TaskCounters& counters);
// "1.2s", "3m04s".
std::string FormatDuration(int64_t ms);
std::string RunStateName(v1::RunState state);
std::string InstanceStateName(v1::InstanceState state);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_LINE_PRINTER_H_
