#include "client/progress_view.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/escape.h"
#include "client/line_printer.h"

namespace asflow {
namespace {

// Below this width the rate/ETA and bytes/lines columns are dropped.
constexpr int kWideWidth = 60;
// Bars are never narrower than kMinBar (dropped instead) nor wider than kMaxBar.
constexpr int kMinBar = 10;
constexpr int kMaxBar = 20;
// Room kept for a task's extra counts ("12 cached, 1 failed") before the bar grows.
constexpr int kExtrasReserve = 20;

// Instances that got an outcome. Not the cancelled: a cancelled run's bar
// shows what was done, not a full bar (issue 15).
int64_t Final(const v1::TaskCounters& t) {
  return t.done() + t.cached() + t.skipped() + t.suppressed() + t.failed();
}

// Whole percent, never 100 before everything is final.
int64_t Percent(int64_t part, int64_t whole, bool complete) {
  if (whole <= 0) return complete ? 100 : 0;
  return part * 100 / whole;
}

std::string FirstLine(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string PadRight(const std::string& text, int width) {
  return text + std::string(std::max(0, width - DisplayWidth(text)), ' ');
}

std::string PadLeft(const std::string& text, int width) {
  return std::string(std::max(0, width - DisplayWidth(text)), ' ') + text;
}

std::string FormatRate(double per_second) {
  return per_second >= 10 ? absl::StrFormat("%.0f/s", per_second) : absl::StrFormat("%.1f/s", per_second);
}

// Control characters and escape sequences (a newline in a parameter value,
// ESC from an error) would break the frame or drive the terminal: shown
// escaped.
std::string Sanitize(absl::string_view text) { return EscapeLine(text); }

// How long a running instance has run; "-" if its start is unknown.
std::string Elapsed(const v1::Instance& inst, int64_t now_ms) {
  return inst.started_ms() > 0 ? FormatDuration(now_ms - inst.started_ms()) : "-";
}

std::string RTrim(std::string text) {
  while (!text.empty() && text.back() == ' ') text.pop_back();
  return text;
}

}  // namespace

int DisplayWidth(absl::string_view text) {
  int n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1000) return absl::StrCat(std::max<int64_t>(bytes, 0), " B");
  static const char* const kUnits[] = {"kB", "MB", "GB", "TB", "PB"};
  double value = bytes / 1000.0;
  int unit = 0;
  while (value >= 999.95 && unit < 4) {
    value /= 1000;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FormatClock(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 3600) return absl::StrFormat("%d:%02d", seconds / 60, seconds % 60);
  return absl::StrFormat("%d:%02d:%02d", seconds / 3600, (seconds / 60) % 60, seconds % 60);
}

ProgressView::ProgressView(int64_t run_id, ProgressViewOptions options)
    : run_id_(run_id), options_(options) {}

v1::TaskCounters* ProgressView::MutableTask(const std::string& task) {
  for (v1::TaskCounters& t : *run_->mutable_tasks()) {
    if (t.task() == task) return &t;
  }
  v1::TaskCounters* t = run_->add_tasks();
  t->set_task(task);
  return t;
}

void ProgressView::Apply(const v1::Event& event) {
  last_seq_ = std::max(last_seq_, event.seq());
  if (event.has_snapshot()) {
    // Whatever happened before is superseded, including what a gap hid:
    // rates restart from here rather than count a hole as idle time.
    for (const v1::Run& run : event.snapshot().runs()) {
      if (run.id() == run_id_) run_ = run;
    }
    running_.clear();
    retries_.clear();
    finish_times_.clear();
    history_since_ms_ = event.time_ms();
    // A task that had started before the snapshot: its start is before
    // history_since_ms_, which already bounds its rate.
    first_start_ms_.clear();
    if (run_) {
      for (const v1::TaskCounters& t : run_->tasks()) {
        if (t.running() + Final(t) - t.cached() > 0) first_start_ms_.emplace(t.task(), 0);
      }
    }
    for (const v1::Instance& inst : event.snapshot().running()) {
      if (inst.run_id() == run_id_) running_[inst.seq()] = inst;
    }
  } else if (event.has_run()) {
    if (event.run().run().id() == run_id_) run_ = event.run().run();
  } else if (event.has_instance()) {
    ApplyInstance(event.instance(), event.time_ms());
  }
}

void ProgressView::ApplyInstance(const v1::InstanceEvent& event, int64_t time_ms) {
  const v1::Instance& inst = event.instance();
  if (inst.run_id() != run_id_) return;
  if (run_ && !event.counters().task().empty()) *MutableTask(event.counters().task()) = event.counters();
  switch (event.kind()) {
    case v1::InstanceEvent::QUEUED:
      running_.erase(inst.seq());
      if (!inst.error().empty()) retries_[inst.seq()] = RetryNote{inst, time_ms};
      break;
    case v1::InstanceEvent::STARTED:
      first_start_ms_.emplace(inst.task(), time_ms);
      running_[inst.seq()] = inst;
      retries_.erase(inst.seq());
      break;
    case v1::InstanceEvent::PROGRESS: {
      auto it = running_.find(inst.seq());
      if (it == running_.end()) {
        running_[inst.seq()] = inst;  // started before a snapshot we missed
      } else {
        it->second.set_bytes(inst.bytes());
        it->second.set_lines(inst.lines());
      }
      break;
    }
    case v1::InstanceEvent::FINISHED: {
      running_.erase(inst.seq());
      retries_.erase(inst.seq());
      finished_.push_front(inst);
      while (static_cast<int>(finished_.size()) > std::max(options_.max_finished, 0)) finished_.pop_back();
      std::deque<int64_t>& times = finish_times_[inst.task()];
      times.push_back(time_ms);
      int64_t horizon = time_ms - absl::ToInt64Milliseconds(options_.rate_window);
      while (!times.empty() && times.front() <= horizon) times.pop_front();
      break;
    }
    default:
      break;
  }
}

std::optional<double> ProgressView::Rate(const std::string& task, int64_t now_ms) const {
  auto it = finish_times_.find(task);
  if (it == finish_times_.end()) return std::nullopt;
  int64_t window_start = now_ms - absl::ToInt64Milliseconds(options_.rate_window);
  int64_t count = std::count_if(it->second.begin(), it->second.end(),
                                [&](int64_t t) { return t > window_start && t <= now_ms; });
  if (count == 0) return std::nullopt;
  // A window reaching back before the run (or the last snapshot) would
  // count time when nothing could have been seen as idle.
  // Nor time before the task's first start (its upstream tasks running):
  // counted, it made early ETAs far too long.
  auto first = first_start_ms_.find(task);
  int64_t from = std::max({window_start, history_since_ms_, run_ ? run_->created_ms() : 0,
                           first != first_start_ms_.end() ? first->second : 0});
  int64_t span_ms = std::max<int64_t>(now_ms - from, 1000);
  return count * 1000.0 / span_ms;
}

std::string ProgressView::Bar(int64_t part, int64_t whole, int width) const {
  int filled = whole > 0 ? static_cast<int>(std::clamp<int64_t>(part, 0, whole) * width / whole) : 0;
  std::string bar;
  for (int i = 0; i < width; ++i) {
    bar += i < filled ? (options_.plain ? "#" : "█") : (options_.plain ? "." : "░");
  }
  return bar;
}

std::string ProgressView::Fit(absl::string_view text, int width) const {
  std::string clean = Sanitize(text);
  if (DisplayWidth(clean) <= width) return clean;
  if (width <= 0) return "";
  int ellipsis = DisplayWidth(Ellipsis());
  int keep = width > ellipsis ? width - ellipsis : width;
  // Cut after `keep` code points.
  size_t cut = 0;
  for (int points = 0; cut < clean.size(); ++cut) {
    if ((static_cast<unsigned char>(clean[cut]) & 0xC0) != 0x80 && points++ == keep) break;
  }
  clean.resize(cut);
  if (width > ellipsis) clean += Ellipsis();
  return clean;
}

std::vector<std::string> ProgressView::Render(absl::Time now, int width) const {
  width = std::max(width, 1);
  std::vector<std::string> lines;
  auto add = [&](const std::string& line) { lines.push_back(Fit(RTrim(line), width)); };
  if (!run_) {
    add(absl::StrCat("waiting for run ", run_id_, Ellipsis()));
    return lines;
  }
  const v1::Run& run = *run_;
  const int64_t now_ms = absl::ToUnixMillis(now);
  const bool wide = width >= kWideWidth;
  const bool running = run.state() == v1::RUN_RUNNING;

  // Task rows: cells first, then column widths, then lines.
  struct Row {
    std::string name, pct, frac, rate, eta, extras;
    int64_t final = 0, total = 0;
  };
  std::vector<Row> rows;
  int64_t all_final = 0, all_total = 0;
  bool all_expanded = true;
  int name_w = 0, frac_w = 0, rate_w = 0, eta_w = 0, extras_w = 0;
  for (const v1::TaskCounters& t : run.tasks()) {
    Row row;
    row.name = t.task();
    row.final = Final(t);
    row.total = t.total();
    const int64_t remaining = t.total() - row.final;
    row.pct = absl::StrCat(Percent(row.final, t.total(), t.expanded()), "%");
    row.frac = absl::StrCat(row.final, "/", t.total(), t.expanded() ? "" : "+");
    std::optional<double> rate = Rate(t.task(), now_ms);
    row.rate = rate ? FormatRate(*rate) : "--/s";
    std::string eta = "--";
    if (t.expanded() && remaining <= 0) {
      eta = FormatClock(0);
    } else if (t.expanded() && rate) {
      eta = FormatClock(static_cast<int64_t>(std::ceil(remaining / *rate)));
    }
    row.eta = absl::StrCat("ETA ", eta);
    std::vector<std::string> extras;
    if (t.cached() > 0) extras.push_back(absl::StrCat(t.cached(), " cached"));
    if (t.skipped() > 0) extras.push_back(absl::StrCat(t.skipped(), " skipped"));
    if (t.suppressed() > 0) extras.push_back(absl::StrCat(t.suppressed(), " suppressed"));
    if (t.failed() > 0) extras.push_back(absl::StrCat(t.failed(), " failed"));
    if (t.cancelled() > 0) extras.push_back(absl::StrCat(t.cancelled(), " cancelled"));
    if (t.retrying() > 0) extras.push_back(absl::StrCat(t.retrying(), " retrying"));
    row.extras = absl::StrJoin(extras, ", ");
    all_final += row.final;
    all_total += t.total();
    all_expanded = all_expanded && t.expanded();
    name_w = std::max(name_w, DisplayWidth(row.name));
    frac_w = std::max(frac_w, DisplayWidth(row.frac));
    rate_w = std::max(rate_w, DisplayWidth(row.rate));
    eta_w = std::max(eta_w, DisplayWidth(row.eta));
    extras_w = std::max(extras_w, DisplayWidth(row.extras));
    rows.push_back(std::move(row));
  }
  name_w = std::min(name_w, std::max(8, width / 4));
  const int fixed = 2 + name_w + 2 + 4 + 2 + frac_w + (wide ? 2 + rate_w + 2 + eta_w : 0);
  const int bar_room = width - fixed - 2;
  const int reserve = extras_w > 0 ? std::min(extras_w, kExtrasReserve) + 2 : 0;
  const int bar_w = bar_room < kMinBar ? 0 : std::clamp(bar_room - reserve, kMinBar, kMaxBar);

  // Flow line; its bar shrinks, then goes, when the line does not fit.
  const int64_t end_ms = run.finished_ms() > 0 ? run.finished_ms() : now_ms;
  const std::string head = absl::StrCat(Sanitize(run.flow()), "  run ", run.id(), "  ", RunStateName(run.state()),
                                        "  ", FormatClock((end_ms - run.created_ms()) / 1000));
  const std::string tail = absl::StrCat(Percent(all_final, all_total, all_expanded), "%  ", all_final, "/",
                                        all_total, all_expanded ? "" : "+");
  const int flow_bar_w = std::min(bar_w, width - DisplayWidth(head) - DisplayWidth(tail) - 4);
  add(flow_bar_w >= kMinBar ? absl::StrCat(head, "  ", Bar(all_final, all_total, flow_bar_w), "  ", tail)
                            : absl::StrCat(head, "  ", tail));
  // A finished run's error is the summary's last line: said once.
  if (!run.error().empty() && running) add(absl::StrCat("error: ", Sanitize(FirstLine(run.error()))));

  for (const Row& row : rows) {
    std::string line = absl::StrCat("  ", PadRight(Fit(row.name, name_w), name_w));
    if (bar_w > 0) absl::StrAppend(&line, "  ", Bar(row.final, row.total, bar_w));
    absl::StrAppend(&line, "  ", PadLeft(row.pct, 4), "  ", PadLeft(row.frac, frac_w));
    if (wide) absl::StrAppend(&line, "  ", PadLeft(row.rate, rate_w), "  ", PadRight(row.eta, eta_w));
    if (!row.extras.empty()) absl::StrAppend(&line, "  ", row.extras);
    add(line);
  }

  // Running instances, longest-running first.
  // Once the run ended nothing runs, whatever events were missed.
  std::vector<const v1::Instance*> active;
  if (running) {
    for (const auto& [seq, inst] : running_) active.push_back(&inst);
  }
  std::stable_sort(active.begin(), active.end(), [](const v1::Instance* a, const v1::Instance* b) {
    return a->started_ms() < b->started_ms();
  });
  const size_t shown = std::min(active.size(), static_cast<size_t>(std::max(options_.max_running, 0)));
  int label_w = 0, bytes_w = 0, count_w = 0, elapsed_w = 0;
  for (size_t i = 0; i < shown; ++i) {
    label_w = std::max(label_w, DisplayWidth(Label(*active[i])));
    bytes_w = std::max(bytes_w, DisplayWidth(FormatBytes(active[i]->bytes())));
    count_w = std::max(count_w, DisplayWidth(absl::StrCat(active[i]->lines(), " lines")));
    elapsed_w = std::max(elapsed_w, DisplayWidth(Elapsed(*active[i], now_ms)));
  }
  const int io_w = wide ? 2 + bytes_w + 2 + count_w : 0;
  label_w = std::min(label_w, std::max(8, width - 4 - io_w - 2 - elapsed_w));
  for (size_t i = 0; i < shown; ++i) {
    const v1::Instance& inst = *active[i];
    std::string line = absl::StrCat("    ", PadRight(Fit(Label(inst), label_w), label_w));
    if (wide) {
      absl::StrAppend(&line, "  ", PadLeft(FormatBytes(inst.bytes()), bytes_w), "  ",
                      PadLeft(absl::StrCat(inst.lines(), " lines"), count_w));
    }
    absl::StrAppend(&line, "  ", PadLeft(Elapsed(inst, now_ms), elapsed_w));
    add(line);
  }
  if (active.size() > shown) add(absl::StrCat("    ", Ellipsis(), " and ", active.size() - shown, " more running"));

  // Tasks with work ready but none of it running: held by a pool slot, a
  // concurrency limit, a rate or a retry's backoff.
  if (running) {
    for (const v1::TaskCounters& t : run.tasks()) {
      if (t.running() > 0 && t.queued() > 0 && !t.waiting().empty()) {
        // A throttle key cooling down or paused: what runs finishes.
        add(absl::StrCat("  ", t.task(), ": ", t.queued(), " queued: ", t.waiting()));
        continue;
      }
      if (t.running() > 0 || t.queued() <= 0) continue;
      if (t.queued() > t.retrying() && !t.waiting().empty()) {
        add(absl::StrCat("  ", t.task(), ": ", t.queued(), " queued, none running: ", t.waiting()));
      } else if (t.queued() > t.retrying()) {
        add(absl::StrCat("  ", t.task(), ": ", t.queued(), " queued, none running (waiting for a pool slot, limit or rate)"));
      } else {
        add(absl::StrCat("  ", t.task(), ": ", t.retrying(), " waiting to retry"));
      }
    }
  }

  // Retry notes, newest first.
  std::vector<const RetryNote*> notes;
  if (running) {
    for (const auto& [seq, note] : retries_) notes.push_back(&note);
  }
  std::stable_sort(notes.begin(), notes.end(),
                   [](const RetryNote* a, const RetryNote* b) { return a->time_ms > b->time_ms; });
  for (size_t i = 0; i < notes.size() && static_cast<int>(i) < options_.max_retries; ++i) {
    const v1::Instance& inst = notes[i]->instance;
    add(absl::StrCat("  retry ", Label(inst), ": ", Sanitize(FirstLine(inst.error()))));
  }

  for (const v1::Instance& inst : finished_) {
    std::string detail = inst.state() == v1::DONE
                             ? absl::StrCat(FormatDuration(inst.finished_ms() - inst.started_ms()), "  ",
                                            inst.lines(), " lines")
                             : Sanitize(FirstLine(inst.error()));
    if (inst.made_by_run() != 0 && inst.state() == v1::CACHED) {
      detail = absl::StrCat("by run ", inst.made_by_run(), " (another command)");
    }
    add(absl::StrCat("  ", PadRight(InstanceStateName(inst.state()), 10), " ", Label(inst), "  ", detail));
  }
  return lines;
}

std::vector<std::string> ProgressView::Summary() const {
  std::vector<std::string> lines;
  if (!run_) return lines;
  const v1::Run& run = *run_;
  const int64_t end = run.finished_ms() > 0 ? run.finished_ms() : run.created_ms();
  lines.push_back(absl::StrFormat("run %d %s in %s (flow %s)", run.id(), RunStateName(run.state()),
                                  FormatDuration(end - run.created_ms()), Sanitize(run.flow())));
  std::vector<std::vector<std::string>> table = {
      {"task", "total", "done", "cached", "skipped", "suppressed", "failed", "cancelled"}};
  for (const v1::TaskCounters& t : run.tasks()) {
    table.push_back({Sanitize(t.task()), absl::StrCat(t.total()), absl::StrCat(t.done()),
                     absl::StrCat(t.cached()), absl::StrCat(t.skipped()), absl::StrCat(t.suppressed()),
                     absl::StrCat(t.failed()), absl::StrCat(t.cancelled())});
  }
  std::vector<int> widths(table[0].size(), 0);
  for (const auto& cells : table) {
    for (size_t c = 0; c < cells.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(cells[c]));
  }
  for (const auto& cells : table) {
    std::string line = absl::StrCat("  ", PadRight(cells[0], widths[0]));
    for (size_t c = 1; c < cells.size(); ++c) absl::StrAppend(&line, "  ", PadLeft(cells[c], widths[c]));
    lines.push_back(line);
  }
  for (const v1::TaskCounters& t : run.tasks()) {
    if (t.merged() > 0) lines.push_back(absl::StrCat("  ", Sanitize(t.task()), ":", MergedNote(t).substr(1)));
  }
  if (!run.error().empty()) lines.push_back(absl::StrCat("error: ", Sanitize(FirstLine(run.error()))));
  return lines;
}

}  // namespace asflow
