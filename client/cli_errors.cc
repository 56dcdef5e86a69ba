#include "client/cli_errors.h"

#include <cstdio>

#include "absl/strings/str_format.h"
#include "client/commands.h"

namespace asflow {

int Fail(int code, absl::string_view message) {
  absl::FPrintF(stderr, "asflowctl: %s\n", message);
  return code;
}

int FailRpc(const grpc::Status& status) {
  if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED) {
    return Fail(kExitUnavailable, "asflowd refused the call: missing or wrong token (--token-file)");
  }
  return Fail(status.error_code() == grpc::StatusCode::UNAVAILABLE ? kExitUnavailable : kExitUsage,
              status.error_message());
}

}  // namespace asflow
