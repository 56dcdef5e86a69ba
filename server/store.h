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
#include "asflow/v1/flow.pb.h"

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
  // PutInstance/PutRun block while this many writes are queued, so a burst of
  // state changes cannot grow memory without bound.
  size_t max_pending = 1 << 20;
};

// One run as stored: the v1::Run (with its counters) and how it was submitted.
struct RunRecord {
  v1::Run run;          // id, flow, workspace, state, params, created_ms,
                        // finished_ms, error, keep_going, tasks (counters)
  std::string request;  // serialized v1::SubmitFlowRequest, kept to resume
                        // the run after a restart
};

// One instance as seen by one run; (run_id, seq) is the key.
struct InstanceRecord {
  int64_t run_id = 0;
  int64_t seq = 0;       // position within the run
  std::string task;
  std::string params;    // canonical JSON object text, e.g. {"video_id":"abc"}
  std::string output;    // relative to the workspace; may be empty
  v1::InstanceState state = v1::QUEUED;
  std::string error;
  int32_t attempts = 0;
  int64_t started_ms = 0, finished_ms = 0, bytes = 0, lines = 0;
  // Process group of the command while RUNNING (0 otherwise): after a
  // crash, the restarted daemon kills what is left of it.
  int32_t pgid = 0;
};

// First rows of new instances of one task (queued, or cached: nothing
// run, no error), written as one write: a run that expands 100,000
// instances holds ~30 bytes per row plus its text until they are
// committed, not a whole InstanceRecord write per row.
class NewRows {
 public:
  NewRows(int64_t run_id, std::string task) : run_id_(run_id), task_(std::move(task)) {}
  void Add(int64_t seq, v1::InstanceState state, int64_t finished_ms, absl::string_view params,
           absl::string_view output);
  size_t size() const { return rows_.size(); }
  int64_t run_id() const { return run_id_; }
  const std::string& task() const { return task_; }
  // Row i's own fields, as views into this object; its other columns
  // (error, attempts, started_ms...) are empty or zero.
  struct RowView {
    int64_t seq;
    int64_t finished_ms;
    v1::InstanceState state;
    absl::string_view params;
    absl::string_view output;
  };
  RowView Row(size_t i) const;

 private:
  struct Row_ {
    int64_t seq;
    int64_t finished_ms;
    uint32_t params_end;  // in text_; the output follows up to output_end
    uint32_t output_end;
    v1::InstanceState state;
  };
  int64_t run_id_;
  std::string task_;
  std::vector<Row_> rows_;
  std::string text_;
};

// Filter for Store::ListInstances. Results are in seq order; page by passing
// the last seq seen as after_seq.
struct InstanceQuery {
  int64_t run_id = 0;
  std::string task;                      // empty: any task
  std::vector<v1::InstanceState> states;  // empty: any state
  int64_t after_seq = -1;                // only seq > after_seq
  int limit = 1000;                      // <= 0: no limit
  std::string params;  // canonical params JSON; only with task; empty: any
};

// Instances across runs, for ResetTasks. Every non-empty field must match.
struct InstanceFilter {
  int64_t run_id = 0;    // 0: any run
  std::string flow;      // empty: any flow
  std::string task;      // empty: any task
  std::string path;      // absolute output path (workspace + "/" + output)
  std::vector<v1::InstanceState> states;  // required, non-empty
};

// An instance row with its run's workspace.
struct FoundInstance {
  InstanceRecord record;
  std::string workspace;
};

// The daemon's SQLite database (WAL). Writes are queued and applied in call
// order by one writer thread in grouped transactions (one COMMIT per group,
// so no fsync per state change); reads use their own connection and see only
// committed data. Thread-safe.
class Store {
 public:
  // Newest schema version this build knows (PRAGMA user_version).
  static constexpr int kSchemaVersion = 3;

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
  // blocking) if called from an on_committed callback.
  absl::StatusOr<int64_t> CreateRun(const v1::Run& run,
                                    const std::string& request);

  // Asynchronous writes, applied in call order. on_committed (may be null)
  // runs on the writer thread right after the transaction that holds the
  // write ends, in call order, before Flush waiters wake; it must not block.
  // It runs exactly once even if the write failed (the failure is logged and
  // returned by the next Flush), so a caller never waits forever on it.
  // Blocks while max_pending writes are queued, except on the writer thread.
  //
  // Inserts or replaces the instance (run_id, seq). The run must exist.
  // on_committed gets the record as written: a caller that publishes it
  // need not keep a second copy while the write waits in the queue.
  void PutInstance(InstanceRecord record,
                   std::function<void(const InstanceRecord&)> on_committed = nullptr);
  // Inserts or replaces each row, as PutInstance would, in one write.
  void PutNew(NewRows rows);
  // Updates state, finished_ms, error and the stored v1::Run (counters etc.)
  // of run.id. A run that does not exist is a NotFound write error.
  // on_committed gets the run as written, as PutInstance's does.
  void PutRun(v1::Run run, std::function<void(const v1::Run&)> on_committed = nullptr);

  // Blocks until every write queued before the call is committed (and its
  // callback has run). Returns the first write error since the previous
  // Flush, or OK. From an on_committed callback: FailedPrecondition.
  absl::Status Flush();

  // Writes queued or being applied, not yet committed.
  size_t pending_writes() const;
  // Transactions the writer has committed since Open (for tests and stats).
  uint64_t transactions_committed() const;

  // Reads; each sees one committed snapshot. Concurrent reads are serialized
  // on one reader connection.
  //
  // NotFound "run 42 not found" if there is no such run.
  absl::StatusOr<RunRecord> GetRun(int64_t id);
  // Newest first; at most `limit` runs (<= 0: all); only RUN_RUNNING ones if
  // only_running; only ids below `before_id` unless it is 0 (paging);
  // RunRecord::request left empty unless `with_request`.
  absl::StatusOr<std::vector<RunRecord>> ListRuns(int limit, bool only_running, int64_t before_id = 0,
                                                  bool with_request = true);
  // Instances of q.run_id matching q, in seq order.
  absl::StatusOr<std::vector<InstanceRecord>> ListInstances(
      const InstanceQuery& q);
  // Every instance of the run, in seq order (to resume it after a restart).
  absl::StatusOr<std::vector<InstanceRecord>> LoadInstances(int64_t run_id);
  // Daemon-wide facts (e.g. "boot_id"); "" when unset. SetMeta goes through
  // the writer like every write and returns once it is committed.
  absl::StatusOr<std::string> GetMeta(const std::string& key);
  absl::Status SetMeta(const std::string& key, const std::string& value);
  // Rows matching `filter`, in (run_id, seq) order.
  absl::StatusOr<std::vector<FoundInstance>> FindInstances(const InstanceFilter& filter);

  const std::string& path() const { return path_; }

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
    std::function<void(const InstanceRecord&)> on_committed;
  };
  struct RunWrite {
    v1::Run run;
    std::function<void(const v1::Run&)> on_committed;
  };
  struct MetaWrite {
    std::string key;
    std::string value;
  };
  struct Write {
    std::variant<InstanceWrite, RunWrite, NewRun, MetaWrite, NewRows> op;
  };

  Store(std::string path, const StoreOptions& options);
  absl::Status Init();
  absl::Status Migrate();
  // PRAGMA user_version of the writer connection (reads the header only);
  // DataLoss "file is not a database" for a file that is not SQLite.
  absl::StatusOr<int> ReadSchemaVersion();
  // FailedPrecondition naming the file unless 0 <= version <= kSchemaVersion.
  absl::Status CheckSchemaVersion(int version) const;
  absl::Status PrepareStatements();

  // Queues one write and returns its sequence number (1-based, call order).
  uint64_t Enqueue(Write write);
  void WriterLoop();
  // Applies `group` in one transaction on the writer thread. Returns the
  // transaction's status; per-write failures go to `first_error`.
  absl::Status ApplyGroup(std::vector<Write>& group, absl::Status& first_error);
  absl::Status ApplyWrite(Write& write);
  absl::Status UpsertInstance(const InstanceRecord& r);
  absl::Status UpsertNewRows(const NewRows& rows);
  absl::Status ExecWriter(const char* sql);

  absl::StatusOr<std::vector<InstanceRecord>> QueryInstances(
      int64_t run_id, const std::string& task, uint64_t state_mask,
      int64_t after_seq, int limit, const std::string& params);

  bool HasWorkOrStoppingLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasRoomLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string path_;
  const StoreOptions options_;

  // Owned by the writer thread once it starts (Open uses them before).
  Db writer_db_;
  Stmt begin_, commit_, rollback_;
  Stmt insert_run_, update_run_, upsert_instance_;
  Stmt upsert_instances_;  // kRowsPerUpsert rows at once
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
  Stmt set_meta_;  // writer thread only

  // The write queue.
  mutable absl::Mutex mu_;
  std::deque<Write> queue_ ABSL_GUARDED_BY(mu_);
  uint64_t enqueued_ ABSL_GUARDED_BY(mu_) = 0;  // writes ever queued
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;   // writes done, callbacks run
  uint64_t transactions_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status first_error_ ABSL_GUARDED_BY(mu_);  // since the last Flush
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_STORE_H_
