#include "server/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <filesystem>
#include <system_error>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/wake_batch.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

// Schema migrations; kMigrations[i] takes user_version i to i + 1. Append
// only: a released migration never changes.
constexpr const char* kMigrations[] = {
    // 1: runs and instances.
    R"sql(
CREATE TABLE runs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after deletes
  flow TEXT NOT NULL,
  workspace TEXT NOT NULL,
  state INTEGER NOT NULL,                -- v1::RunState
  created_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  error TEXT NOT NULL,
  run BLOB NOT NULL,                     -- serialized v1::Run (id not set)
  request BLOB NOT NULL                  -- serialized v1::SubmitFlowRequest
);
CREATE INDEX runs_by_state ON runs(state, id);
CREATE TABLE instances (
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  task TEXT NOT NULL,
  params TEXT NOT NULL,
  output TEXT NOT NULL,
  state INTEGER NOT NULL,                -- v1::InstanceState
  error TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  lines INTEGER NOT NULL,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE INDEX instances_by_state ON instances(run_id, state);
CREATE INDEX instances_by_task ON instances(run_id, task);
)sql",
    // 2: the process group of a running instance (to kill what a crashed
    // daemon left behind) and daemon-wide facts such as the boot id.
    R"sql(
ALTER TABLE instances ADD COLUMN pgid INTEGER NOT NULL DEFAULT 0;
CREATE TABLE meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
)sql",
    // 3: no query reads instances through these indexes (every listing
    // walks the primary key (run_id, seq) of one run and filters state by
    // mask, task and params per row; a reset scans), but every row written
    // paid for two more b-tree inserts: W2's 10,000 cached rows in 40 ms of
    // the writer's time, half of it the indexes.
    R"sql(
DROP INDEX IF EXISTS instances_by_state;
DROP INDEX IF EXISTS instances_by_task;
)sql",
    // 4: schedules (server/schedules.h) and runs pruned by --keep-runs
    // (server/retention.h): a pruned run's row stays, hidden from listings,
    // while its suppressed or failed instances' rows are kept.
    R"sql(
CREATE TABLE schedules (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  schedule BLOB NOT NULL                 -- serialized v1::Schedule (id not set)
);
ALTER TABLE runs ADD COLUMN pruned INTEGER NOT NULL DEFAULT 0;
)sql",
    // 5: each attempt's history (asflowctl show, logs): when it ran, how
    // it ended, its stderr's tail. Rows only for attempts the instance
    // row does not describe by itself (store_records.h, AttemptRecord), so
    // a run of clean successes writes none.
    R"sql(
CREATE TABLE attempts (
  id INTEGER PRIMARY KEY,
  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  exit_code INTEGER NOT NULL,
  term_signal INTEGER NOT NULL,
  state INTEGER NOT NULL,                -- v1::InstanceState
  error TEXT NOT NULL,
  stderr BLOB NOT NULL
);
CREATE INDEX attempts_by_instance ON attempts(run_id, seq);
)sql",
    // 6: the run whose execution of a different command made the
    // instance's output (v1::Instance.made_by_run; 0: its own command).
    R"sql(
ALTER TABLE instances ADD COLUMN made_by_run INTEGER NOT NULL DEFAULT 0;
)sql",
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion,
              "one migration per schema version");

constexpr int kBusyTimeoutMs = 10000;

constexpr char kInstanceColumns[] =
    "run_id, seq, task, params, output, state, error, attempts, started_ms, "
    "finished_ms, bytes, lines, pgid, made_by_run";
constexpr int kInstanceColumnCount = 14;

// New rows go in statements of this many rows: one statement per row spent
// a fifth of the writer's time starting and ending statements (W2: 10,000
// cached rows in 20 ms of the writer's time).
constexpr int kRowsPerUpsert = 16;

// INSERT of `rows` instance rows; a row already there is replaced.
std::string UpsertInstancesSql(int rows) {
  std::string sql = absl::StrCat("INSERT INTO instances(", kInstanceColumns, ") VALUES");
  for (int r = 0; r < rows; ++r) {
    absl::StrAppend(&sql, r == 0 ? "(" : ",(");
    for (int c = 1; c <= kInstanceColumnCount; ++c) {
      absl::StrAppend(&sql, c == 1 ? "?" : ",?", r * kInstanceColumnCount + c);
    }
    absl::StrAppend(&sql, ")");
  }
  absl::StrAppend(&sql,
                  " ON CONFLICT(run_id, seq) DO UPDATE SET task=excluded.task,"
                  " params=excluded.params, output=excluded.output,"
                  " state=excluded.state, error=excluded.error,"
                  " attempts=excluded.attempts, started_ms=excluded.started_ms,"
                  " finished_ms=excluded.finished_ms, bytes=excluded.bytes,"
                  " lines=excluded.lines, pgid=excluded.pgid,"
                  " made_by_run=excluded.made_by_run");
  return sql;
}

// One instance row's columns, in kInstanceColumns order, as views.
struct InstanceCols {
  int64_t run_id = 0, seq = 0;
  absl::string_view task, params, output;
  int state = 0;
  absl::string_view error;
  int32_t attempts = 0;
  int64_t started_ms = 0, finished_ms = 0, bytes = 0, lines = 0;
  int32_t pgid = 0;
  int64_t made_by_run = 0;
};

absl::StatusCode CodeForSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_PERM:
    case SQLITE_READONLY:
    case SQLITE_AUTH:
      return absl::StatusCode::kPermissionDenied;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "<what>: <SQLite's message>", with a status code that matches the failure.
absl::Status SqliteError(sqlite3* db, int rc, const std::string& what) {
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeForSqlite(rc), absl::StrCat(what, ": ", msg));
}

// Binds by pointer: the strings must outlive the statement's step.
void BindText(sqlite3_stmt* stmt, int index, absl::string_view value) {
  // An empty view may have a null data(), which would bind NULL.
  sqlite3_bind_text(stmt, index, value.empty() ? "" : value.data(), static_cast<int>(value.size()),
                    SQLITE_STATIC);
}
void BindBlob(sqlite3_stmt* stmt, int index, const std::string& value) {
  // data() is never null, so an empty string binds an empty blob, not NULL.
  sqlite3_bind_blob(stmt, index, value.data(), static_cast<int>(value.size()),
                    SQLITE_STATIC);
}

std::string ColumnString(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  int size = sqlite3_column_bytes(stmt, column);
  if (data == nullptr || size <= 0) return std::string();
  return std::string(static_cast<const char*>(data), size);
}

// Steps a statement that returns no rows and resets it for reuse. Returns
// SQLite's result code; the error message stays on the connection.
int StepDone(sqlite3_stmt* stmt) {
  int rc = sqlite3_step(stmt);
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

// Resets a read statement however its caller leaves the scope.
class ResetOnExit {
 public:
  explicit ResetOnExit(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~ResetOnExit() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  sqlite3_stmt* stmt_;
};

InstanceRecord ReadInstance(sqlite3_stmt* stmt) {
  InstanceRecord r;
  r.run_id = sqlite3_column_int64(stmt, 0);
  r.seq = sqlite3_column_int64(stmt, 1);
  r.task = ColumnString(stmt, 2);
  r.params = ColumnString(stmt, 3);
  r.output = ColumnString(stmt, 4);
  r.state = static_cast<v1::InstanceState>(sqlite3_column_int(stmt, 5));
  r.error = ColumnString(stmt, 6);
  r.attempts = sqlite3_column_int(stmt, 7);
  r.started_ms = sqlite3_column_int64(stmt, 8);
  r.finished_ms = sqlite3_column_int64(stmt, 9);
  r.bytes = sqlite3_column_int64(stmt, 10);
  r.lines = sqlite3_column_int64(stmt, 11);
  r.pgid = sqlite3_column_int(stmt, 12);
  r.made_by_run = sqlite3_column_int64(stmt, 13);
  return r;
}

}  // namespace

void Store::DbCloser::operator()(sqlite3* db) const { sqlite3_close_v2(db); }
void Store::StmtFinalizer::operator()(sqlite3_stmt* stmt) const {
  sqlite3_finalize(stmt);
}

Store::Store(std::string path, const StoreOptions& options)
    : path_(std::move(path)), options_(options) {}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                   const StoreOptions& options) {
  if (path.empty()) return absl::InvalidArgumentError("store: empty path");
  std::unique_ptr<Store> store(new Store(path, options));
  absl::Status status = store->Init();
  if (!status.ok()) return status;
  return store;
}

absl::Status Store::Init() {
  const std::string where = absl::StrCat("store ", path_);
  std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::Status(absl::ErrnoToStatusCode(ec.value()),
                          absl::StrCat(where, ": cannot create directory ",
                                       parent.string(), ": ", ec.message()));
    }
  }
  // Create the file ourselves so it is private; SQLite gives its -wal and
  // -shm files the same mode.
  int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrCat(where, ": cannot open: ", strerror(err)));
  }
  ::close(fd);

  // Each connection is used by one thread at a time (the writer thread, or
  // readers under reader_mu_), so SQLite's own mutexes are not needed.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path_.c_str(), &db, flags, nullptr);
  writer_db_.reset(db);
  if (rc != SQLITE_OK) return SqliteError(db, rc, where);
  sqlite3_busy_timeout(db, kBusyTimeoutMs);
  sqlite3_extended_result_codes(db, 1);

  // Nothing below may change a file this build refuses: its version (and
  // that it is a database at all) is checked by reading the header before
  // the first pragma that writes (journal_mode=WAL rewrites the header).
  // Migrate checks again inside its write transaction.
  if (absl::StatusOr<int> version = ReadSchemaVersion(); !version.ok()) {
    return version.status();
  } else if (absl::Status s = CheckSchemaVersion(*version); !s.ok()) {
    return s;
  }

  if (absl::Status s = MaybeIncrementalVacuum(); !s.ok()) return s;
  {
    // journal_mode answers with the mode it got; WAL lets reads run beside
    // the writer.
    sqlite3_stmt* raw = nullptr;
    rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &raw, nullptr);
    Stmt stmt(raw);
    if (rc != SQLITE_OK) return SqliteError(db, rc, where);
    rc = sqlite3_step(stmt.get());
    if (rc != SQLITE_ROW) return SqliteError(db, rc, where);
    std::string mode = ColumnString(stmt.get(), 0);
    if (mode != "wal") {
      spdlog::warn("{}: journal_mode is {}, not wal; reads may wait for writes",
                   where, mode);
    }
  }
  absl::Status status = ExecWriter("PRAGMA foreign_keys=ON");
  if (status.ok()) {
    status = ExecWriter(options_.sync_commits ? "PRAGMA synchronous=FULL"
                                              : "PRAGMA synchronous=NORMAL");
  }
  if (status.ok()) status = Migrate();
  if (!status.ok()) return status;

  {
    absl::MutexLock lock(&reader_mu_);
    db = nullptr;
    rc = sqlite3_open_v2(path_.c_str(), &db, flags, nullptr);
    reader_db_.reset(db);
    if (rc != SQLITE_OK) return SqliteError(db, rc, where);
    sqlite3_busy_timeout(db, kBusyTimeoutMs);
    sqlite3_extended_result_codes(db, 1);
    rc = sqlite3_exec(db, "PRAGMA query_only=ON", nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return SqliteError(db, rc, where);
  }
  status = PrepareStatements();
  if (!status.ok()) return status;

  writer_ = std::thread([this] { WriterLoop(); });
  writer_id_ = writer_.get_id();
  return absl::OkStatus();
}

absl::Status Store::ExecWriter(const char* sql) {
  int rc = sqlite3_exec(writer_db_.get(), sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    return SqliteError(writer_db_.get(), rc, absl::StrCat("store ", path_));
  }
  return absl::OkStatus();
}

absl::Status Store::MaybeIncrementalVacuum() {
  // auto_vacuum can only change while the file has no table (and before
  // journal_mode=WAL writes its header): a new file
  // frees the pages that --keep-runs empties (PRAGMA incremental_vacuum);
  // an older one keeps its mode and reuses them (docs/behaviour.md).
  absl::StatusOr<int> version = ReadSchemaVersion();
  if (!version.ok()) return version.status();
  if (*version != 0) return absl::OkStatus();
  return ExecWriter("PRAGMA auto_vacuum=INCREMENTAL");
}

absl::Status Store::Migrate() {
  const std::string where = absl::StrCat("store ", path_);
  // Read the version inside the write transaction so two daemons opening the
  // same file cannot both migrate it.
  absl::Status status = ExecWriter("BEGIN IMMEDIATE");
  if (!status.ok()) return status;
  sqlite3* db = writer_db_.get();
  int version = 0;
  if (absl::StatusOr<int> v = ReadSchemaVersion(); !v.ok()) {
    status = v.status();
  } else {
    version = *v;
    status = CheckSchemaVersion(version);
  }
  for (int v = version; status.ok() && v < kSchemaVersion; ++v) {
    status = ExecWriter(kMigrations[v]);
    if (status.ok()) {
      // PRAGMA takes no parameters; this runs once per migration at open.
      status = ExecWriter(absl::StrCat("PRAGMA user_version=", v + 1).c_str());
    }
    if (status.ok()) spdlog::info("{}: migrated schema to version {}", where, v + 1);
  }
  if (status.ok()) status = ExecWriter("COMMIT");
  if (!status.ok() && !sqlite3_get_autocommit(db)) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  return status;
}

absl::StatusOr<int> Store::ReadSchemaVersion() {
  sqlite3* db = writer_db_.get();
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &raw, nullptr);
  Stmt stmt(raw);
  if (rc == SQLITE_OK) rc = sqlite3_step(stmt.get());
  if (rc != SQLITE_ROW) return SqliteError(db, rc, absl::StrCat("store ", path_));
  return sqlite3_column_int(stmt.get(), 0);
}

absl::Status Store::CheckSchemaVersion(int version) const {
  if (version >= 0 && version <= kSchemaVersion) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "store ", path_, ": database schema version ", version,
      version < 0 ? " is not one asflowd ever wrote; use another state file"
                  : absl::StrCat(" is newer than this asflowd supports (", kSchemaVersion,
                                 "); run a newer asflowd or use another state file")));
}

absl::Status Store::PrepareStatements() {
  const std::string where = absl::StrCat("store ", path_);
  auto prepare = [&where](sqlite3* db, const std::string& sql,
                          Stmt& out) -> absl::Status {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT,
                                &raw, nullptr);
    out.reset(raw);
    if (rc != SQLITE_OK) return SqliteError(db, rc, absl::StrCat(where, ": ", sql));
    return absl::OkStatus();
  };
  sqlite3* w = writer_db_.get();
  const std::string select_instances = absl::StrCat(
      "SELECT ", kInstanceColumns,
      " FROM instances WHERE run_id=?1 AND seq>?2"
      " AND (?3=0 OR ((?3>>state)&1)=1)");
  absl::MutexLock lock(&reader_mu_);
  sqlite3* r = reader_db_.get();
  for (auto [db, sql, stmt] : std::initializer_list<std::tuple<sqlite3*, std::string, Stmt*>>{
           {w, "BEGIN IMMEDIATE", &begin_},
           {w, "COMMIT", &commit_},
           {w, "ROLLBACK", &rollback_},
           {w,
            "INSERT INTO runs(flow, workspace, state, created_ms, finished_ms,"
            " error, run, request) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &insert_run_},
           {w,
            "UPDATE runs SET state=?2, finished_ms=?3, error=?4, run=?5"
            " WHERE id=?1",
            &update_run_},
           {w, "UPDATE runs SET request=?2 WHERE id=?1", &update_request_},
           {w, UpsertInstancesSql(1), &upsert_instance_},
           {w, UpsertInstancesSql(kRowsPerUpsert), &upsert_instances_},
           {r, "SELECT id, run, request FROM runs WHERE id=?1", &get_run_},
           {r, "SELECT value FROM meta WHERE key=?1", &get_meta_},
           {w, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", &set_meta_},
           {r,
            "SELECT id, run, CASE WHEN ?4 THEN request ELSE x'' END FROM runs"
            " WHERE pruned=0 AND (?2=0 OR state=?2) AND (?3=0 OR id<?3) ORDER BY id DESC LIMIT ?1",
            &list_runs_},
           {r, absl::StrCat(select_instances, " ORDER BY seq LIMIT ?4"),
            &list_instances_},
           {r,
            absl::StrCat(select_instances,
                         " AND task=?5 AND (?6='' OR params=?6)"
                         // Each needle is `"name":"prefix` or `":"prefix`
                         // as canonical JSON writes it: it can only match
                         // where a name meets its value.
                         " AND (?7 IS NULL OR instr(params, ?7)>0) AND (?8 IS NULL OR instr(params, ?8)>0)"
                         " AND (?9 IS NULL OR instr(params, ?9)>0) AND (?10 IS NULL OR instr(params, ?10)>0)"
                         " ORDER BY seq LIMIT ?4"),
            &list_task_instances_},
           {r,
            "SELECT i.run_id, i.seq, i.task, i.params, i.output, i.state, i.error,"
            " i.attempts, i.started_ms, i.finished_ms, i.bytes, i.lines, i.pgid, i.made_by_run, r.workspace"
            " FROM instances i JOIN runs r ON r.id=i.run_id"
            " WHERE (?1=0 OR i.run_id=?1) AND (?2='' OR r.flow=?2) AND (?3='' OR i.task=?3)"
            " AND (?4='' OR (r.workspace || '/' || i.output)=?4)"
            " AND ((?5>>i.state)&1)=1 AND (?6='' OR r.workspace=?6)"
            " AND (?7='' OR substr(r.workspace || '/' || i.output, 1, length(?7))=?7)"
            " ORDER BY i.run_id, i.seq",
            &find_instances_},
       }) {
    absl::Status status = prepare(db, sql, *stmt);
    if (!status.ok()) return status;
  }
  return PrepareAttemptStatements();
}

Store::~Store() {
  if (writer_.joinable()) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    writer_.join();
  }
}

bool Store::HasWorkOrStoppingLocked() const {
  return !queue_.empty() || stopping_;
}

bool Store::GroupDueLocked() const {
  return queue_.size() >= std::min(options_.max_group, options_.max_pending) || stopping_ || waiters_ > 0;
}

void Store::AwaitAppliedLocked(uint64_t seq, bool cut_linger) {
  auto done = [this, seq]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return applied_ >= seq; };
  if (cut_linger) ++waiters_;
  mu_.Await(absl::Condition(&done));
  if (cut_linger) --waiters_;
}

bool Store::HasRoomLocked() const { return queue_.size() < options_.max_pending; }

uint64_t Store::Enqueue(Write write) {
  absl::MutexLock lock(&mu_);
  // A callback that writes must not wait for the writer it runs on.
  if (std::this_thread::get_id() != writer_id_) {
    mu_.Await(absl::Condition(this, &Store::HasRoomLocked));
  }
  queue_.push_back(std::move(write));
  return ++enqueued_;
}

absl::StatusOr<int64_t> Store::CreateRun(const v1::Run& run,
                                         const std::string& request) {
  if (std::this_thread::get_id() == writer_id_) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", path_, ": CreateRun called from a callback"));
  }
  CreateRunResult result;
  NewRun op{run, request, &result};
  op.run.clear_id();
  uint64_t seq = Enqueue(Write{std::move(op), {}});
  absl::MutexLock lock(&mu_);
  AwaitAppliedLocked(seq, /*cut_linger=*/true);
  if (!result.status.ok()) return result.status;
  return result.id;
}

void Store::PutInstance(InstanceRecord record, InstanceDone done) {
  Enqueue(Write{InstanceWrite{std::move(record), std::move(done)}, {}});
}

void Store::PutNew(NewRows rows, RowsDone done) {
  if (rows.size() == 0) {
    if (done) done(absl::OkStatus());
    return;
  }
  Enqueue(Write{RowsWrite{std::move(rows), std::move(done)}, {}});
}

void Store::PutRun(v1::Run run, RunDone done) {
  Enqueue(Write{RunWrite{std::move(run), std::move(done)}, {}});
}

void Store::PutAttempt(AttemptRecord record, RowsDone done) {
  Enqueue(Write{AttemptWrite{std::move(record), std::move(done)}, {}});
}

void Store::PutRunRequest(int64_t run_id, std::string request, RowsDone done) {
  Enqueue(Write{RequestWrite{run_id, std::move(request), std::move(done)}, {}});
}

absl::Status Store::Flush() {
  if (std::this_thread::get_id() == writer_id_) {
    return absl::FailedPreconditionError(
        absl::StrCat("store ", path_, ": Flush called from a callback"));
  }
  absl::MutexLock lock(&mu_);
  AwaitAppliedLocked(enqueued_, /*cut_linger=*/true);
  return std::exchange(first_error_, absl::OkStatus());
}

absl::Status Store::AwaitCallbacks() {
  if (std::this_thread::get_id() == writer_id_) {
    return absl::FailedPreconditionError(absl::StrCat("store ", path_, ": AwaitCallbacks called from a callback"));
  }
  absl::MutexLock lock(&mu_);
  // Taken by the writer already: no linger to cut.
  AwaitAppliedLocked(enqueued_ - queue_.size(), /*cut_linger=*/false);
  return absl::OkStatus();
}

size_t Store::pending_writes() const {
  absl::MutexLock lock(&mu_);
  return static_cast<size_t>(enqueued_ - applied_);
}

uint64_t Store::transactions_committed() const {
  absl::MutexLock lock(&mu_);
  return transactions_;
}

void Store::WriterLoop() {
  std::vector<Write> group;
  absl::Time last_start = absl::InfinitePast();
  for (;;) {
    group.clear();
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Store::HasWorkOrStoppingLocked));
      if (options_.linger > absl::ZeroDuration()) {
        // At once if the last group began `linger` ago or more.
        mu_.AwaitWithDeadline(absl::Condition(this, &Store::GroupDueLocked), last_start + options_.linger);
      }
      if (queue_.empty()) return;  // stopping, and everything is committed
      size_t n = std::min(queue_.size(), std::max<size_t>(options_.max_group, 1));
      for (size_t i = 0; i < n; ++i) {
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    absl::Time start = absl::Now();
    last_start = start;
    absl::Status tx = ApplyGroup(group);
    commit_latency_.Observe(absl::Now() - start);
    // Every callback runs, with its write's own status: callers count on
    // them (to publish what was committed, to hear what was lost).
    absl::Status first_error;
    WakeBatch wakes;  // the group's answers to a session leave together
    for (Write& w : group) {
      if (first_error.ok() && !w.status.ok() && !std::holds_alternative<NewRun>(w.op)) first_error = w.status;
      if (auto* iw = std::get_if<InstanceWrite>(&w.op); iw != nullptr && iw->done) {
        iw->done(iw->record, w.status);
      } else if (auto* rw = std::get_if<RunWrite>(&w.op); rw != nullptr && rw->done) {
        rw->done(rw->run, w.status);
      } else if (auto* nw = std::get_if<RowsWrite>(&w.op); nw != nullptr && nw->done) {
        nw->done(w.status);
      } else if (auto* qw = std::get_if<RequestWrite>(&w.op); qw != nullptr && qw->done) {
        qw->done(w.status);
      } else if (auto* xw = std::get_if<RawWrite>(&w.op); xw != nullptr && xw->done) {
        xw->done(w.status);
      } else if (auto* aw = std::get_if<AttemptWrite>(&w.op); aw != nullptr && aw->done) {
        aw->done(w.status);
      }
    }
    absl::MutexLock lock(&mu_);
    applied_ += group.size();
    if (tx.ok()) ++transactions_;
    if (first_error_.ok()) first_error_ = first_error;
  }
}

absl::Status Store::ApplyGroup(std::vector<Write>& group) {
  sqlite3* db = writer_db_.get();
  const std::string where = absl::StrCat("store ", path_);
  absl::Status tx;
  int rc = StepDone(begin_.get());
  if (rc != SQLITE_DONE) {
    tx = SqliteError(db, rc, absl::StrCat(where, ": begin transaction"));
  }
  for (size_t i = 0; tx.ok() && i < group.size(); ++i) {
    absl::Status status = ApplyWrite(group[i]);
    if (status.ok()) continue;
    if (sqlite3_get_autocommit(db)) {
      // SQLite rolled the whole transaction back (disk full, I/O error).
      tx = status;
      break;
    }
    // Only this statement failed; the rest of the group still commits.
    group[i].status = status;
    if (auto* op = std::get_if<NewRun>(&group[i].op)) {
      op->result->status = status;
    } else {
      spdlog::error("{}", std::string(status.message()));
    }
  }
  if (tx.ok()) {
    rc = StepDone(commit_.get());
    if (rc != SQLITE_DONE) tx = SqliteError(db, rc, absl::StrCat(where, ": commit"));
  }
  if (tx.ok()) return tx;

  if (!sqlite3_get_autocommit(db)) StepDone(rollback_.get());
  spdlog::error("{} ({} writes lost)", std::string(tx.message()), group.size());
  for (Write& w : group) {
    w.status = tx;
    if (auto* op = std::get_if<NewRun>(&w.op)) {
      op->result->status = tx;
      op->result->id = 0;
    }
  }
  return tx;
}

namespace {

// Binds one row's 14 columns from parameter `first` on.
void BindInstance(sqlite3_stmt* s, int first, const InstanceCols& c) {
  sqlite3_bind_int64(s, first, c.run_id);
  sqlite3_bind_int64(s, first + 1, c.seq);
  BindText(s, first + 2, c.task);
  BindText(s, first + 3, c.params);
  BindText(s, first + 4, c.output);
  sqlite3_bind_int(s, first + 5, c.state);
  BindText(s, first + 6, c.error);
  sqlite3_bind_int(s, first + 7, c.attempts);
  sqlite3_bind_int64(s, first + 8, c.started_ms);
  sqlite3_bind_int64(s, first + 9, c.finished_ms);
  sqlite3_bind_int64(s, first + 10, c.bytes);
  sqlite3_bind_int64(s, first + 11, c.lines);
  sqlite3_bind_int(s, first + 12, c.pgid);
  sqlite3_bind_int64(s, first + 13, c.made_by_run);
}

InstanceCols NewRowCols(const NewRows& rows, size_t i) {
  const NewRows::RowView row = rows.Row(i);
  InstanceCols c;
  c.run_id = rows.run_id();
  c.seq = row.seq;
  c.task = rows.task();
  c.params = row.params;
  c.output = row.output;
  c.state = row.state;
  c.finished_ms = row.finished_ms;
  return c;
}

}  // namespace

absl::Status Store::UpsertInstance(const InstanceRecord& r) {
  sqlite3* db = writer_db_.get();
  sqlite3_stmt* s = upsert_instance_.get();
  BindInstance(s, 1,
               InstanceCols{r.run_id, r.seq, r.task, r.params, r.output, r.state, r.error, r.attempts,
                            r.started_ms, r.finished_ms, r.bytes, r.lines, r.pgid, r.made_by_run});
  int rc = StepDone(s);
  if (rc != SQLITE_DONE) {
    return SqliteError(db, rc, absl::StrCat("store ", path_, ": put instance ",
                                            r.run_id, "/", r.seq, " (",
                                            r.task, ")"));
  }
  return absl::OkStatus();
}

absl::Status Store::UpsertNewRows(const NewRows& rows) {
  sqlite3* db = writer_db_.get();
  absl::Status first;
  // Rows below this index go one at a time: a statement of several rows
  // that failed undid itself, and the failing row is to be named.
  size_t one_by_one_until = 0;
  for (size_t i = 0; i < rows.size();) {
    const bool several = i >= one_by_one_until && rows.size() - i >= kRowsPerUpsert;
    const size_t n = several ? kRowsPerUpsert : 1;
    sqlite3_stmt* s = several ? upsert_instances_.get() : upsert_instance_.get();
    for (size_t j = 0; j < n; ++j) {
      BindInstance(s, 1 + static_cast<int>(j) * kInstanceColumnCount, NewRowCols(rows, i + j));
    }
    const int rc = StepDone(s);
    if (rc == SQLITE_DONE) {
      i += n;
      continue;
    }
    absl::Status status = SqliteError(
        db, rc, absl::StrCat("store ", path_, ": put instance ", rows.run_id(), "/", rows.Row(i).seq, " (",
                             rows.task(), several ? absl::StrCat(" and ", n - 1, " more") : "", ")"));
    // Rolled back (disk full, I/O error): ApplyGroup ends the group.
    if (sqlite3_get_autocommit(db)) return status;
    if (several) {
      one_by_one_until = i + n;
      continue;
    }
    if (first.ok()) first = status;  // only this row failed
    ++i;
  }
  return first;
}

absl::Status Store::ApplyWrite(Write& write) {
  if (auto* iw = std::get_if<InstanceWrite>(&write.op)) return UpsertInstance(iw->record);
  if (auto* rw = std::get_if<RowsWrite>(&write.op)) return UpsertNewRows(rw->rows);
  if (auto* aw = std::get_if<AttemptWrite>(&write.op)) return InsertAttempt(aw->record);
  sqlite3* db = writer_db_.get();
  if (auto* xw = std::get_if<RawWrite>(&write.op)) return xw->apply(db);
  if (auto* rw = std::get_if<RunWrite>(&write.op)) {
    const v1::Run& run = rw->run;
    std::string blob = run.SerializeAsString();
    sqlite3_stmt* s = update_run_.get();
    sqlite3_bind_int64(s, 1, run.id());
    sqlite3_bind_int(s, 2, run.state());
    sqlite3_bind_int64(s, 3, run.finished_ms());
    BindText(s, 4, run.error());
    BindBlob(s, 5, blob);
    int rc = StepDone(s);
    if (rc != SQLITE_DONE) {
      return SqliteError(db, rc,
                         absl::StrCat("store ", path_, ": put run ", run.id()));
    }
    if (sqlite3_changes(db) == 0) {
      return absl::NotFoundError(absl::StrCat("store ", path_, ": put run ",
                                              run.id(), ": run ", run.id(),
                                              " not found"));
    }
    return absl::OkStatus();
  }
  if (auto* rq = std::get_if<RequestWrite>(&write.op)) {
    sqlite3_stmt* s = update_request_.get();
    sqlite3_bind_int64(s, 1, rq->run_id);
    BindBlob(s, 2, rq->request);
    int rc = StepDone(s);
    if (rc != SQLITE_DONE) {
      return SqliteError(db, rc, absl::StrCat("store ", path_, ": put request of run ", rq->run_id));
    }
    return absl::OkStatus();
  }
  if (auto* meta = std::get_if<MetaWrite>(&write.op)) {
    sqlite3_stmt* s = set_meta_.get();
    BindText(s, 1, meta->key);
    BindText(s, 2, meta->value);
    int rc = StepDone(s);
    if (rc != SQLITE_DONE) {
      return SqliteError(db, rc, absl::StrCat("store ", path_, ": write meta ", meta->key));
    }
    return absl::OkStatus();
  }
  NewRun& op = std::get<NewRun>(write.op);
  std::string blob = op.run.SerializeAsString();
  sqlite3_stmt* s = insert_run_.get();
  BindText(s, 1, op.run.flow());
  BindText(s, 2, op.run.workspace());
  sqlite3_bind_int(s, 3, op.run.state());
  sqlite3_bind_int64(s, 4, op.run.created_ms());
  sqlite3_bind_int64(s, 5, op.run.finished_ms());
  BindText(s, 6, op.run.error());
  BindBlob(s, 7, blob);
  BindBlob(s, 8, op.request);
  int rc = StepDone(s);
  if (rc != SQLITE_DONE) {
    return SqliteError(db, rc, absl::StrCat("store ", path_, ": create run of flow ",
                                            op.run.flow()));
  }
  op.result->id = sqlite3_last_insert_rowid(db);
  return absl::OkStatus();
}

namespace {

// Reads rows of (id, run, request) into RunRecords.
absl::StatusOr<std::vector<RunRecord>> ReadRuns(sqlite3* db, sqlite3_stmt* stmt,
                                                const std::string& where) {
  std::vector<RunRecord> runs;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    RunRecord record;
    int64_t id = sqlite3_column_int64(stmt, 0);
    const void* data = sqlite3_column_blob(stmt, 1);
    int size = sqlite3_column_bytes(stmt, 1);
    if (size > 0 && !record.run.ParseFromArray(data, size)) {
      return absl::DataLossError(
          absl::StrCat(where, ": run ", id, ": stored v1::Run does not parse"));
    }
    record.run.set_id(id);
    record.request = ColumnString(stmt, 2);
    runs.push_back(std::move(record));
  }
  if (rc != SQLITE_DONE) return SqliteError(db, rc, absl::StrCat(where, ": read runs"));
  return runs;
}

}  // namespace

absl::StatusOr<RunRecord> Store::GetRun(int64_t id) {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = get_run_.get();
  ResetOnExit reset(s);
  sqlite3_bind_int64(s, 1, id);
  absl::StatusOr<std::vector<RunRecord>> runs =
      ReadRuns(reader_db_.get(), s, absl::StrCat("store ", path_));
  if (!runs.ok()) return runs.status();
  if (runs->empty()) return absl::NotFoundError(absl::StrCat("run ", id, " not found"));
  return std::move(runs->front());
}

absl::StatusOr<std::vector<RunRecord>> Store::ListRuns(int limit, bool only_running, int64_t before_id,
                                                       bool with_request) {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = list_runs_.get();
  ResetOnExit reset(s);
  sqlite3_bind_int64(s, 1, limit > 0 ? limit : -1);
  sqlite3_bind_int(s, 2, only_running ? v1::RUN_RUNNING : 0);
  sqlite3_bind_int64(s, 3, before_id);
  sqlite3_bind_int(s, 4, with_request ? 1 : 0);
  return ReadRuns(reader_db_.get(), s, absl::StrCat("store ", path_));
}

absl::StatusOr<std::vector<RunRecord>> Store::ListRuns(const RunQuery& q) {
  uint64_t mask = 0;
  for (v1::RunState state : q.states) {
    if (state >= 0 && state < 63) mask |= uint64_t{1} << state;
  }
  if (!q.states.empty() && mask == 0) return std::vector<RunRecord>();
  absl::MutexLock lock(&reader_mu_);
  // Prepared per call: listings are rare (a dashboard page), and the
  // filters keep one statement for every combination.
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(reader_db_.get(),
                              "SELECT id, run, '' FROM runs WHERE pruned=0 AND (?2 = 0 OR id < ?2)"
                              " AND (?3 = '' OR flow = ?3) AND (?4 = 0 OR ((?4 >> state) & 1))"
                              " ORDER BY id DESC LIMIT ?1",
                              -1, &raw, nullptr);
  Stmt s(raw);
  if (rc != SQLITE_OK) return SqliteError(reader_db_.get(), rc, absl::StrCat("store ", path_, ": list runs"));
  sqlite3_bind_int64(raw, 1, q.limit > 0 ? q.limit : -1);
  sqlite3_bind_int64(raw, 2, q.before_id);
  BindText(raw, 3, q.flow);
  sqlite3_bind_int64(raw, 4, static_cast<int64_t>(mask));
  return ReadRuns(reader_db_.get(), raw, absl::StrCat("store ", path_));
}

absl::StatusOr<std::vector<std::pair<v1::RunState, int64_t>>> Store::CountRuns() {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(reader_db_.get(), "SELECT state, count(*) FROM runs WHERE pruned=0 GROUP BY state", -1, &raw,
                              nullptr);
  Stmt s(raw);
  const std::string where = absl::StrCat("store ", path_, ": count runs");
  if (rc != SQLITE_OK) return SqliteError(reader_db_.get(), rc, where);
  std::vector<std::pair<v1::RunState, int64_t>> counts;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
    counts.emplace_back(static_cast<v1::RunState>(sqlite3_column_int(raw, 0)), sqlite3_column_int64(raw, 1));
  }
  if (rc != SQLITE_DONE) return SqliteError(reader_db_.get(), rc, where);
  return counts;
}

absl::StatusOr<std::vector<InstanceRecord>> Store::ListInstances(
    const InstanceQuery& q) {
  uint64_t mask = 0;
  for (v1::InstanceState state : q.states) {
    if (state >= 0 && state < 63) mask |= uint64_t{1} << state;
  }
  if (!q.states.empty() && mask == 0) return std::vector<InstanceRecord>();
  if (q.needles.size() > static_cast<size_t>(kMaxParamNeedles)) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxParamNeedles, " params matches"));
  }
  return QueryInstances(q.needles, q.run_id, q.task, mask, q.after_seq, q.limit, q.params);
}

void Store::PutRaw(RawApply apply, RowsDone done) {
  Enqueue(Write{RawWrite{std::move(apply), std::move(done)}, {}});
}

absl::Status Store::Read(const std::function<absl::Status(sqlite3*)>& read) {
  absl::MutexLock lock(&reader_mu_);
  return read(reader_db_.get());
}

absl::StatusOr<std::string> Store::GetMeta(const std::string& key) {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = get_meta_.get();
  ResetOnExit reset(s);
  BindText(s, 1, key);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) return ColumnString(s, 0);
  if (rc == SQLITE_DONE) return std::string();
  return SqliteError(reader_db_.get(), rc, absl::StrCat("store ", path_, ": read meta ", key));
}

absl::Status Store::SetMeta(const std::string& key, const std::string& value) {
  Enqueue(Write{MetaWrite{key, value}, {}});
  return Flush();
}

absl::StatusOr<std::vector<FoundInstance>> Store::FindInstances(const InstanceFilter& f) {
  uint64_t mask = 0;
  for (v1::InstanceState state : f.states) {
    if (state >= 0 && state < 63) mask |= uint64_t{1} << state;
  }
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = find_instances_.get();
  ResetOnExit reset(s);
  sqlite3_bind_int64(s, 1, f.run_id);
  BindText(s, 2, f.flow);
  BindText(s, 3, f.task);
  BindText(s, 4, f.path);
  sqlite3_bind_int64(s, 5, static_cast<int64_t>(mask));
  BindText(s, 6, f.workspace);
  BindText(s, 7, f.path_prefix);
  std::vector<FoundInstance> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    FoundInstance found;
    found.record = ReadInstance(s);
    found.workspace = ColumnString(s, 14);
    out.push_back(std::move(found));
  }
  if (rc != SQLITE_DONE) {
    return SqliteError(reader_db_.get(), rc, absl::StrCat("store ", path_, ": find instances"));
  }
  return out;
}

absl::StatusOr<std::vector<InstanceRecord>> Store::LoadInstances(int64_t run_id) {
  return QueryInstances({}, run_id, "", 0, -1, 0, "");
}

absl::StatusOr<std::vector<InstanceRecord>> Store::QueryInstances(
    const std::vector<std::string>& needles, int64_t run_id, const std::string& task, uint64_t state_mask,
    int64_t after_seq, int limit, const std::string& params) {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = task.empty() ? list_instances_.get() : list_task_instances_.get();
  ResetOnExit reset(s);
  sqlite3_bind_int64(s, 1, run_id);
  sqlite3_bind_int64(s, 2, after_seq);
  sqlite3_bind_int64(s, 3, static_cast<int64_t>(state_mask));
  sqlite3_bind_int64(s, 4, limit > 0 ? limit : -1);
  if (!task.empty()) {
    BindText(s, 5, task);
    BindText(s, 6, params);
    for (size_t i = 0; i < needles.size(); ++i) BindText(s, 7 + static_cast<int>(i), needles[i]);
  }
  std::vector<InstanceRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ReadInstance(s));
  if (rc != SQLITE_DONE) {
    return SqliteError(reader_db_.get(), rc,
                       absl::StrCat("store ", path_, ": read instances of run ", run_id));
  }
  return out;
}

}  // namespace asflow
