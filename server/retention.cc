#include "server/retention.h"

#include <sqlite3.h>

#include <algorithm>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "server/schedule_times.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

absl::Status SqlError(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
}

// Steps a prepared statement with up to two int64 parameters to its end;
// returns the first column of the last row (or 0).
absl::StatusOr<int64_t> Step(sqlite3* db, const char* sql, int64_t a, int64_t b, const std::string& what) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  int64_t value = 0;
  if (rc == SQLITE_OK) {
    if (sqlite3_bind_parameter_count(stmt) >= 1) sqlite3_bind_int64(stmt, 1, a);
    if (sqlite3_bind_parameter_count(stmt) >= 2) sqlite3_bind_int64(stmt, 2, b);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) value = sqlite3_column_int64(stmt, 0);
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE) return SqlError(db, what);
  return value;
}

}  // namespace

KeepRuns DefaultKeepRuns() { return KeepRuns{1000, absl::Hours(24 * 30)}; }

absl::StatusOr<KeepRuns> ParseKeepRuns(absl::string_view text) {
  KeepRuns keep;
  const std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t == "all") return keep;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--keep-runs '", text, "': ", why,
                                                   " (expected a count like 100, an age like 30d or 12h, "
                                                   "both as 30d,100, or all)"));
  };
  if (t.empty()) return bad("empty");
  for (absl::string_view part : absl::StrSplit(t, ',')) {
    part = absl::StripAsciiWhitespace(part);
    int64_t n = 0;
    if (absl::SimpleAtoi(part, &n)) {
      if (n <= 0) return bad("a count must be at least 1");
      if (keep.count != 0) return bad("two counts");
      keep.count = n;
      continue;
    }
    absl::StatusOr<absl::Duration> age = ParseEvery(part);
    if (!age.ok()) return bad(absl::StrCat("'", part, "' is neither a count nor an age"));
    if (keep.age != absl::ZeroDuration()) return bad("two ages");
    keep.age = *age;
  }
  return keep;
}

std::string FormatKeepRuns(const KeepRuns& keep) {
  if (!keep.enabled()) return "all";
  std::string age;
  if (keep.age > absl::ZeroDuration()) {
    const int64_t hours = absl::ToInt64Hours(keep.age);
    age = keep.age == absl::Hours(hours) && hours % 24 == 0 ? absl::StrCat(hours / 24, "d")
                                                             : absl::FormatDuration(keep.age);
  }
  if (keep.count == 0) return age;
  if (age.empty()) return absl::StrCat(keep.count);
  return absl::StrCat(age, ",", keep.count);
}

std::vector<int64_t> RunsToPrune(std::vector<RunAge> runs, const KeepRuns& keep, absl::Time now) {
  std::vector<int64_t> out;
  if (!keep.enabled()) return out;
  std::sort(runs.begin(), runs.end(), [](const RunAge& a, const RunAge& b) { return a.id > b.id; });
  const int64_t oldest_ms = keep.age > absl::ZeroDuration() ? absl::ToUnixMillis(now - keep.age) : INT64_MIN;
  int64_t finished = 0;
  for (const RunAge& r : runs) {
    if (!r.finished) continue;
    ++finished;
    const bool past_count = keep.count > 0 && finished > keep.count;
    const bool past_age = r.finished_ms < oldest_ms;
    if (past_count || past_age) out.push_back(r.id);
  }
  return out;
}

Retention::Retention(Store* store, Clock* clock, RetentionOptions options)
    : store_(store), clock_(clock), options_(options) {}

Retention::~Retention() { Stop(); }

absl::Status Retention::WriteAndWait(Store::RawApply apply) {
  absl::Notification committed;
  absl::Status result;
  store_->PutRaw(std::move(apply), [&](const absl::Status& status) {
    result = status;
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

absl::StatusOr<int64_t> Retention::PruneRun(int64_t run_id, PruneStats& stats) {
  const std::string what = absl::StrCat("prune run ", run_id);
  // Suppressed and failed rows stay: their error text, and what `reset`
  // and later runs' caching by .err file rely on.
  const std::string del = absl::StrCat(
      "DELETE FROM instances WHERE run_id=?1 AND seq IN (SELECT seq FROM instances WHERE run_id=?1 AND state NOT IN (",
      static_cast<int>(v1::SUPPRESSED), ",", static_cast<int>(v1::FAILED), ") ORDER BY seq LIMIT ?2)");
  int64_t deleted = 0;
  for (;;) {
    auto n = std::make_shared<int64_t>(0);
    absl::Status s = WriteAndWait([&, n](sqlite3* db) -> absl::Status {
      absl::StatusOr<int64_t> r = Step(db, del.c_str(), run_id, options_.batch_rows, what);
      if (!r.ok()) return r.status();
      *n = sqlite3_changes(db);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    deleted += *n;
    if (*n < options_.batch_rows) break;
    absl::SleepFor(options_.pause);
    absl::MutexLock lock(&mu_);
    if (quit_) return deleted;
  }
  auto hidden = std::make_shared<bool>(false);
  absl::Status s = WriteAndWait([&, hidden](sqlite3* db) -> absl::Status {
    absl::StatusOr<int64_t> kept =
        Step(db, "SELECT count(*) FROM instances WHERE run_id=?1", run_id, 0, what);
    if (!kept.ok()) return kept.status();
    *hidden = *kept > 0;
    if (*hidden) {
      // The attempts of the rows just deleted go with them (a deleted run's
      // go by ON DELETE CASCADE).
      absl::StatusOr<int64_t> a = Step(
          db, "DELETE FROM attempts WHERE run_id=?1 AND seq NOT IN (SELECT seq FROM instances WHERE run_id=?1)",
          run_id, 0, what);
      if (!a.ok()) return a.status();
    }
    // The request stays with a hidden run: `reset` finds the .err file of
    // a kept row through its task's `on`.
    absl::StatusOr<int64_t> r = Step(db, *hidden ? "UPDATE runs SET pruned=1 WHERE id=?1" : "DELETE FROM runs WHERE id=?1",
                                     run_id, 0, what);
    return r.status();
  });
  if (!s.ok()) return s;
  stats.instances_deleted += deleted;
  ++(*hidden ? stats.runs_hidden : stats.runs_deleted);
  return deleted;
}

absl::StatusOr<PruneStats> Retention::PruneOnce() {
  PruneStats stats;
  if (!options_.keep.enabled()) return stats;
  std::vector<RunAge> runs;
  std::vector<int64_t> hidden;  // already pruned: their reset rows may go now
  absl::Status status = store_->Read([&](sqlite3* db) -> absl::Status {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT id, state, finished_ms, pruned FROM runs", -1, &stmt, nullptr);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      if ((rc = sqlite3_step(stmt)) != SQLITE_ROW) break;
      RunAge r{sqlite3_column_int64(stmt, 0), sqlite3_column_int(stmt, 1) != v1::RUN_RUNNING,
               sqlite3_column_int64(stmt, 2)};
      if (sqlite3_column_int(stmt, 3) != 0) {
        hidden.push_back(r.id);
      } else {
        runs.push_back(r);
      }
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return SqlError(db, "retention: read runs");
    absl::StatusOr<int64_t> mode = Step(db, "PRAGMA auto_vacuum", 0, 0, "retention: auto_vacuum");
    if (!mode.ok()) return mode.status();
    incremental_ = *mode == 2;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  std::vector<int64_t> prune = RunsToPrune(std::move(runs), options_.keep, clock_->Now());
  // Hidden runs are checked again: rows reset since may go, and the run
  // with them once none is left. Only those that have some to go.
  for (int64_t id : hidden) {
    int64_t gone = 0;
    status = store_->Read([&](sqlite3* db) -> absl::Status {
      absl::StatusOr<int64_t> n = Step(
          db,
          absl::StrCat("SELECT count(*) FROM instances WHERE run_id=?1 AND state NOT IN (",
                       static_cast<int>(v1::SUPPRESSED), ",", static_cast<int>(v1::FAILED), ")")
              .c_str(),
          id, 0, "retention: read pruned run");
      if (!n.ok()) return n.status();
      absl::StatusOr<int64_t> all = Step(db, "SELECT count(*) FROM instances WHERE run_id=?1", id, 0,
                                         "retention: read pruned run");
      if (!all.ok()) return all.status();
      gone = *n > 0 || *all == 0 ? 1 : 0;
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    if (gone) prune.push_back(id);
  }
  for (int64_t id : prune) {
    absl::StatusOr<int64_t> n = PruneRun(id, stats);
    if (!n.ok()) return n.status();
    absl::MutexLock lock(&mu_);
    if (quit_) return stats;
  }
  // Give the freed pages back to the file system, a few MB per write.
  while (incremental_ && !prune.empty()) {
    auto freed = std::make_shared<int64_t>(0);
    status = WriteAndWait([freed](sqlite3* db) -> absl::Status {
      absl::StatusOr<int64_t> before = Step(db, "PRAGMA freelist_count", 0, 0, "incremental vacuum");
      if (!before.ok()) return before.status();
      absl::StatusOr<int64_t> r = Step(db, "PRAGMA incremental_vacuum(1024)", 0, 0, "incremental vacuum");
      if (!r.ok()) return r.status();
      absl::StatusOr<int64_t> after = Step(db, "PRAGMA freelist_count", 0, 0, "incremental vacuum");
      if (!after.ok()) return after.status();
      *freed = *before - *after;
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    stats.pages_freed += *freed;
    if (*freed == 0) break;
    absl::SleepFor(options_.pause);
  }
  if (!prune.empty()) {
    spdlog::info("--keep-runs {}: pruned {} runs ({} kept for their suppressed or failed instances), {} instance rows, "
                 "{} pages freed",
                 FormatKeepRuns(options_.keep), stats.runs_deleted + stats.runs_hidden, stats.runs_hidden,
                 stats.instances_deleted, stats.pages_freed);
  }
  return stats;
}

void Retention::Start() {
  if (!options_.keep.enabled()) return;
  thread_ = std::thread([this] { Loop(); });
}

void Retention::Stop() {
  {
    absl::MutexLock lock(&mu_);
    quit_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Retention::Loop() {
  for (;;) {
    absl::StatusOr<PruneStats> stats = PruneOnce();
    if (!stats.ok()) spdlog::error("--keep-runs: {}", std::string(stats.status().message()));
    absl::MutexLock lock(&mu_);
    auto quit = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return quit_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&quit), options_.every)) return;
  }
}

}  // namespace asflow
