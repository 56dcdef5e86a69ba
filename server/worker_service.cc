#include "server/worker_service.h"

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "server/flow_service.h"

namespace asflow {

grpc::Status WorkerServiceImpl::Connect(
    grpc::ServerContext* ctx, grpc::ServerReaderWriter<v1::DaemonMessage, v1::WorkerMessage>* stream) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return ToGrpcStatus(auth);
  v1::WorkerMessage message;
  if (!stream->Read(&message)) return grpc::Status(grpc::StatusCode::CANCELLED, "no hello");
  if (!message.has_hello()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be hello");
  }
  auto session = hub_->Join(message.hello(), ctx->peer(), [ctx] { ctx->TryCancel(); });
  if (!session.ok()) return ToGrpcStatus(session.status());

  std::thread writer([this, stream, &session] {
    v1::DaemonMessage out;
    // A failed write means the stream is gone; the reader sees it too.
    while (hub_->NextOutgoing(**session, &out) && stream->Write(out)) {
    }
  });
  grpc::Status status = grpc::Status::OK;
  std::string reason = "the worker closed its stream";
  while (stream->Read(&message)) {
    absl::Status handled = hub_->Handle(**session, message);
    if (!handled.ok()) {
      reason = absl::StrCat("protocol error: ", handled.message());
      status = ToGrpcStatus(handled);
      break;
    }
  }
  if (status.ok() && ctx->IsCancelled()) {
    reason = hub_->Expired(**session) ? "no message within its lease" : "its stream broke";
  }
  hub_->Leave(**session, reason);
  // A writer blocked on a worker that stopped reading must not hold us.
  if (!status.ok()) ctx->TryCancel();
  writer.join();
  return status;
}

}  // namespace asflow
