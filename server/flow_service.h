// FlowServiceImpl: asflow.v1.FlowService on gRPC's callback API. Thin:
// decode, call the scheduler / store / event hub, encode, finish. The one
// place where absl::Status becomes grpc::Status.
#ifndef ASFLOW_SERVER_FLOW_SERVICE_H_
#define ASFLOW_SERVER_FLOW_SERVICE_H_

#include <functional>

#include "asflow/v1/service.grpc.pb.h"
#include "rpc/status.h"
#include "server/event_hub.h"
#include "server/listener.h"
#include "server/log_hub.h"
#include "server/run_reader.h"
#include "server/schedules.h"
#include "server/scheduler.h"
#include "server/store.h"
#include "server/session_hub.h"
#include "server/worker_hub.h"

namespace asflow {

// Watch is registered raw: its reactor writes bytes the event hub encoded
// once, shared by every watcher (server/watch_reactor.h).
class FlowServiceImpl final : public v1::FlowService::WithRawCallbackMethod_Watch<v1::FlowService::CallbackService> {
 public:
  // All pointers must outlive the service. `request_shutdown` is called
  // (from a gRPC thread) by each Shutdown RPC, with its `now`, and must not
  // block.
  FlowServiceImpl(Scheduler* scheduler, Store* store, EventHub* hub, LogHub* logs, WorkerHub* workers,
                  SessionHub* sessions,
                  const TokenCheck* auth, std::function<void(bool now)> request_shutdown);
  // Most Watch streams open at once (each holds a subscription and its
  // queue); one more is refused with RESOURCE_EXHAUSTED. Call before the
  // server starts.
  void set_max_watchers(size_t n) { max_watchers_ = n; }
  static constexpr size_t kDefaultMaxWatchers = 1024;
  // Where the schedule RPCs go (flow_service_schedules.cc); null: they
  // answer UNAVAILABLE. Call before the server starts.
  void set_schedules(Schedules* schedules) { schedules_ = schedules; }

  grpc::ServerUnaryReactor* SubmitFlow(grpc::CallbackServerContext* ctx,
                                       const v1::SubmitFlowRequest* request,
                                       v1::SubmitFlowResponse* response) override;
  grpc::ServerUnaryReactor* CheckFlow(grpc::CallbackServerContext* ctx, const v1::SubmitFlowRequest* request,
                                      v1::CheckFlowResponse* response) override;
  grpc::ServerUnaryReactor* GetRun(grpc::CallbackServerContext* ctx, const v1::GetRunRequest* request,
                                   v1::Run* response) override;
  grpc::ServerUnaryReactor* ListRuns(grpc::CallbackServerContext* ctx,
                                     const v1::ListRunsRequest* request,
                                     v1::ListRunsResponse* response) override;
  grpc::ServerUnaryReactor* ListTasks(grpc::CallbackServerContext* ctx,
                                      const v1::ListTasksRequest* request,
                                      v1::ListTasksResponse* response) override;
  grpc::ServerUnaryReactor* CancelRun(grpc::CallbackServerContext* ctx,
                                      const v1::CancelRunRequest* request,
                                      v1::CancelRunResponse* response) override;
  grpc::ServerUnaryReactor* ResetTasks(grpc::CallbackServerContext* ctx,
                                       const v1::ResetTasksRequest* request,
                                       v1::ResetTasksResponse* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(grpc::CallbackServerContext* ctx,
                                                    const grpc::ByteBuffer* raw_request) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const v1::ListWorkersRequest* request,
                                        v1::ListWorkersResponse* response) override;
  grpc::ServerUnaryReactor* Shutdown(grpc::CallbackServerContext* ctx,
                                     const v1::ShutdownRequest* request,
                                     v1::ShutdownResponse* response) override;
  grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse>* Session(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ListThrottle(grpc::CallbackServerContext* ctx, const v1::ListThrottleRequest* request,
                                         v1::ListThrottleResponse* response) override;
  grpc::ServerUnaryReactor* Pause(grpc::CallbackServerContext* ctx, const v1::PauseRequest* request,
                                  v1::PauseResponse* response) override;
  grpc::ServerUnaryReactor* Resume(grpc::CallbackServerContext* ctx, const v1::ResumeRequest* request,
                                   v1::ResumeResponse* response) override;
  grpc::ServerUnaryReactor* AddSchedule(grpc::CallbackServerContext* ctx, const v1::AddScheduleRequest* request,
                                        v1::Schedule* response) override;
  grpc::ServerUnaryReactor* ListSchedules(grpc::CallbackServerContext* ctx, const v1::ListSchedulesRequest* request,
                                          v1::ListSchedulesResponse* response) override;
  grpc::ServerUnaryReactor* RemoveSchedule(grpc::CallbackServerContext* ctx, const v1::ScheduleRef* request,
                                           v1::Schedule* response) override;
  grpc::ServerUnaryReactor* PauseSchedule(grpc::CallbackServerContext* ctx, const v1::ScheduleRef* request,
                                          v1::Schedule* response) override;
  grpc::ServerUnaryReactor* ResumeSchedule(grpc::CallbackServerContext* ctx, const v1::ScheduleRef* request,
                                           v1::Schedule* response) override;
  grpc::ServerWriteReactor<v1::LogChunk>* Logs(grpc::CallbackServerContext* ctx,
                                               const v1::LogsRequest* request) override;

 private:
  // A schedule RPC: the token checked and the daemon's schedules there
  // (else UNAVAILABLE), then `fn` finishes the reactor.
  grpc::ServerUnaryReactor* WithSchedules(grpc::CallbackServerContext* ctx,
                                          const std::function<void(grpc::ServerUnaryReactor*)>& fn);
  // The freshest copy of a run: the hub's view, else the store.
  absl::StatusOr<v1::Run> LookupRun(int64_t run_id);
  // Every method's caller is checked here (the token on TCP; the unix
  // socket's mode is its check), before its request is acted on: false
  // after finishing `reactor` UNAUTHENTICATED.
  bool Authorized(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor) const;

  Scheduler* const scheduler_;
  Store* const store_;
  EventHub* const hub_;
  LogHub* const logs_;
  WorkerHub* const workers_;
  SessionHub* const sessions_;
  const TokenCheck* const auth_;
  size_t max_watchers_ = kDefaultMaxWatchers;
  const std::function<void(bool now)> request_shutdown_;
  const RunReader reader_;
  Schedules* schedules_ = nullptr;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_FLOW_SERVICE_H_
