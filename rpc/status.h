// absl::Status <-> grpc::Status, in one place: the canonical codes are the
// same numbers on both sides, and the message travels as is. Thread-safe.
#ifndef ASFLOW_RPC_STATUS_H_
#define ASFLOW_RPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace asflow {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace asflow

#endif  // ASFLOW_RPC_STATUS_H_
