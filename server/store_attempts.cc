// Store: the attempts table (schema version 4), each attempt's history
// for `asflowctl show` and `asflowctl logs`.
#include <sqlite3.h>

#include <initializer_list>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/store.h"

namespace asflow {
namespace {

constexpr char kInsertAttempt[] =
    "INSERT INTO attempts(run_id, seq, attempt, started_ms, finished_ms, exit_code, term_signal, state, error,"
    " stderr) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

constexpr char kListAttempts[] =
    "SELECT a.run_id, a.seq, a.attempt, a.started_ms, a.finished_ms, a.exit_code, a.term_signal, a.state,"
    " a.error, a.stderr, i.task, i.params"
    " FROM attempts a JOIN instances i ON i.run_id=a.run_id AND i.seq=a.seq"
    " WHERE a.run_id=?1 AND (?2<0 OR a.seq=?2) ORDER BY a.seq, a.id";

absl::Status Error(sqlite3* db, const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
}

std::string Column(sqlite3_stmt* stmt, int column) {
  const void* data = sqlite3_column_blob(stmt, column);
  const int size = sqlite3_column_bytes(stmt, column);
  if (data == nullptr || size <= 0) return std::string();
  return std::string(static_cast<const char*>(data), size);
}

}  // namespace

absl::Status Store::PrepareAttemptStatements() {
  using Entry = std::tuple<sqlite3*, const char*, Stmt*>;
  for (auto [db, sql, stmt] : std::initializer_list<Entry>{{writer_db_.get(), kInsertAttempt, &insert_attempt_},
                                                          {reader_db_.get(), kListAttempts, &list_attempts_}}) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    stmt->reset(raw);
    if (rc != SQLITE_OK) return Error(db, absl::StrCat("store ", path_, ": ", sql));
  }
  return absl::OkStatus();
}

absl::Status Store::InsertAttempt(const AttemptRecord& r) {
  sqlite3* db = writer_db_.get();
  sqlite3_stmt* s = insert_attempt_.get();
  sqlite3_bind_int64(s, 1, r.run_id);
  sqlite3_bind_int64(s, 2, r.seq);
  sqlite3_bind_int(s, 3, r.attempt);
  sqlite3_bind_int64(s, 4, r.started_ms);
  sqlite3_bind_int64(s, 5, r.finished_ms);
  sqlite3_bind_int(s, 6, r.exit_code);
  sqlite3_bind_int(s, 7, r.term_signal);
  sqlite3_bind_int(s, 8, r.state);
  sqlite3_bind_text(s, 9, r.error.data(), static_cast<int>(r.error.size()), SQLITE_STATIC);
  sqlite3_bind_blob(s, 10, r.stderr_tail.data(), static_cast<int>(r.stderr_tail.size()), SQLITE_STATIC);
  const int rc = sqlite3_step(s);
  absl::Status status;
  if (rc != SQLITE_DONE) {
    status = Error(db, absl::StrCat("store ", path_, ": put attempt ", r.attempt, " of instance ", r.run_id, "/", r.seq));
  }
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return status;
}

absl::StatusOr<std::vector<Store::StoredAttempt>> Store::ListAttempts(int64_t run_id, int64_t seq) {
  absl::MutexLock lock(&reader_mu_);
  sqlite3_stmt* s = list_attempts_.get();
  sqlite3_bind_int64(s, 1, run_id);
  sqlite3_bind_int64(s, 2, seq);
  std::vector<StoredAttempt> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    StoredAttempt a;
    AttemptRecord& r = a.record;
    r.run_id = sqlite3_column_int64(s, 0);
    r.seq = sqlite3_column_int64(s, 1);
    r.attempt = sqlite3_column_int(s, 2);
    r.started_ms = sqlite3_column_int64(s, 3);
    r.finished_ms = sqlite3_column_int64(s, 4);
    r.exit_code = sqlite3_column_int(s, 5);
    r.term_signal = sqlite3_column_int(s, 6);
    r.state = static_cast<v1::InstanceState>(sqlite3_column_int(s, 7));
    r.error = Column(s, 8);
    r.stderr_tail = Column(s, 9);
    a.task = Column(s, 10);
    a.params = Column(s, 11);
    out.push_back(std::move(a));
  }
  absl::Status status;
  if (rc != SQLITE_DONE) status = Error(reader_db_.get(), absl::StrCat("store ", path_, ": list attempts of run ", run_id));
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  if (!status.ok()) return status;
  return out;
}

}  // namespace asflow
