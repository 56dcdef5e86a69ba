// ExecTable: the executions the scheduler has under way, each shared by
// every run that needs the same instance (DESIGN: "one instance, one
// execution"), found by id or by key (the absolute output path, or
// workspace + task + params for a task without `on`). Pure bookkeeping;
// not thread-safe (the scheduler thread owns it).
#ifndef ASFLOW_SERVER_EXEC_TABLE_H_
#define ASFLOW_SERVER_EXEC_TABLE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/container/node_hash_map.h"
#include "absl/strings/string_view.h"
#include "server/run_state.h"
#include "server/runner.h"

namespace asflow {

// One execution. Kept compact: a run of 100,000 instances may have as many
// waiting for a retry.
struct Exec {
  ExecId id = 0;
  // The only copy of the key: the table's index views it (the table is
  // node-based, so an Exec never moves).
  std::string key;
  // The instances waiting on it, as (run id, seq); almost always one.
  absl::InlinedVector<std::pair<int64_t, int64_t>, 1> waiters;
  // Task key, pool and rules of the task that created it.
  std::shared_ptr<const ExecDef> def;
  Runner* runner = nullptr;  // set while an attempt runs
  bool started = false;
  // Its process is being killed because no run needed it any more; runs
  // that join meanwhile wait for a fresh attempt.
  bool cancelling = false;
  int attempts = 0;  // attempts started so far
  int losses = 0;    // attempts whose worker was lost (not counted above)
  pid_t pgid = 0;    // process group of the running attempt
  int64_t attempt_started_ms = 0;  // when the running (or last) attempt started
  // The running attempt is in the LogHub (a built-in handler, which never
  // writes stderr, is not).
  bool live_log = false;
  // Chained starts (Plan::TakeSuccessor): started on its runner to begin
  // when execution `after` ends well, and not counted in the plan until
  // then (the handoff); `successor` is the execution chained after this one.
  bool pregranted = false;
  // Revoked while pregranted (Runner::Revoke): not begun, it comes back
  // (ReturnUnbegun); begun meanwhile, the revoke is void (OnHandoff).
  bool revoked = false;
  ExecId after = 0;
  ExecId successor = 0;

  // Not started (queued again, or waiting for its retry), and some run
  // still needs it.
  bool WaitsToStart() const { return !started && !waiters.empty(); }
};

class ExecTable {
 public:
  // A new execution for `key`, with the next id. REQUIRES: no execution
  // has `key`.
  Exec& Create(std::string key, std::shared_ptr<const ExecDef> def) {
    const ExecId id = next_id_++;
    Exec& exec = execs_[id];
    exec.id = id;
    exec.key = std::move(key);
    exec.def = std::move(def);
    by_key_[exec.key] = id;
    return exec;
  }
  // Null if there is no such execution.
  Exec* Find(ExecId id) {
    auto it = execs_.find(id);
    return it == execs_.end() ? nullptr : &it->second;
  }
  Exec* FindByKey(absl::string_view key) {
    if (by_key_.empty()) return nullptr;  // the usual case: nothing to share
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : Find(it->second);
  }
  void Erase(ExecId id) {
    auto it = execs_.find(id);
    if (it == execs_.end()) return;
    by_key_.erase(it->second.key);  // views the key: first
    execs_.erase(it);
  }
  bool empty() const { return execs_.empty(); }
  template <typename F>
  void ForEach(F&& f) {
    for (auto& [id, exec] : execs_) f(exec);
  }

 private:
  absl::node_hash_map<ExecId, Exec> execs_;
  absl::flat_hash_map<absl::string_view, ExecId> by_key_;
  ExecId next_id_ = 1;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_EXEC_TABLE_H_
