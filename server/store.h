// The daemon's durable state: runs and instances in one SQLite database.
#ifndef ASFLOW_SERVER_STORE_H_
#define ASFLOW_SERVER_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "asflow/v1/flow.pb.h"
#include "server/state_store.h"
#include "server/store_records.h"
#include "server/histogram.h"

struct sqlite3;
struct sqlite3_stmt;

namespace asflow {

// How a Store trades durability, latency and memory.
struct StoreOptions {
  // true: synchronous=FULL, every group commit is on disk when its callbacks
  // run. false: synchronous=NORMAL, a power loss may lose the last commits
  // (never corrupts the database).
  bool sync_commits = true;
  // Most writes applied in one transaction (one COMMIT, one fsync).
  size_t max_group = 8192;
  // A group is taken no sooner than this after the previous one began, so
  // a stream of small writes costs a transaction per `linger` rather than
  // one per write (on fast storage a commit is quick, and groups stayed one
  // or two writes long). A write that comes later than that after the last
  // commit began is committed at once; a full group, Flush, CreateRun and
  // stopping cut the wait short. Zero: never wait.
  absl::Duration linger = absl::Milliseconds(1);
  // PutInstance/PutRun block while this many writes are queued, so a burst of
  // state changes cannot grow memory without bound.
  size_t max_pending = 1 << 20;
};

// Filter for Store::ListRuns(const RunQuery&): newest first; page by
// passing the last id seen as before_id.
struct RunQuery {
  int limit = 50;                    // <= 0: no limit
  int64_t before_id = 0;             // only id < before_id; 0: any
  std::string flow;                  // empty: any flow
  std::vector<v1::RunState> states;  // empty: any state
};

// The daemon's SQLite database (WAL): the StateStore the daemon runs on.
// Writes are queued and applied in call order by one writer thread in
// grouped transactions (one COMMIT per group, so no fsync per state
// change); reads use their own connection and see only committed data.
// Thread-safe.
class Store final : public StateStore {
 public:
  // Newest schema version this build knows (PRAGMA user_version).
  static constexpr int kSchemaVersion = 6;

  // Opens or creates the database at `path`: creates parent directories and
  // the file (mode 0600) and migrates the schema. Fails, naming the path, if
  // the file cannot be opened or was written by a newer asflowd.
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const std::string& path, const StoreOptions& options = {});

  // Commits everything queued (running its callbacks), then stops the writer.
  // REQUIRES: no other thread is calling into the Store.
  ~Store();

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Inserts the run (ignoring run.id) and returns its new id, which is larger
  // than every id handed out before. Blocks until the insert is committed;
  // ordered with the asynchronous writes queued before it. Fails (without
  // blocking) if called from a write's callback.
  absl::StatusOr<int64_t> CreateRun(const v1::Run& run, const std::string& request) override;

  // Asynchronous writes, applied in call order. A write's callback (may be
  // null) runs on the writer thread right after the transaction that holds
  // it ended, in call order, before Flush waiters wake; it must not block.
  // It runs exactly once with the write's own status: OK if committed, else
  // why it is lost (a failed statement, or the whole transaction rolled
  // back: disk full, I/O error). Blocks while max_pending writes are
  // queued, except on the writer thread.
  //
  // Inserts or replaces the instance (run_id, seq). The run must exist.
  // The callback gets the record as written: a caller that publishes it
  // need not keep a second copy while the write waits in the queue.
  void PutInstance(InstanceRecord record, InstanceDone done = nullptr) override;
  // Inserts or replaces each row, as PutInstance would, in one write.
  void PutNew(NewRows rows, RowsDone done = nullptr) override;
  // Updates state, finished_ms, error and the stored v1::Run (counters etc.)
  // of run.id. A run that does not exist is a NotFound write error.
  void PutRun(v1::Run run, RunDone done = nullptr) override;
  // Appends an attempt row (store_attempts.cc).
  void PutAttempt(AttemptRecord record, RowsDone done = nullptr) override;
  // Replaces the stored request of run `run_id`.
  void PutRunRequest(int64_t run_id, std::string request, RowsDone done = nullptr) override;

  // A write of another part's own tables (schedules, retention): `apply`
  // runs on the writer thread inside a group transaction, in call order
  // with the other writes, and returns its statements' status (an error
  // from SqliteError-like code; the rest of the group still commits unless
  // SQLite rolled the transaction back). `apply` must not block or touch
  // the Store.
  using RawApply = std::function<absl::Status(sqlite3* db)>;
  void PutRaw(RawApply apply, RowsDone done = nullptr);
  // Runs `read` with the reader connection (query_only), serialized with
  // the other reads.
  absl::Status Read(const std::function<absl::Status(sqlite3* db)>& read);

  // Blocks until every write queued before the call is committed (and its
  // callback has run). Returns the first write error since the previous
  // Flush, or OK. From a write's callback: FailedPrecondition.
  absl::Status Flush() override;
  // Blocks until every write the writer has already taken (committed, or
  // being committed) has had its callback run; writes still queued are not
  // waited for, so the wait is one group commit at most. A read made before
  // the call then sees nothing the writer has committed but not yet handed
  // to its callback (e.g. published). Leaves write errors to Flush. From a
  // write's callback: FailedPrecondition.
  absl::Status AwaitCallbacks();

  // Writes queued or being applied, not yet committed.
  size_t pending_writes() const;
  // Transactions the writer has committed since Open (for tests and stats).
  uint64_t transactions_committed() const;
  // How long each group transaction took, BEGIN to COMMIT (its fsync
  // included), for /metrics.
  const Histogram& commit_latency() const { return commit_latency_; }

  // Reads; each sees one committed snapshot. Concurrent reads are serialized
  // on one reader connection.
  //
  // NotFound "run 42 not found" if there is no such run.
  absl::StatusOr<RunRecord> GetRun(int64_t id) override;
  // Newest first; at most `limit` runs (<= 0: all); only RUN_RUNNING ones if
  // only_running; only ids below `before_id` unless it is 0 (paging);
  // RunRecord::request left empty unless `with_request`.
  absl::StatusOr<std::vector<RunRecord>> ListRuns(int limit, bool only_running, int64_t before_id = 0,
                                                  bool with_request = true) override;
  // Runs matching `q`, newest first, without their requests.
  absl::StatusOr<std::vector<RunRecord>> ListRuns(const RunQuery& q);
  // How many runs are stored in each state.
  absl::StatusOr<std::vector<std::pair<v1::RunState, int64_t>>> CountRuns();
  // Instances of q.run_id matching q, in seq order.
  absl::StatusOr<std::vector<InstanceRecord>> ListInstances(
      const InstanceQuery& q);
  // Every instance of the run, in seq order (to resume it after a restart).
  absl::StatusOr<std::vector<InstanceRecord>> LoadInstances(int64_t run_id) override;
  // The attempts of run `run_id` (of instance `seq` unless it is < 0), in
  // (seq, the order they were written) order, each with its instance's
  // task and params (store_attempts.cc).
  struct StoredAttempt {
    AttemptRecord record;
    std::string task;
    std::string params;
  };
  absl::StatusOr<std::vector<StoredAttempt>> ListAttempts(int64_t run_id, int64_t seq = -1);
  // Daemon-wide facts (e.g. "boot_id"); "" when unset. SetMeta goes through
  // the writer like every write and returns once it is committed.
  absl::StatusOr<std::string> GetMeta(const std::string& key) override;
  absl::Status SetMeta(const std::string& key, const std::string& value) override;
  // Rows matching `filter`, in (run_id, seq) order.
  absl::StatusOr<std::vector<FoundInstance>> FindInstances(const InstanceFilter& filter) override;

  const std::string& path() const override { return path_; }

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* stmt) const;
  };
  using Db = std::unique_ptr<sqlite3, DbCloser>;
  using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

  // Where CreateRun's caller waits for the writer's answer.
  struct CreateRunResult {
    absl::Status status;
    int64_t id = 0;
  };
  struct NewRun {
    v1::Run run;
    std::string request;
    CreateRunResult* result;  // owned by the waiting CreateRun caller
  };
  struct InstanceWrite {
    InstanceRecord record;
    InstanceDone done;
  };
  struct RunWrite {
    v1::Run run;
    RunDone done;
  };
  struct RowsWrite {
    NewRows rows;
    RowsDone done;
  };
  struct RequestWrite {
    int64_t run_id;
    std::string request;
    RowsDone done;
  };
  struct RawWrite {
    RawApply apply;
    RowsDone done;
  };
  struct AttemptWrite {
    AttemptRecord record;
    RowsDone done;
  };
  struct MetaWrite {
    std::string key;
    std::string value;
  };
  struct Write {
    std::variant<InstanceWrite, RunWrite, NewRun, MetaWrite, RowsWrite, RequestWrite, RawWrite, AttemptWrite> op;
    absl::Status status;  // this write's outcome, for its callback
  };

  Store(std::string path, const StoreOptions& options);
  absl::Status Init();
  absl::Status Migrate();
  // A new (empty) file gets auto_vacuum=INCREMENTAL.
  absl::Status MaybeIncrementalVacuum();
  // PRAGMA user_version of the writer connection (reads the header only);
  // DataLoss "file is not a database" for a file that is not SQLite.
  absl::StatusOr<int> ReadSchemaVersion();
  // FailedPrecondition naming the file unless 0 <= version <= kSchemaVersion.
  absl::Status CheckSchemaVersion(int version) const;
  absl::Status PrepareStatements();
  // The attempts table's statements (store_attempts.cc).
  absl::Status PrepareAttemptStatements() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reader_mu_);
  absl::Status InsertAttempt(const AttemptRecord& r);

  // Queues one write and returns its sequence number (1-based, call order).
  uint64_t Enqueue(Write write);
  void WriterLoop();
  // Applies `group` in one transaction on the writer thread: each write's
  // status is set (a failed transaction fails them all). Returns the
  // transaction's status.
  absl::Status ApplyGroup(std::vector<Write>& group);
  absl::Status ApplyWrite(Write& write);
  absl::Status UpsertInstance(const InstanceRecord& r);
  absl::Status UpsertNewRows(const NewRows& rows);
  absl::Status ExecWriter(const char* sql);

  absl::StatusOr<std::vector<InstanceRecord>> QueryInstances(const std::vector<std::string>& needles,
      int64_t run_id, const std::string& task, uint64_t state_mask,
      int64_t after_seq, int limit, const std::string& params);

  bool HasWorkOrStoppingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A lingering writer takes its group now (StoreOptions::linger).
  bool GroupDueLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Blocks until the write numbered `seq` (Enqueue's) has had its callback
  // run; with `cut_linger`, a lingering writer takes its group at once.
  void AwaitAppliedLocked(uint64_t seq, bool cut_linger) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string path_;
  const StoreOptions options_;

  // Owned by the writer thread once it starts (Open uses them before).
  Db writer_db_;
  Stmt begin_, commit_, rollback_;
  Stmt insert_run_, update_run_, update_request_, upsert_instance_;
  Stmt upsert_instances_;  // kRowsPerUpsert rows at once
  Stmt insert_attempt_;
  std::thread writer_;
  std::thread::id writer_id_;

  // The read side.
  absl::Mutex reader_mu_;
  Db reader_db_ ABSL_GUARDED_BY(reader_mu_);
  Stmt get_run_ ABSL_GUARDED_BY(reader_mu_);
  Stmt list_runs_ ABSL_GUARDED_BY(reader_mu_);
  Stmt list_instances_ ABSL_GUARDED_BY(reader_mu_);
  Stmt list_task_instances_ ABSL_GUARDED_BY(reader_mu_);
  Stmt find_instances_ ABSL_GUARDED_BY(reader_mu_);
  Stmt get_meta_ ABSL_GUARDED_BY(reader_mu_);
  Stmt list_attempts_ ABSL_GUARDED_BY(reader_mu_);
  Stmt set_meta_;  // writer thread only

  // The write queue.
  mutable absl::Mutex mu_;
  std::deque<Write> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;  // writes ever queued
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;   // writes done, callbacks run
  uint64_t transactions_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);  // since the last Flush
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int waiters_ ABSL_GUARDED_BY(mu_) = 0;  // in AwaitAppliedLocked
  Histogram commit_latency_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_STORE_H_
