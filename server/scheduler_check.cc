// Scheduler: dry runs (FlowService.CheckFlow, asflowctl run --dry-run and
// check). A run is built exactly as Submit builds one, then expanded as far
// as the files already in the workspace allow, without a run id, a store
// row, an event or a process: what would run, what is cached, and whether
// each command's program can be found.
#include <unistd.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safe_path.h"
#include "common/spec_validator.h"
#include "exec/subprocess.h"
#include "server/expansion.h"
#include "server/run_selection.h"
#include "server/scheduler.h"

namespace asflow {
namespace {

// Fills check.program / program_path / error for task `t`'s run[0].
void CheckProgram(const RunRt& run, int t, v1::TaskCheck& check) {
  const TaskRt& task = run.tasks[t];
  if (task.argv.empty()) return;
  const Template& argv0 = task.argv[0];
  for (const std::string& name : argv0.names()) {
    if (run.params.count(name) == 0) {
      // Bound per instance: found (or not) when each one runs.
      check.set_program(argv0.text());
      return;
    }
  }
  auto rendered = argv0.Render([&](absl::string_view name) { return LookupParam({}, run.params, name); });
  if (!rendered.ok()) return;
  check.set_program(*rendered);
  if (task.pool != "local") return;  // found on the pool's workers, not here
  if (rendered->find('/') != std::string::npos) {
    const std::string path = (*rendered)[0] == '/' ? *rendered : absl::StrCat(run.workspace, "/", *rendered);
    if (access(path.c_str(), X_OK) == 0) {
      check.set_program_path(path);
    } else {
      check.set_error_field("run[0]");
      check.set_error(absl::StrCat("program '", *rendered, "' ",
                                   access(path.c_str(), F_OK) == 0 ? "is not executable" : "does not exist",
                                   (*rendered)[0] == '/' ? "" : " (relative to the workspace)"));
    }
    return;
  }
  auto found = FindProgram(*rendered, run.search_path);
  if (found.ok()) {
    check.set_program_path(*found);
    return;
  }
  check.set_error_field("run[0]");
  check.set_error(absl::StrCat("program '", *rendered, "' ",
                               absl::IsPermissionDenied(found.status()) ? "is not executable" : "not found",
                               " on the PATH its commands get (", EffectiveSearchPath(run.search_path), ")"));
}

}  // namespace

void Scheduler::Check(v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<v1::CheckFlowResponse>)> done) {
  Post([this, request = std::move(request), done = std::move(done)]() mutable {
    request.set_from_code(false);  // a dry run of a flow file's spec, whatever was sent
    if (absl::Status s = CheckSubmittable(request); !s.ok()) return done(s);
    if (absl::Status s = CheckWorkspace(&request); !s.ok()) return done(s);
    auto built = BuildRun(request, options_.default_limit);
    if (!built.ok()) return done(built.status());
    RunRt& run = **built;
    auto ws = deps_.fs->Open(run.workspace);
    if (!ws.ok()) return done(ws.status());
    run.ws = std::move(*ws);
    const v1::FlowSpec& spec = run.request.spec();
    std::vector<std::string> key_errors;
    for (int i = 0; i < spec.tasks_size(); ++i) {
      if (absl::Status s = CheckUses(run, spec.tasks(i), absl::StrCat("tasks[", i, "]")); !s.ok()) {
        key_errors.push_back(std::string(s.message()));
      }
    }
    if (!key_errors.empty()) return done(absl::InvalidArgumentError(absl::StrJoin(key_errors, "\n")));

    v1::CheckFlowResponse response;
    response.set_workspace(run.workspace);
    response.set_search_path(EffectiveSearchPath(run.search_path));
    const int n = static_cast<int>(run.tasks.size());
    std::vector<v1::TaskCheck> checks(n);
    // A task is complete when it is expanded and nothing of it would run:
    // its outputs are all there for the tasks below to read.
    std::vector<bool> complete(n, false), visited(n, false);
    std::function<void(int)> visit = [&](int t) {
      if (visited[t]) return;
      visited[t] = true;
      TaskRt& task = run.tasks[t];
      v1::TaskCheck& check = checks[t];
      check.set_task(task.spec->name());
      check.set_index(t);
      check.set_excluded(task.excluded);
      check.set_held(task.held);
      CheckProgram(run, t, check);
      if (task.excluded) return;
      for (int d : task.deps) {
        visit(d);
        if (!complete[d] && check.waits_on().empty()) check.set_waits_on(run.tasks[d].spec->name());
      }
      if (!check.waits_on().empty()) return;
      const int64_t now = NowMs();
      // As an expansion finds them: a directory read once, not a stat per
      // instance (100,000 outputs in one directory is normal).
      std::unique_ptr<ExistenceProbe> probe = run.ws->NewProbe();
      absl::Status s = ForEachBinding(run, t, *run.ws, options_.max_instances_per_run, [&](const Bindings& b) {
        NewInstance added = AddNewInstance(run, t, b, now);
        if (added.seq < 0) {
          check.set_merged(check.merged() + 1);
          return;
        }
        InstanceRt& inst = run.instances[added.seq];
        if (added.failed) {
          if (check.error().empty()) {
            check.set_error_field("on");
            check.set_error(absl::StrCat(InstanceLabel(task.spec->name(), inst.params), ": ", inst.error.str()));
          }
          return;
        }
        if (!inst.output.empty() && !task.force) {
          if (probe->Exists(inst.output)) {
            SetInstanceState(run, added.seq, v1::CACHED);
            check.set_cached(check.cached() + 1);
            return;
          }
          if (probe->Exists(ErrorPathFor(inst.output, task.spec->on()))) {
            SetInstanceState(run, added.seq, v1::CACHED);  // nothing to read downstream
            check.set_suppressed(check.suppressed() + 1);
            return;
          }
        }
        SetInstanceState(run, added.seq, v1::QUEUED);
        check.set_would_run(check.would_run() + 1);
      });
      check.set_expanded(s.ok() || !absl::IsResourceExhausted(s));
      if (!s.ok() && check.error().empty()) {
        check.set_error_field(!task.spec->for_each().file().empty() ? "for_each.file"
                              : !task.spec->for_each().lines_of().empty() ? "for_each.lines_of"
                              : "for_each");
        check.set_error(std::string(s.message()));
      }
      if (task.held && check.would_run() > 0 && check.error().empty()) {
        check.set_error(absl::StrCat(check.would_run(), " instance(s) ", HeldReason(run, t)));
      }
      complete[t] = s.ok() && check.would_run() == 0;
    };
    for (int t = 0; t < n; ++t) visit(t);
    for (v1::TaskCheck& check : checks) *response.add_tasks() = std::move(check);
    done(std::move(response));
  });
}

absl::Status Scheduler::CheckSubmittable(const v1::SubmitFlowRequest& request) const {
  if (absl::Status s = ValidateFlowSpec(request.spec()); !s.ok()) return s;
  if (request.spec().imports_size() > 0) {
    return absl::InvalidArgumentError(
        "imports: the client resolves imports (asflowctl sends the imported tasks it reached, with their flow); "
        "the daemon reads no flow files");
  }
  return absl::OkStatus();
}

}  // namespace asflow
