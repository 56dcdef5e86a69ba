#include "server/schedule_times.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/civil_time.h"

namespace asflow {
namespace {

struct FieldSpec {
  const char* name;
  int lo, hi;
  std::vector<const char*> names;  // names[i] is value lo + i
};

const FieldSpec kFields[5] = {
    {"minute", 0, 59, {}},
    {"hour", 0, 23, {}},
    {"day of month", 1, 31, {}},
    {"month", 1, 12, {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
    // 7 is Sunday too; folded into 0 after parsing.
    {"day of week", 0, 7, {"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
};

absl::StatusOr<int> ParseValue(const FieldSpec& f, absl::string_view item, absl::string_view text) {
  int v = 0;
  if (!absl::SimpleAtoi(item, &v)) {
    const std::string lower = absl::AsciiStrToLower(item);
    bool found = false;
    for (size_t i = 0; i < f.names.size(); ++i) {
      if (lower == f.names[i]) {
        v = f.lo + static_cast<int>(i);
        found = true;
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat("cron '", text, "': ", f.name, ": '", item, "' is not a number"));
    }
  }
  if (v < f.lo || v > f.hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron '", text, "': ", f.name, ": ", v, " is out of range ", f.lo, "-", f.hi));
  }
  return v;
}

// Sets bits lo..hi of the field's values; returns whether the field is `*`.
absl::StatusOr<bool> ParseField(const FieldSpec& f, absl::string_view field, absl::string_view text,
                                std::vector<bool>& bits) {
  bits.assign(f.hi + 1, false);
  bool star = false;
  for (absl::string_view item : absl::StrSplit(field, ',')) {
    absl::string_view range = item;
    int step = 1;
    if (size_t slash = item.find('/'); slash != absl::string_view::npos) {
      range = item.substr(0, slash);
      if (!absl::SimpleAtoi(item.substr(slash + 1), &step) || step <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("cron '", text, "': ", f.name, ": step '", item.substr(slash + 1), "' is not a positive number"));
      }
    }
    int lo = f.lo, hi = f.hi;
    if (range == "*") {
      if (step == 1) star = true;
    } else if (size_t dash = range.find('-'); dash != absl::string_view::npos) {
      absl::StatusOr<int> a = ParseValue(f, range.substr(0, dash), text);
      if (!a.ok()) return a.status();
      absl::StatusOr<int> b = ParseValue(f, range.substr(dash + 1), text);
      if (!b.ok()) return b.status();
      if (*a > *b) {
        return absl::InvalidArgumentError(absl::StrCat("cron '", text, "': ", f.name, ": range ", range, " is empty"));
      }
      lo = *a;
      hi = *b;
    } else {
      absl::StatusOr<int> a = ParseValue(f, range, text);
      if (!a.ok()) return a.status();
      lo = *a;
      // "5/15" means 5, 20, 35, 50: from 5 to the end by 15.
      hi = item.find('/') != absl::string_view::npos ? f.hi : *a;
    }
    for (int v = lo; v <= hi; v += step) bits[v] = true;
  }
  return star;
}

}  // namespace

absl::StatusOr<CronExpr> CronExpr::Parse(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  std::string expanded;
  if (!t.empty() && t[0] == '@') {
    const std::string lower = absl::AsciiStrToLower(t);
    if (lower == "@hourly") {
      expanded = "0 * * * *";
    } else if (lower == "@daily" || lower == "@midnight") {
      expanded = "0 0 * * *";
    } else if (lower == "@weekly") {
      expanded = "0 0 * * 0";
    } else if (lower == "@monthly") {
      expanded = "0 0 1 * *";
    } else if (lower == "@yearly" || lower == "@annually") {
      expanded = "0 0 1 1 *";
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron '", text, "': unknown shortcut (@hourly, @daily, @weekly, @monthly, @yearly)"));
    }
    t = expanded;
  }
  std::vector<absl::string_view> fields = absl::StrSplit(t, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cron '", text, "': expected 5 fields (minute hour day-of-month month day-of-week), got ", fields.size()));
  }
  CronExpr e;
  std::vector<bool> bits;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<bool> star = ParseField(kFields[i], fields[i], text, bits);
    if (!star.ok()) return star.status();
    for (int v = kFields[i].lo; v <= kFields[i].hi; ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0: e.minutes_.set(v); break;
        case 1: e.hours_.set(v); break;
        case 2: e.days_.set(v); break;
        case 3: e.months_.set(v); break;
        case 4: e.weekdays_.set(v % 7); break;
      }
    }
    if (i == 2) e.days_restricted_ = !*star;
    if (i == 4) e.weekdays_restricted_ = !*star;
  }
  return e;
}

absl::Time CronExpr::Next(absl::Time after) const {
  const absl::TimeZone utc = absl::UTCTimeZone();
  absl::CivilMinute m = absl::ToCivilMinute(after, utc) + 1;
  const absl::CivilMinute end = m + 8 * 366 * 24 * 60;
  while (m < end) {
    if (!months_.test(m.month())) {
      m = absl::CivilMinute(absl::CivilMonth(m) + 1);
      continue;
    }
    const bool dom = days_.test(m.day());
    // absl counts Monday 0 ... Sunday 6; cron Sunday 0 ... Saturday 6.
    const bool dow = weekdays_.test((static_cast<int>(absl::GetWeekday(absl::CivilDay(m))) + 1) % 7);
    const bool day_ok = days_restricted_ && weekdays_restricted_ ? (dom || dow) : (dom && dow);
    if (!day_ok) {
      m = absl::CivilMinute(absl::CivilDay(m) + 1);
      continue;
    }
    if (!hours_.test(m.hour())) {
      m = absl::CivilMinute(absl::CivilHour(m) + 1);
      continue;
    }
    if (!minutes_.test(m.minute())) {
      ++m;
      continue;
    }
    return absl::FromCivil(m, utc);
  }
  return absl::InfiniteFuture();
}

absl::StatusOr<ScheduleTimes> ScheduleTimes::Make(absl::Duration every, absl::string_view cron, absl::Time anchor) {
  const bool has_every = every != absl::ZeroDuration();
  const bool has_cron = !absl::StripAsciiWhitespace(cron).empty();
  if (has_every == has_cron) {
    return absl::InvalidArgumentError("a schedule needs exactly one of --every or --cron");
  }
  ScheduleTimes t;
  t.anchor_ = anchor;
  if (has_every) {
    if (every < absl::Seconds(1)) {
      return absl::InvalidArgumentError(absl::StrCat("--every ", absl::FormatDuration(every), ": at least 1s"));
    }
    t.every_ = every;
    return t;
  }
  absl::StatusOr<CronExpr> expr = CronExpr::Parse(cron);
  if (!expr.ok()) return expr.status();
  t.is_cron_ = true;
  t.cron_ = *expr;
  return t;
}

absl::Time ScheduleTimes::NextAfter(absl::Time after) const {
  if (is_cron_) return cron_.Next(after);
  if (after < anchor_) return anchor_ + every_;
  absl::Duration rem;  // Debian's Abseil writes it unconditionally
  const int64_t k = absl::IDivDuration(after - anchor_, every_, &rem) + 1;
  return anchor_ + k * every_;
}

absl::StatusOr<absl::Duration> ParseEvery(absl::string_view text) {
  std::string s(absl::StripAsciiWhitespace(text));
  // "1d" and "2d12h": days as 24 hours (UTC: no daylight-saving days).
  absl::Duration days = absl::ZeroDuration();
  if (size_t d = s.find('d'); d != std::string::npos) {
    int n = 0;
    if (!absl::SimpleAtoi(s.substr(0, d), &n) || n < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--every '", text, "': expected a duration like 30s, 15m, 6h, 1d"));
    }
    days = absl::Hours(24) * n;
    s = s.substr(d + 1);
  }
  absl::Duration rest = absl::ZeroDuration();
  if (!s.empty() && !absl::ParseDuration(s, &rest)) {
    return absl::InvalidArgumentError(absl::StrCat("--every '", text, "': expected a duration like 30s, 15m, 6h, 1d"));
  }
  absl::Duration total = days + rest;
  if (total <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("--every '", text, "': must be positive"));
  }
  return total;
}

}  // namespace asflow
