// In-memory state of one run while it is active: its tasks with compiled
// templates and counters, and its instances indexed by seq. Owned and
// mutated only by the scheduler thread. Also the pure helpers that turn
// for_each values into parameter bindings.
#ifndef ASFLOW_SERVER_RUN_STATE_H_
#define ASFLOW_SERVER_RUN_STATE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/status/statusor.h"
#include "asflow/v1/service.pb.h"
#include "common/template.h"
#include "server/error_rules.h"
#include "server/plan.h"
#include "server/store_records.h"
#include "server/workspace_fs.h"

namespace asflow {

using Bindings = std::vector<std::pair<std::string, std::string>>;

// What an execution needs of the task definition that created it; one per
// task of a run, shared by that task's executions.
struct ExecDef {
  std::string task_key;  // "flow.task"
  std::string pool;
  std::shared_ptr<const ErrorRules> rules;
};

struct InstanceRt;

// Hash and equality of instance seqs by their params, so a set of seqs
// (8 bytes a slot) answers "is there an instance with these params?" for
// a string too. Points at the run's instances (a deque: they never move).
struct SeqParams {
  using is_transparent = void;
  const std::deque<InstanceRt>* instances = nullptr;

  absl::string_view Of(int64_t seq) const;
  absl::string_view Of(absl::string_view params) const { return params; }
  template <typename K>
  size_t operator()(const K& k) const {
    return absl::Hash<absl::string_view>()(Of(k));
  }
  template <typename A, typename B>
  bool operator()(const A& a, const B& b) const {
    return Of(a) == Of(b);
  }
};

// One task definition inside a run.
struct TaskRt {
  const v1::TaskSpec* spec = nullptr;  // points into RunRt::request
  std::string key;                     // task definition: "flow.task"
  std::string pool;                    // "local" or a remote pool
  std::vector<Template> argv;
  std::unique_ptr<Template> on;        // null: output not kept
  // `on` ends with '/': the output is a directory the command fills
  // ($ASFLOW_OUTPUT_DIR); instances' `output` is its path without the '/'.
  bool output_dir = false;
  std::unique_ptr<Template> file;      // for_each.file
  // Flow params the templates use. Not part of an instance's identity
  // (its bindings are): only of the execution key of a task without `on`,
  // whose command they change.
  std::vector<std::string> flow_params_used;
  std::vector<int> deps;        // needs + lines_of, as task indices
  std::vector<int> dependents;
  int lines_of = -1;
  int limit = 0;
  double rate = 0;  // starts per second; 0: unlimited
  std::shared_ptr<const ErrorRules> rules;
  std::shared_ptr<const ExecDef> exec_def;  // key, pool and rules above
  bool expanded = false;   // every instance is known
  bool blocked = false;    // an upstream task failed: never expanded
  bool settled = false;    // expanded with nothing pending, or blocked
  // --force: its instances run even when their output (or .err) exists.
  bool force = false;
  // --only names other tasks, and this one is upstream of them: its
  // instances are cached or fail (nothing of it runs).
  bool held = false;
  // --only names other tasks, none downstream of this one: never expanded.
  bool excluded = false;
  int64_t pending = 0;     // instances not yet in a final state
  v1::TaskCounters counters;
  std::vector<int64_t> seqs;  // instances in creation order
  // Instances made so far, as seqs, found by their params (BuildRun points
  // it at the run's instances).
  absl::flat_hash_set<int64_t, SeqParams, SeqParams> seen;
};

// A string that is almost always empty: 8 bytes, not 32.
class RareString {
 public:
  RareString& operator=(std::string s) {
    p_ = s.empty() ? nullptr : std::make_unique<std::string>(std::move(s));
    return *this;
  }
  const std::string& str() const;
  bool empty() const { return p_ == nullptr; }
  void clear() { p_.reset(); }

 private:
  std::unique_ptr<std::string> p_;
};

// One instance as the run sees it. Kept small: runs of 100k+ are normal
// (120 bytes, plus params and output longer than 15 characters).
struct InstanceRt {
  ExecId exec = 0;  // while queued or running
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  int32_t task = -1;  // -1: seq not materialised (yet) in this process
  v1::InstanceState state = v1::INSTANCE_STATE_UNSPECIFIED;
  int32_t attempts = 0;
  int32_t pgid = 0;       // process group of its command while running
  bool retrying = false;  // queued again, waiting for a retry's backoff
  RareString error;
  std::string params;  // canonical JSON object
  std::string output;  // normalised, relative to the workspace
};

inline absl::string_view SeqParams::Of(int64_t seq) const { return (*instances)[seq].params; }

// A row left by this run before a restart, matched by task and params.
struct ResumedRow {
  int64_t seq = 0;
  v1::InstanceState state = v1::INSTANCE_STATE_UNSPECIFIED;
  InstanceRecord record;  // to close it if this life of the run never reaches it
};

// What a run opened by a code session has besides (docs/sessions.md).
struct CodeRun {
  int64_t session = 0;  // the session it is attached to; 0 while detached
  int64_t ref = 0;      // the client's name for it on that session
  // While detached: when it fails unless its process comes back.
  absl::Time detached_until = absl::InfiniteFuture();
  // Its instances by identity: task, params and output (CodeIdentity).
  absl::flat_hash_map<std::string, int64_t> by_identity;
  // The calls (ids) waiting for each unfinished instance's outcome.
  absl::flat_hash_map<int64_t, absl::InlinedVector<int64_t, 1>> calls;
  // Unfinished instances not queued while the run was detached: queued
  // again when their process calls them again.
  absl::flat_hash_set<int64_t> parked;
  // Why a task's declaration was refused, by name.
  absl::flat_hash_map<std::string, std::string> refused;
};

struct RunRt {
  int64_t id = 0;
  // The workspace, open for the run's lifetime: outputs, .err files and
  // for_each inputs are all reached below it (never through a symlink).
  std::unique_ptr<Workspace> ws;
  v1::SubmitFlowRequest request;  // spec, merged params, env, workspace
  std::string flow;
  std::string workspace;
  std::map<std::string, std::string> params;  // merged flow parameters
  std::vector<std::string> env;               // "K=V" overrides for commands
  std::string search_path;
  std::vector<TaskRt> tasks;
  absl::flat_hash_map<std::string, int> task_index;
  // A deque: growing it neither copies 100,000 instances nor moves them
  // (TaskRt::seen looks into them).
  std::deque<InstanceRt> instances;
  int64_t next_seq = 0;
  absl::flat_hash_map<std::string, ResumedRow> resumed;  // ResumeKey -> row
  // Instances (seq) that joined another run's execution of a different
  // command for the same output, and that run's id: their own command
  // does not run, and they end CACHED, not DONE (v1::Instance.made_by_run).
  // Empty unless two task definitions share outputs.
  absl::flat_hash_map<int64_t, int64_t> made_by;
  // Set while one task's expansion is under way (Scheduler::Expand).
  struct Expansion {
    Expansion(std::unique_ptr<ExistenceProbe> probe, int64_t run_id, std::string task)
        : outputs(std::move(probe)), rows(run_id, std::move(task)) {}
    // Whether new instances' outputs exist (reading their directory once
    // when many are asked).
    std::unique_ptr<ExistenceProbe> outputs;
    // Their first rows, sent to the store in batches and at the end.
    NewRows rows;
  };
  std::unique_ptr<Expansion> expanding;
  v1::RunState state = v1::RUN_RUNNING;
  std::string error;        // first failure, "task(params): reason"
  // The store lost a write of this run: it fails, and its last event is
  // published without waiting for a commit that may never come.
  bool store_lost = false;
  // Set for a run opened by a code session (request.from_code()).
  std::unique_ptr<CodeRun> code;
  int64_t created_ms = 0;
  int64_t finished_ms = 0;
  // Throttle keys this run defined (its spec's `throttle`), released when
  // it ends.
  std::vector<std::string> keys_held;
};

// The run/instance state machine: pure functions of RunRt (no I/O).

// Sets the instance's state, keeping its task's counters, pending count and
// retrying count right.
void SetInstanceState(RunRt& run, int64_t seq, v1::InstanceState state, bool retrying = false);

// A new instance of task `t` bound to `bindings` (its identity): its seq
// (the one it had before a restart, if any), its output path. Identical
// bindings within a task make one instance.
struct NewInstance {
  int64_t seq = -1;  // -1: the same bindings were seen before in this task
  // Its final state before a restart, if it had one.
  v1::InstanceState prior = v1::INSTANCE_STATE_UNSPECIFIED;
  // Its output path could not be rendered: the instance is FAILED (and the
  // run's error set), nothing more to do with it.
  bool failed = false;
};
NewInstance AddNewInstance(RunRt& run, int t, const Bindings& bindings, int64_t now_ms);

// Task `t` may have settled (every instance known and final): marks it so,
// blocks the tasks downstream of it if it failed, and returns those now
// ready to expand (every task they depend on settled and not blocked).
std::vector<int> SettleTask(RunRt& run, int t);

// A code run's instance identity: task, params (canonical) and output.
std::string CodeIdentity(absl::string_view task, absl::string_view params_json, absl::string_view output);

// (Re)configures code task `t` from its spec (request.spec().tasks(t)):
// key (its qualified name), limit, rate, pool "code", rules. Keeps its
// instances and counters. InvalidArgument if its rules do not compile.
absl::Status BuildCodeTask(RunRt& run, int t, int default_limit);

// A new instance of code task `t` called with `params_json` and `output`:
// its seq (the one it had before a restart, with its state then, if any).
NewInstance AddCodeInstance(RunRt& run, int t, std::string params_json, std::string output);

// How the run ends now: FAILED once it has an error and no --keep-going,
// else once every task settled, FAILED if anything failed, was cancelled
// or blocked, else SUCCEEDED; nullopt while work is left. A code run ends
// only by fail fast (or when it is closed, cancelled or abandoned).
std::optional<v1::RunState> RunOutcome(const RunRt& run);

// Builds the runtime form of a validated request: merged params, compiled
// templates, dependency graph. InvalidArgument names the task and field.
absl::StatusOr<std::unique_ptr<RunRt>> BuildRun(v1::SubmitFlowRequest request, int default_limit);

// Binds one for_each value (JSON text, or a plain string when it is not a
// JSON object/array/literal) to parameters per `as` (name -> dotted path;
// "" = the whole value). NotFound names the missing field; InvalidArgument
// a bound value over kMaxParamValueBytes or one holding a NUL byte.
absl::StatusOr<Bindings> BindValue(absl::string_view value, const google::protobuf::Map<std::string, std::string>& as);

// InvalidArgument naming `field`.NAME if a value is over
// kMaxParamValueBytes or holds a NUL byte (commands get every parameter as
// an environment variable, which would end there), or `field` if all of
// them are over kMaxRunParamsBytes.
absl::Status CheckParamSizes(const std::map<std::string, std::string>& params, absl::string_view field);
// {"k":"v",...} with sorted keys: the identity of an instance's parameters.
std::string CanonicalParams(const std::map<std::string, std::string>& params);
// What CanonicalParams text holds where parameter `name`'s value begins
// with `prefix`: `"name":"prefix` (escaped as it escapes them); with an
// empty name, `":"prefix` (any parameter's value).
std::string ParamNeedle(absl::string_view name, absl::string_view prefix);
// A template's value for `name`: a binding, else a flow parameter; null if
// neither defines it.
const std::string* LookupParam(const Bindings& bindings, const std::map<std::string, std::string>& params,
                               absl::string_view name);
// The (name, value) pairs of a CanonicalParams text.
Bindings DecodeParams(absl::string_view params_json);
// The API form of a stored instance row.
v1::Instance InstanceToProto(const InstanceRecord& row);
// "task(k=v, k2=v2)" for messages.
std::string InstanceLabel(absl::string_view task, absl::string_view params_json);
std::string ResumeKey(absl::string_view task, absl::string_view params_json);
// The identity a stored row of task `t` has today: its params less the
// flow parameters that rows written before issue 15 carried (only the
// names `t` binds are kept). Unchanged for a row written since.
std::string StoredIdentity(const RunRt& run, absl::string_view task, const std::string& params_json);
bool IsFinal(v1::InstanceState state);
// Adds `delta` to the counter of `state`.
void CountState(v1::TaskCounters* counters, v1::InstanceState state, int delta);

}  // namespace asflow

#endif  // ASFLOW_SERVER_RUN_STATE_H_
