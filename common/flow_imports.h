// `imports:` — a flow file with the flow files it imports, resolved into the
// one FlowSpec the client submits: the flow's own tasks, then every task of
// an imported flow that they reach (needs, for_each.lines_of), named
// "FLOW.TASK" with TaskSpec.flow set. The daemon never reads flow files:
// the client that has them sends what it reached (docs/flows.md, "Imports").
// Not synchronised; reads files.
#ifndef ASFLOW_COMMON_FLOW_IMPORTS_H_
#define ASFLOW_COMMON_FLOW_IMPORTS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "asflow/v1/flow.pb.h"
#include "common/spec_parser.h"

namespace asflow {

// A flow file and its imports, resolved.
struct LoadedFlow {
  // What to submit: no imports; imported tasks after the flow's own, each
  // "FLOW.TASK" with `flow` set; params and throttle keys of the imported
  // flows whose tasks are reached merged in (the importing file's win).
  v1::FlowSpec spec;
  // Deprecation warnings of every file read ("FILE:LINE:COL: field: ...").
  std::vector<std::string> warnings;
  // Each file read, the importing one first: its path as given (imports
  // relative to the importing file's directory) and what was parsed.
  std::vector<std::unique_ptr<ParsedFlow>> files;
  // For each task of `spec`: the file it came from (index into `files`)
  // and its index there.
  std::vector<std::pair<int, int>> task_origin;

  // "FILE:LINE:COL" of a field path of `spec` ("tasks[3].run[0]",
  // "throttle.yt") in the file it came from; for the flow's own fields,
  // the importing file's location.
  std::string Locate(absl::string_view field_path) const;
  // Each line of a message ("tasks[3].on: ...", as the daemon and the
  // validator write them) prefixed with its Locate() and, for an imported
  // task, its path rewritten to its own file's ("tasks[0].on").
  std::string LocateLines(absl::string_view message) const;
};

// Reads, parses and validates the flow file at `path` and every file it
// imports (transitively). InvalidArgument naming FILE:LINE:COL of the
// `imports[i]` entry for an import cycle ("import cycle: a.yaml ->
// b.yaml -> a.yaml"), a file that cannot be read, two files of one flow
// name (or an import of the importing flow's own name), a reference to a
// flow not imported or a task it has not, and parameters or throttle keys
// two imported flows define differently; an imported file's own problems
// keep their FILE:LINE:COL. Errors of `path` itself: as ParseFlowFile.
absl::StatusOr<LoadedFlow> LoadFlowFile(const std::string& path);

}  // namespace asflow

#endif  // ASFLOW_COMMON_FLOW_IMPORTS_H_
