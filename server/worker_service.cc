#include "server/worker_service.h"

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
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

  absl::Notification writer_done;
  std::thread writer([this, stream, &session, &writer_done] {
    v1::DaemonMessage out;
    // A failed write means the stream is gone; the reader sees it too.
    while (hub_->NextOutgoing(**session, &out) && stream->Write(out)) {
    }
    writer_done.Notify();
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
  // The writer ends at once unless it is blocked writing to a worker that
  // stopped reading; that one must not hold this thread (cancelling costs
  // the worker our status message, so only then).
  if (!writer_done.WaitForNotificationWithTimeout(absl::Seconds(2))) ctx->TryCancel();
  writer.join();
  return status;
}

}  // namespace asflow
