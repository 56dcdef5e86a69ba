// ScheduleTimes: when a schedule fires. `--every 6h` fires at created +
// k x 6h; `--cron "0 */6 * * *"` at the minutes a five-field cron
// expression matches, read in UTC (no daylight-saving gaps or repeats).
// Pure: the caller passes the time. A plain value type; thread-compatible.
#ifndef ASFLOW_SERVER_SCHEDULE_TIMES_H_
#define ASFLOW_SERVER_SCHEDULE_TIMES_H_

#include <bitset>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace asflow {

// A five-field cron expression: minute hour day-of-month month
// day-of-week. Each field is `*`, a number, a range `a-b`, a step `*/n`
// or `a-b/n` or `a/n`, or a comma-separated list of those; months and
// weekdays also by name (jan, mon); weekday 0 and 7 are Sunday. As in
// Vixie cron, when both day fields are restricted a day matching either
// one matches. `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` too.
class CronExpr {
 public:
  // InvalidArgument naming the field and the bad item, e.g.
  // "cron '61 * * * *': minute: 61 is out of range 0-59".
  static absl::StatusOr<CronExpr> Parse(absl::string_view text);

  // The first whole minute strictly after `after` (UTC) that matches;
  // InfiniteFuture if none in the next 8 years (e.g. "0 0 30 2 *").
  absl::Time Next(absl::Time after) const;

 private:
  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_;    // 1..31
  std::bitset<13> months_;  // 1..12
  std::bitset<7> weekdays_; // 0..6, Sunday 0
  bool days_restricted_ = false;
  bool weekdays_restricted_ = false;
};

// An `--every` interval or a cron expression, and the time it counts from.
class ScheduleTimes {
 public:
  // Exactly one of `every` (> 0, at least 1s) or `cron` (non-empty);
  // InvalidArgument otherwise, or for a bad expression.
  static absl::StatusOr<ScheduleTimes> Make(absl::Duration every, absl::string_view cron, absl::Time anchor);

  // The first fire strictly after `after`: anchor + k x every (k >= 1), or
  // the cron expression's next minute.
  absl::Time NextAfter(absl::Time after) const;

 private:
  absl::Duration every_ = absl::ZeroDuration();
  absl::Time anchor_;
  bool is_cron_ = false;
  CronExpr cron_;
};

// "6h", "90m", "1d", "30s", "1h30m": a positive duration; "d" is 24h.
absl::StatusOr<absl::Duration> ParseEvery(absl::string_view text);

}  // namespace asflow

#endif  // ASFLOW_SERVER_SCHEDULE_TIMES_H_
