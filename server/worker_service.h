// WorkerServiceImpl: asflow.v1.WorkerService. Each Connect stream is one
// worker session, served on gRPC's synchronous API: the handler thread
// reads the worker's messages (writing output chunks to files is blocking
// work, which the callback API's threads must not do) and a second thread
// per session writes what the hub queues for it. Workers are few (one per
// host and pool), so two threads each cost nothing that matters.
#ifndef ASFLOW_SERVER_WORKER_SERVICE_H_
#define ASFLOW_SERVER_WORKER_SERVICE_H_

#include "asflow/v1/worker.grpc.pb.h"
#include "server/listener.h"
#include "server/worker_hub.h"

namespace asflow {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // Both must outlive the service. `auth` checks the worker token.
  WorkerServiceImpl(WorkerHub* hub, const TokenCheck* auth) : hub_(hub), auth_(auth) {}

  grpc::Status Connect(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<v1::DaemonMessage, v1::WorkerMessage>* stream) override;

 private:
  WorkerHub* const hub_;
  const TokenCheck* const auth_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_WORKER_SERVICE_H_
