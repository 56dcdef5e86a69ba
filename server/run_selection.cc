#include "server/run_selection.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace asflow {
namespace {

// The task indices `names` (each possibly "a,b") stand for.
absl::StatusOr<std::vector<int>> Resolve(const RunRt& run, const google::protobuf::RepeatedPtrField<std::string>& names,
                                         absl::string_view field) {
  std::vector<int> out;
  for (int i = 0; i < names.size(); ++i) {
    for (absl::string_view name : absl::StrSplit(names[i], ',', absl::SkipWhitespace())) {
      name = absl::StripAsciiWhitespace(name);
      auto it = run.task_index.find(name);
      if (it == run.task_index.end()) {
        std::vector<std::string> known;
        for (const TaskRt& t : run.tasks) known.push_back(t.spec->name());
        return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: unknown task '", name,
                                                       "' (tasks: ", absl::StrJoin(known, ", "), ")"));
      }
      out.push_back(it->second);
    }
  }
  return out;
}

}  // namespace

absl::Status ApplySelection(RunRt& run) {
  auto forced = Resolve(run, run.request.force(), "force");
  if (!forced.ok()) return forced.status();
  for (int t : *forced) run.tasks[t].force = true;
  auto only = Resolve(run, run.request.only(), "only");
  if (!only.ok()) return only.status();
  if (only->empty()) return absl::OkStatus();
  std::vector<int> state(run.tasks.size(), 0);  // 0 excluded, 1 held, 2 named
  std::vector<int> stack;
  for (int t : *only) {
    state[t] = 2;
    stack.push_back(t);
  }
  while (!stack.empty()) {
    int t = stack.back();
    stack.pop_back();
    for (int d : run.tasks[t].deps) {
      if (state[d] != 0) continue;
      state[d] = 1;
      stack.push_back(d);
    }
  }
  for (size_t t = 0; t < run.tasks.size(); ++t) {
    TaskRt& task = run.tasks[t];
    task.held = state[t] == 1;
    if (state[t] != 0) continue;
    task.excluded = true;
    task.expanded = true;
    task.settled = true;
    task.counters.set_expanded(true);
  }
  return absl::OkStatus();
}

std::string HeldReason(const RunRt& run, int t) {
  return absl::StrCat("not run: its output is missing and --only ", absl::StrJoin(run.request.only(), ","),
                      " does not run ", run.tasks[t].spec->name(), " (run without --only, or add it)");
}

}  // namespace asflow
