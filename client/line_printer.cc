#include "client/line_printer.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/escape.h"

namespace asflow {

std::string Label(const v1::Instance& instance) {
  std::vector<std::pair<std::string, std::string>> params(instance.params().begin(),
                                                          instance.params().end());
  std::sort(params.begin(), params.end());
  std::vector<std::string> parts;
  for (const auto& [k, v] : params) parts.push_back(absl::StrCat(EscapeLine(k), "=", EscapeLine(v)));
  return absl::StrCat(EscapeLine(instance.task()), "(", absl::StrJoin(parts, ", "), ")");
}

std::string FormatDuration(int64_t ms) {
  if (ms < 0) ms = 0;
  if (ms < 60'000) return absl::StrFormat("%.1fs", ms / 1000.0);
  int64_t s = ms / 1000;
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
}

std::string RunStateName(v1::RunState state) {
  switch (state) {
    case v1::RUN_RUNNING: return "running";
    case v1::RUN_SUCCEEDED: return "succeeded";
    case v1::RUN_FAILED: return "failed";
    case v1::RUN_CANCELLED: return "cancelled";
    default: return "unknown";
  }
}

std::string MergedNote(const v1::TaskCounters& t) {
  if (t.merged() == 0) return "";
  return absl::StrCat(", ", t.merged(), " identical binding", t.merged() == 1 ? "" : "s", " merged");
}

std::string InstanceStateName(v1::InstanceState state) {
  if (state == v1::INSTANCE_STATE_UNSPECIFIED) return "unknown";
  return absl::AsciiStrToLower(v1::InstanceState_Name(state));
}

LinePrinter::LinePrinter(FILE* out, int64_t run_id) : out_(out), run_id_(run_id) {}

void LinePrinter::UpdateRun(const v1::Run& run) {
  if (run.id() != run_id_) return;
  for (const v1::TaskCounters& t : run.tasks()) {
    bool& announced = announced_[t.task()];
    if (t.expanded() && !announced) {
      announced = true;
      std::string cached = t.cached() > 0 ? absl::StrCat(", ", t.cached(), " cached") : "";
      Print("  %s: %d instance%s%s%s\n", t.task(), t.total(), t.total() == 1 ? "" : "s", cached,
            MergedNote(t));
    }
    // Said once each time it starts (e.g. the pool's last worker left).
    std::string& waiting = waiting_[t.task()];
    if (t.waiting() != waiting) {
      waiting = t.waiting();
      if (!waiting.empty()) Print("  waiting    %s: %s\n", t.task(), waiting);
    }
  }
  run_ = run;
}

void LinePrinter::Handle(const v1::Event& event) {
  last_seq_ = std::max(last_seq_, event.seq());
  if (event.has_snapshot()) {
    for (const v1::Run& run : event.snapshot().runs()) UpdateRun(run);
    for (const v1::Instance& inst : event.snapshot().running()) {
      if (inst.run_id() == run_id_) Print("  running    %s\n", Label(inst));
    }
  } else if (event.has_run()) {
    UpdateRun(event.run().run());
  } else if (event.has_instance()) {
    const v1::Instance& inst = event.instance().instance();
    if (inst.run_id() != run_id_) return;
    if (run_) {
      for (v1::TaskCounters& t : *run_->mutable_tasks()) {
        if (t.task() == event.instance().counters().task()) t = event.instance().counters();
      }
    }
    if (out_ == nullptr) return;  // only tracking: no labels to format
    if (event.instance().kind() == v1::InstanceEvent::STARTED) {
      if (inst.made_by_run() != 0) {
        Print("  start      %s  (run %d's command)\n", Label(inst), inst.made_by_run());
      } else {
        Print("  start      %s\n", Label(inst));
      }
    } else if (event.instance().kind() == v1::InstanceEvent::QUEUED && !inst.error().empty()) {
      // A cooldown's requeue is no attempt: say so (docs/flows.md, "Cooldown").
      const bool cooldown = absl::StrContains(inst.error(), "; queued again, not counted as an attempt: ");
      Print("  %s%s  %s\n", cooldown ? "cooldown   " : "retry      ", Label(inst),
            EscapeLine(inst.error().substr(0, inst.error().find('\n'))));
    } else if (event.instance().kind() == v1::InstanceEvent::FINISHED) {
      std::string detail;
      if (inst.state() == v1::DONE) {
        detail = absl::StrCat(FormatDuration(inst.finished_ms() - inst.started_ms()), "  ", inst.lines(),
                              " lines", inst.output().empty() ? "" : absl::StrCat("  -> ", EscapeLine(inst.output())));
      } else if (inst.made_by_run() != 0 && inst.state() == v1::CACHED) {
        detail = absl::StrCat("by run ", inst.made_by_run(), " (another command)",
                              inst.output().empty() ? "" : absl::StrCat("  -> ", EscapeLine(inst.output())));
      } else {
        detail = EscapeLine(inst.error().substr(0, inst.error().find('\n')));
      }
      Print("  %-10s %s  %s\n", InstanceStateName(inst.state()), Label(inst), detail);
    }
  }
  if (out_ != nullptr) std::fflush(out_);
}

void LinePrinter::PrintTotals() const {
  if (!run_) return;
  for (const v1::TaskCounters& t : run_->tasks()) {
    int64_t settled = t.done() + t.cached() + t.skipped() + t.suppressed() + t.failed() + t.cancelled();
    Print("  [totals] %s: %d/%d%s settled (%d done, %d cached, %d skipped, %d suppressed, %d failed), "
          "%d running, %d queued\n",
          t.task(), settled, t.total(), t.expanded() ? "" : "+", t.done(), t.cached(), t.skipped(),
          t.suppressed(), t.failed(), t.running(), t.queued());
  }
  if (out_ != nullptr) std::fflush(out_);
}

void LinePrinter::PrintSummary() const {
  if (!run_) return;
  const v1::Run& run = *run_;
  int64_t end = run.finished_ms() > 0 ? run.finished_ms() : run.created_ms();
  Print("run %d %s in %s (flow %s, workspace %s)\n", run.id(), RunStateName(run.state()),
                FormatDuration(end - run.created_ms()), EscapeLine(run.flow()), EscapeLine(run.workspace()));
  Print("  %-20s %8s %8s %8s %8s %10s %8s %9s\n", "task", "total", "done", "cached",
                "skipped", "suppressed", "failed", "cancelled");
  for (const v1::TaskCounters& t : run.tasks()) {
    Print("  %-20s %8d %8d %8d %8d %10d %8d %9d\n", t.task(), t.total(), t.done(), t.cached(),
                  t.skipped(), t.suppressed(), t.failed(), t.cancelled());
  }
  for (const v1::TaskCounters& t : run.tasks()) {
    if (t.merged() > 0) Print("  %s:%s\n", EscapeText(t.task()), MergedNote(t).substr(1));
  }
  if (!run.error().empty()) Print("error: %s\n", EscapeText(run.error()));
  if (out_ != nullptr) std::fflush(out_);
}

}  // namespace asflow
