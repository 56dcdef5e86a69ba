// The records the daemon keeps: runs and instances as stored, and the
// queries over them. Plain data shared by the StateStore interface, the
// SQLite Store and the scheduler. NewRows is not thread-safe.
#ifndef ASFLOW_SERVER_STORE_RECORDS_H_
#define ASFLOW_SERVER_STORE_RECORDS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "asflow/v1/flow.pb.h"

namespace asflow {

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
  // The run whose execution of a different command made the output
  // (v1::Instance.made_by_run); 0: its own command.
  int64_t made_by_run = 0;
};

// One attempt of an instance as stored (table `attempts`): when it ran,
// how it ended and the tail of its stderr. A successful attempt with
// nothing on stderr gets no row: the instance's own row (state DONE,
// started_ms, finished_ms, attempts) already says all of it.
struct AttemptRecord {
  int64_t run_id = 0;
  int64_t seq = 0;
  // 1 for the first try; a try that did not count (its worker was lost,
  // a cooldown) has the number the next try will have.
  int32_t attempt = 0;
  int64_t started_ms = 0, finished_ms = 0;
  int32_t exit_code = -1;  // -1: never ran or killed by a signal
  int32_t term_signal = 0;
  // What came of it: DONE, FAILED, SKIPPED, SUPPRESSED; QUEUED when it
  // was tried again (retry, cooldown, worker lost); CANCELLED.
  v1::InstanceState state = v1::DONE;
  std::string error;   // the error text (or the note of a requeue)
  std::string stderr_tail;  // last bytes of stderr (asflowd --stderr-tail)
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
  // Only with task: params (canonical JSON text) contain each of these
  // (ParamNeedle); at most kMaxParamNeedles.
  std::vector<std::string> needles;
};
inline constexpr int kMaxParamNeedles = 4;

// Instances across runs, for ResetTasks. Every non-empty field must match.
struct InstanceFilter {
  int64_t run_id = 0;    // 0: any run
  std::string flow;      // empty: any flow
  std::string task;      // empty: any task
  std::string path;      // absolute output path (workspace + "/" + output)
  // The absolute output path starts with this (an .err file's path less
  // its extension names its output that way).
  std::string path_prefix;
  std::string workspace;  // the run's workspace; empty: any
  std::vector<v1::InstanceState> states;  // required, non-empty
};

// An instance row with its run's workspace.
struct FoundInstance {
  InstanceRecord record;
  std::string workspace;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_STORE_RECORDS_H_
