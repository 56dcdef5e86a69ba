// SharedOutputWarnings: the submit-time check for a run's tasks whose
// outputs may be the same files as another active run's task with a
// different command (docs/behaviour.md, "Sharing"). Executions are shared
// by output path, so such an instance waits on the other run's command and
// ends CACHED (v1::Instance.made_by_run); the submitter is told up front.
// Pure functions of RunRt; no I/O.
#ifndef ASFLOW_SERVER_SHARED_OUTPUTS_H_
#define ASFLOW_SERVER_SHARED_OUTPUTS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/run_state.h"

namespace asflow {

// Stands for any text in an output pattern (a binding's value, or a `*`).
inline constexpr char kPatternAny = '\x01';

// The task's `on` rendered with its flow parameters, each binding and each
// `*` of the template as kPatternAny. Empty if the task keeps no output.
std::string OutputPattern(const RunRt& run, const TaskRt& task);

// The task's command as far as submit time knows it: its handler, or its
// argv with the flow parameters' values and bindings as "{name}".
std::string TaskCommand(const RunRt& run, const TaskRt& task);

// True if some path matches both patterns (kPatternAny matching any text,
// '/' included). O(|a| * |b|).
bool PatternsMayMeet(absl::string_view a, absl::string_view b);

// One line per (task of `run`, task of an active run in the same
// workspace) whose outputs may meet while their commands differ, naming
// both tasks, both patterns and the other run's id. Code runs declare
// their tasks as they go: neither side is checked for them.
std::vector<std::string> SharedOutputWarnings(const RunRt& run, const std::vector<const RunRt*>& active);

}  // namespace asflow

#endif  // ASFLOW_SERVER_SHARED_OUTPUTS_H_
