#include "server/schedules.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/beneath.h"
#include "common/safe_path.h"
#include "common/spec_parser.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

// One statement on `db` with (int64, blob) or (blob) parameters; the
// message names `what`.
absl::Status Exec(sqlite3* db, const char* sql, const std::string& what, int64_t id, const std::string* blob,
                  const std::string* text = nullptr) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(stmt, 1, id);
    if (blob != nullptr) sqlite3_bind_blob(stmt, 2, blob->data(), static_cast<int>(blob->size()), SQLITE_STATIC);
    if (text != nullptr) sqlite3_bind_text(stmt, 3, text->data(), static_cast<int>(text->size()), SQLITE_STATIC);
    rc = sqlite3_step(stmt);
  }
  sqlite3_finalize(stmt);
  if (rc != SQLITE_DONE && rc != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
  }
  return absl::OkStatus();
}

absl::StatusOr<ScheduleTimes> TimesOf(const v1::Schedule& s) {
  return ScheduleTimes::Make(absl::Milliseconds(s.every_ms()), s.cron(), absl::FromUnixMillis(s.created_ms()));
}

std::string Describe(const v1::Schedule& s) {
  return absl::StrCat("schedule '", s.name(), "' (", s.flow_file(), ")");
}

}  // namespace

Schedules::Schedules(ScheduleDeps deps) : deps_(std::move(deps)) {}

Schedules::~Schedules() { Stop(); }

absl::Status Schedules::Load() {
  std::vector<v1::Schedule> loaded;
  absl::Status status = deps_.store->Read([&](sqlite3* db) -> absl::Status {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, "SELECT id, schedule FROM schedules ORDER BY id", -1, &stmt, nullptr);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
      if ((rc = sqlite3_step(stmt)) != SQLITE_ROW) break;
      v1::Schedule s;
      const void* data = sqlite3_column_blob(stmt, 1);
      const int size = sqlite3_column_bytes(stmt, 1);
      if (size > 0 && !s.ParseFromArray(data, size)) {
        spdlog::error("store: schedule {} does not parse; ignored", sqlite3_column_int64(stmt, 0));
        continue;
      }
      s.set_id(sqlite3_column_int64(stmt, 0));
      loaded.push_back(std::move(s));
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) return absl::InternalError(absl::StrCat("read schedules: ", sqlite3_errmsg(db)));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  absl::MutexLock lock(&mu_);
  for (v1::Schedule& s : loaded) {
    absl::StatusOr<ScheduleTimes> times = TimesOf(s);
    if (!times.ok()) {
      spdlog::error("{}: {}; ignored", Describe(s), std::string(times.status().message()));
      continue;
    }
    const int64_t id = s.id();
    entries_.emplace(id, Entry{std::move(s), *times, false});
  }
  return absl::OkStatus();
}

void Schedules::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Schedules::Stop() {
  {
    absl::MutexLock lock(&mu_);
    quit_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Schedules::Loop() {
  for (;;) {
    const absl::Time wake = NextWakeup();
    {
      absl::MutexLock lock(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return quit_ || changed_; };
      // The daemon's clock is the real one: its times are wall times.
      mu_.AwaitWithDeadline(absl::Condition(&woken), wake);
      if (quit_) return;
      changed_ = false;
    }
    Tick();
  }
}

absl::Time Schedules::NextWakeup() const {
  absl::MutexLock lock(&mu_);
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, e] : entries_) {
    if (!e.proto.paused()) next = std::min(next, absl::FromUnixMillis(e.proto.next_fire_ms()));
  }
  return next;
}

void Schedules::Tick() {
  // Whole milliseconds, as stored: a fire time computed from a finer
  // `now` could round down to the one just fired and fire it twice.
  const int64_t now_ms = absl::ToUnixMillis(deps_.clock->Now());
  const absl::Time now = absl::FromUnixMillis(now_ms);
  std::vector<v1::Schedule> due;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, e] : entries_) {
      if (e.proto.paused() || e.proto.next_fire_ms() > now_ms) continue;
      // However many fire times passed (the daemon was down, the machine
      // slept), this is one fire; the next is the first time after now.
      e.proto.set_last_fire_ms(now_ms);
      e.proto.set_next_fire_ms(absl::ToUnixMillis(e.times.NextAfter(now)));
      due.push_back(e.proto);
    }
  }
  for (v1::Schedule& s : due) {
    // Still going: the previous run, or a Submit not answered yet.
    bool busy = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(s.id());
      busy = it != entries_.end() && it->second.submitting;
    }
    if (!busy && s.last_run_id() != 0) {
      absl::StatusOr<v1::RunState> state = deps_.run_state(s.last_run_id());
      busy = state.ok() && *state == v1::RUN_RUNNING;
    }
    absl::StatusOr<v1::SubmitFlowRequest> request;
    if (!busy) request = BuildRequest(s);
    v1::Schedule record;
    {
      absl::MutexLock lock(&mu_);
      auto it = entries_.find(s.id());
      if (it == entries_.end()) continue;  // removed meanwhile
      v1::Schedule& p = it->second.proto;
      if (busy) {
        p.set_skips(p.skips() + 1);
        p.set_last_skip_ms(now_ms);
      } else if (!request.ok()) {
        p.set_last_error(std::string(request.status().message()));
      } else {
        it->second.submitting = true;
      }
      record = p;
    }
    if (busy) {
      spdlog::info("{}: run {} is still going; this fire is skipped ({} skipped so far)", Describe(record),
                   record.last_run_id(), record.skips());
      Persist(record);
      continue;
    }
    if (!request.ok()) {
      spdlog::warn("{}: nothing started: {}", Describe(record), record.last_error());
      Persist(record);
      continue;
    }
    const int64_t id = record.id();
    deps_.submit(std::move(*request), [this, id](absl::StatusOr<int64_t> run) { OnSubmitted(id, std::move(run)); });
  }
}

void Schedules::OnSubmitted(int64_t id, absl::StatusOr<int64_t> run) {
  v1::Schedule record;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return;
    it->second.submitting = false;
    v1::Schedule& p = it->second.proto;
    if (run.ok()) {
      p.set_last_run_id(*run);
      p.set_runs_started(p.runs_started() + 1);
      p.clear_last_error();
    } else {
      p.set_last_error(std::string(run.status().message()));
    }
    record = p;
  }
  if (run.ok()) {
    spdlog::info("{}: started run {}", Describe(record), *run);
  } else {
    spdlog::warn("{}: nothing started: {}", Describe(record), record.last_error());
  }
  Persist(record);
}

void Schedules::Persist(const v1::Schedule& schedule, std::function<void(const absl::Status&)> done) {
  auto blob = std::make_shared<std::string>(schedule.SerializeAsString());
  const int64_t id = schedule.id();
  deps_.store->PutRaw(
      [blob, id](sqlite3* db) {
        return Exec(db, "UPDATE schedules SET schedule=?2 WHERE id=?1", absl::StrCat("save schedule ", id), id,
                    blob.get());
      },
      std::move(done));
}

absl::StatusOr<v1::SubmitFlowRequest> Schedules::BuildRequest(const v1::Schedule& s) {
  const std::string& ws = s.workspace();
  const std::string& file = s.flow_file();
  if (!absl::StartsWith(file, ws + "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("flow file ", file, " is not inside the workspace ", ws,
                     " (a schedule reads its flow file at every fire, and only from its workspace)"));
  }
  absl::StatusOr<std::string> rel = NormalizeOutputPath(file.substr(ws.size() + 1));
  if (!rel.ok()) return absl::InvalidArgumentError(absl::StrCat("flow file ", file, ": ", rel.status().message()));
  absl::StatusOr<UniqueFd> root = OpenRoot(ws);
  if (!root.ok()) return absl::InvalidArgumentError(absl::StrCat("workspace ", root.status().message()));
  absl::StatusOr<UniqueFd> fd = OpenFileBeneath(root->get(), ws, *rel);
  if (!fd.ok()) return absl::InvalidArgumentError(absl::StrCat("flow file ", fd.status().message()));
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd->get(), buf, sizeof(buf));
    if (n < 0) return absl::InvalidArgumentError(absl::StrCat("flow file ", file, ": cannot read"));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxSpecBytes) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": larger than ", kMaxSpecBytes >> 20, " MiB"));
    }
  }
  absl::StatusOr<ParsedFlow> parsed = ParseFlowText(text, file, SpecFormatForPath(file));
  if (!parsed.ok()) return absl::InvalidArgumentError(parsed.status().message());
  v1::SubmitFlowRequest request;
  *request.mutable_spec() = std::move(parsed->spec);
  for (const auto& [k, v] : s.params()) {
    if (!request.spec().params().contains(k)) {
      std::vector<std::string> known;
      for (const auto& [name, value] : request.spec().params()) known.push_back(name);
      std::sort(known.begin(), known.end());
      return absl::InvalidArgumentError(absl::StrCat(file, ": -p ", k, ": the flow has no parameter '", k,
                                                     "' (it has: ", absl::StrJoin(known, ", "), ")"));
    }
    (*request.mutable_params())[k] = v;
  }
  request.set_workspace(ws);
  request.set_source(*rel);
  request.set_keep_going(s.keep_going());
  *request.mutable_env() = s.env();
  request.set_schedule(s.name());
  return request;
}

void Schedules::Add(v1::AddScheduleRequest request, std::function<void(absl::StatusOr<v1::Schedule>)> done) {
  // Whole milliseconds: created_ms is the --every anchor as stored.
  const absl::Time now = absl::FromUnixMillis(absl::ToUnixMillis(deps_.clock->Now()));
  absl::Duration every = absl::ZeroDuration();
  if (!request.every().empty()) {
    absl::StatusOr<absl::Duration> d = ParseEvery(request.every());
    if (!d.ok()) return done(d.status());
    every = *d;
  }
  absl::StatusOr<ScheduleTimes> times = ScheduleTimes::Make(every, request.cron(), now);
  if (!times.ok()) return done(times.status());

  v1::SubmitFlowRequest check;
  check.set_workspace(request.workspace());
  if (absl::Status s = deps_.check_workspace(&check); !s.ok()) return done(s);

  v1::Schedule s;
  s.set_flow_file(request.flow_file());
  s.set_workspace(check.workspace());
  *s.mutable_params() = request.params();
  s.set_every_ms(absl::ToInt64Milliseconds(every));
  s.set_cron(request.cron());
  s.set_keep_going(request.keep_going());
  *s.mutable_env() = request.env();
  s.set_created_ms(absl::ToUnixMillis(now));
  s.set_next_fire_ms(absl::ToUnixMillis(times->NextAfter(now)));
  // What the first fire would submit, now: a bad file is found at once.
  absl::StatusOr<v1::SubmitFlowRequest> first = BuildRequest(s);
  if (!first.ok()) return done(first.status());
  s.set_name(request.name().empty() ? first->spec().name() : request.name());
  if (s.name().empty()) return done(absl::InvalidArgumentError("a schedule needs a name (--name)"));
  {
    absl::MutexLock lock(&mu_);
    bool taken = std::find(adding_.begin(), adding_.end(), s.name()) != adding_.end();
    for (const auto& [id, e] : entries_) taken = taken || e.proto.name() == s.name();
    if (taken) {
      return done(absl::InvalidArgumentError(
          absl::StrCat("a schedule named '", s.name(), "' exists; choose another with --name")));
    }
    adding_.push_back(s.name());
  }
  auto blob = std::make_shared<std::string>(s.SerializeAsString());
  auto id = std::make_shared<int64_t>(0);
  const std::string name = s.name();
  deps_.store->PutRaw(
      [blob, id, name](sqlite3* db) {
        absl::Status st = Exec(db, "INSERT INTO schedules(id, schedule, name) VALUES(NULL, ?2, ?3)",
                               absl::StrCat("add schedule ", name), 0, blob.get(), &name);
        if (st.ok()) *id = sqlite3_last_insert_rowid(db);
        return st;
      },
      [this, s, id, times = *times, done = std::move(done)](const absl::Status& status) mutable {
        {
          absl::MutexLock lock(&mu_);
          adding_.erase(std::find(adding_.begin(), adding_.end(), s.name()));
          if (status.ok()) {
            s.set_id(*id);
            entries_.emplace(*id, Entry{s, times, false});
            changed_ = true;
          }
        }
        if (!status.ok()) return done(status);
        spdlog::info("{}: added, first fire at {}", Describe(s),
                     absl::FormatTime(absl::FromUnixMillis(s.next_fire_ms()), absl::UTCTimeZone()));
        done(s);
      });
}

Schedules::Entry* Schedules::FindLocked(const v1::ScheduleRef& ref) {
  for (auto& [id, e] : entries_) {
    if (ref.name().empty() ? id == ref.id() : e.proto.name() == ref.name()) return &e;
  }
  return nullptr;
}

namespace {
absl::Status NoSuchSchedule(const v1::ScheduleRef& ref) {
  return absl::NotFoundError(ref.name().empty() ? absl::StrCat("no schedule has id ", ref.id())
                                                : absl::StrCat("no schedule is named '", ref.name(), "'"));
}
}  // namespace

void Schedules::Remove(const v1::ScheduleRef& ref, std::function<void(absl::StatusOr<v1::Schedule>)> done) {
  v1::Schedule removed;
  {
    absl::MutexLock lock(&mu_);
    Entry* e = FindLocked(ref);
    if (e == nullptr) return done(NoSuchSchedule(ref));
    removed = e->proto;
    entries_.erase(removed.id());
    changed_ = true;
  }
  const int64_t id = removed.id();
  deps_.store->PutRaw(
      [id](sqlite3* db) {
        return Exec(db, "DELETE FROM schedules WHERE id=?1", absl::StrCat("remove schedule ", id), id, nullptr);
      },
      [removed, done = std::move(done)](const absl::Status& status) {
        if (!status.ok()) return done(status);
        spdlog::info("{}: removed", Describe(removed));
        done(removed);
      });
}

void Schedules::SetPaused(const v1::ScheduleRef& ref, bool paused,
                          std::function<void(absl::StatusOr<v1::Schedule>)> done) {
  v1::Schedule record;
  {
    absl::MutexLock lock(&mu_);
    Entry* e = FindLocked(ref);
    if (e == nullptr) return done(NoSuchSchedule(ref));
    if (e->proto.paused() != paused) {
      e->proto.set_paused(paused);
      // Resumed: the next fire is the first time after now; what was
      // missed while paused is not made up.
      e->proto.set_next_fire_ms(
          paused ? 0 : absl::ToUnixMillis(e->times.NextAfter(absl::FromUnixMillis(absl::ToUnixMillis(deps_.clock->Now())))));
      changed_ = true;
    }
    record = e->proto;
  }
  Persist(record, [record, done = std::move(done)](const absl::Status& status) {
    if (!status.ok()) return done(status);
    done(record);
  });
}

std::vector<v1::Schedule> Schedules::List() {
  std::vector<v1::Schedule> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, e] : entries_) out.push_back(e.proto);
  }
  for (v1::Schedule& s : out) {
    if (s.last_run_id() == 0) continue;
    absl::StatusOr<v1::RunState> state = deps_.run_state(s.last_run_id());
    if (state.ok()) s.set_last_run_state(*state);
  }
  return out;
}

}  // namespace asflow
