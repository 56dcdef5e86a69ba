// `asflowctl run --dry-run` and `asflowctl check`: what a run would do,
// from FlowService.CheckFlow, printed per task (docs/cli.md, "Dry runs").
#ifndef ASFLOW_CLIENT_DRY_RUN_H_
#define ASFLOW_CLIENT_DRY_RUN_H_

#include <string>

#include "asflow/v1/service.pb.h"
#include "client/connection.h"
#include "client/flow_request.h"
#include "common/flow_imports.h"

namespace asflow {

// Asks the daemon (started if `autostart` and none listens) what `request`
// would do and prints it: a table, or with `json` the CheckFlowResponse as
// one JSON object (each task's error located "FILE:LINE:COL: field:
// message"). Exit 0 when nothing would stop the run, 2 when something
// would (a program not found, an unreadable for_each file, a bad flow), 3
// when the daemon cannot be reached.
int DryRunCommand(const ClientOptions& client, const v1::SubmitFlowRequest& request, const LoadedFlow& flow,
                  bool json, bool autostart);

struct CheckCommandOptions {
  std::string flow_file;
  FlowRequestOptions request;
  bool json = false;
  // Only the flow file (and its imports): no daemon asked.
  bool local = false;
};
// Validates the flow file and its imports without a daemon; then, if a
// daemon is running (never starting one), a dry run as DryRunCommand.
int CheckCommand(const ClientOptions& client, const CheckCommandOptions& options);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_DRY_RUN_H_
