// How asflowctl's subcommands report a failure: "asflowctl: MESSAGE" on
// stderr, and the exit code (client/commands.h) that goes with it.
#ifndef ASFLOW_CLIENT_CLI_ERRORS_H_
#define ASFLOW_CLIENT_CLI_ERRORS_H_

#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace asflow {

// Prints `message` and returns `code`.
int Fail(int code, absl::string_view message);
// A failed call to asflowd: a refused token says so (the daemon says
// nothing more, by design) and an unreachable daemon is kExitUnavailable;
// anything else is kExitUsage with the daemon's message.
int FailRpc(const grpc::Status& status);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_CLI_ERRORS_H_
