// Expansion: where a task's instances come from. Reads the task's
// for_each source — literal values, the JSON lines of a workspace file, or
// of the outputs of the upstream task's finished instances — and binds each
// value to parameters. Pure apart from reading through the Workspace.
#ifndef ASFLOW_SERVER_EXPANSION_H_
#define ASFLOW_SERVER_EXPANSION_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "server/run_state.h"
#include "server/workspace_fs.h"

namespace asflow {

// Calls `add` with each binding of task `t`'s for_each source in order (one
// empty binding for a task without for_each). Stops with an error that
// names the file and line (or values[i]) of a value that does not bind, a
// file that cannot be read, or ResourceExhausted once the run holds more
// than `max_instances` instances. An upstream instance without an output
// file (cached through its .err) contributes nothing.
absl::Status ForEachBinding(const RunRt& run, int t, Workspace& ws, int64_t max_instances,
                            const std::function<void(const Bindings&)>& add);

}  // namespace asflow

#endif  // ASFLOW_SERVER_EXPANSION_H_
