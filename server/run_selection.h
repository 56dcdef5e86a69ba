// --force and --only (SubmitFlowRequest.force, .only): which tasks of a run
// re-run instances whose outputs exist, which are left out, and which are
// held to their cached outputs. Pure; part of building a run.
#ifndef ASFLOW_SERVER_RUN_SELECTION_H_
#define ASFLOW_SERVER_RUN_SELECTION_H_

#include "absl/status/status.h"
#include "server/run_state.h"

namespace asflow {

// Marks run.tasks per request.force() and request.only(): `force` on each
// forced task; with `only`, `held` on the tasks upstream of the named ones
// (needs and lines_of, transitively) and `excluded` on all others, which
// are settled at once with no instances. InvalidArgument "force[0]: unknown
// task 'x' (tasks: a, b)" for a name the flow has not; a name may list
// several, comma-separated ("a,b").
absl::Status ApplySelection(RunRt& run);

// The reason a held instance fails: its output is missing and --only does
// not run its task.
std::string HeldReason(const RunRt& run, int t);

}  // namespace asflow

#endif  // ASFLOW_SERVER_RUN_SELECTION_H_
