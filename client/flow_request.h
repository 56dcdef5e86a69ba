// What `asflowctl run` (and --dry-run, and check) sends: the flow file with
// its imports resolved, -p overrides, --force and --only, the workspace
// (the current directory) and the client's PATH.
#ifndef ASFLOW_CLIENT_FLOW_REQUEST_H_
#define ASFLOW_CLIENT_FLOW_REQUEST_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "asflow/v1/service.pb.h"
#include "common/flow_imports.h"

namespace asflow {

struct FlowRequestOptions {
  std::vector<std::string> params;  // "name=value"
  std::vector<std::string> force;   // task names, each may be "a,b"
  std::vector<std::string> only;
  bool keep_going = false;
};

// InvalidArgument naming the flag for a -p without '=', a parameter no flow
// of the request declares, or a --force/--only name that is no task of it
// (imported ones as FLOW.TASK).
absl::StatusOr<v1::SubmitFlowRequest> BuildFlowRequest(const std::string& flow_file, const LoadedFlow& flow,
                                                       const FlowRequestOptions& options);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_FLOW_REQUEST_H_
