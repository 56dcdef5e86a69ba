#include "server/flow_service.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/logs_reactor.h"
#include "server/session_reactor.h"
#include "server/stored_run_snapshot.h"
#include "server/watch_reactor.h"

namespace asflow {

FlowServiceImpl::FlowServiceImpl(Scheduler* scheduler, Store* store, EventHub* hub, LogHub* logs,
                                 WorkerHub* workers, SessionHub* sessions, const TokenCheck* auth,
                                 std::function<void(bool now)> request_shutdown)
    : scheduler_(scheduler),
      store_(store),
      hub_(hub),
      logs_(logs),
      workers_(workers),
      sessions_(sessions),
      auth_(auth),
      request_shutdown_(std::move(request_shutdown)),
      reader_(hub, store) {}

bool FlowServiceImpl::Authorized(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor) const {
  absl::Status auth = auth_->Check(*ctx);
  if (!auth.ok()) reactor->Finish(ToGrpcStatus(auth));
  return auth.ok();
}

namespace {

// Reactors that only report an error.
class FailedWatch : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedWatch(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};
class FailedLogs : public grpc::ServerWriteReactor<v1::LogChunk> {
 public:
  explicit FailedLogs(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};
class FailedSession : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  explicit FailedSession(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<v1::Run> FlowServiceImpl::LookupRun(int64_t run_id) { return reader_.GetRun(run_id); }

grpc::ServerUnaryReactor* FlowServiceImpl::SubmitFlow(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitFlowRequest* request,
                                                      v1::SubmitFlowResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  v1::SubmitFlowRequest submitted = *request;
  submitted.clear_schedule();  // only the daemon's schedules set it
  submitted.set_from_code(false);  // only a code session's runs are (scheduler_code.cc)
  scheduler_->Submit(std::move(submitted), [reactor, response](absl::StatusOr<Scheduler::Submitted> run) {
    if (run.ok()) {
      response->set_run_id(run->run_id);
      response->set_watch_from_seq(run->seq);
      for (std::string& warning : run->warnings) response->add_warnings(std::move(warning));
    }
    reactor->Finish(ToGrpcStatus(run.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::CheckFlow(grpc::CallbackServerContext* ctx,
                                                     const v1::SubmitFlowRequest* request,
                                                     v1::CheckFlowResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->Check(*request, [reactor, response](absl::StatusOr<v1::CheckFlowResponse> checked) {
    if (checked.ok()) *response = std::move(*checked);
    reactor->Finish(ToGrpcStatus(checked.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::GetRun(grpc::CallbackServerContext* ctx,
                                                  const v1::GetRunRequest* request, v1::Run* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  auto run = LookupRun(request->run_id());
  if (run.ok()) *response = std::move(*run);
  reactor->Finish(ToGrpcStatus(run.status()));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListRuns(grpc::CallbackServerContext* ctx,
                                                    const v1::ListRunsRequest* request,
                                                    v1::ListRunsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  auto runs = reader_.ListRuns(*request);
  if (runs.ok()) *response = std::move(*runs);
  reactor->Finish(ToGrpcStatus(runs.status()));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListTasks(grpc::CallbackServerContext* ctx,
                                                     const v1::ListTasksRequest* request,
                                                     v1::ListTasksResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  auto tasks = reader_.ListTasks(*request);
  if (tasks.ok()) *response = std::move(*tasks);
  absl::Status status = tasks.status();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::CancelRun(grpc::CallbackServerContext* ctx,
                                                     const v1::CancelRunRequest* request,
                                                     v1::CancelRunResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->Cancel(request->run_id(), [reactor, response](absl::StatusOr<v1::RunState> state) {
    if (state.ok()) response->set_state(*state);
    reactor->Finish(ToGrpcStatus(state.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ResetTasks(grpc::CallbackServerContext* ctx,
                                                      const v1::ResetTasksRequest* request,
                                                      v1::ResetTasksResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->Reset(*request, [reactor, response](absl::StatusOr<v1::ResetTasksResponse> answer) {
    if (answer.ok()) *response = std::move(*answer);
    reactor->Finish(ToGrpcStatus(answer.status()));
  });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* FlowServiceImpl::Watch(grpc::CallbackServerContext* ctx,
                                                                   const grpc::ByteBuffer* raw_request) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return new FailedWatch(ToGrpcStatus(auth));
  if (size_t open = hub_->subscriber_count(); open >= max_watchers_) {
    return new FailedWatch(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(open, " watchers are open; at most ", max_watchers_, " are allowed (asflowd --max-watchers)")));
  }
  v1::WatchRequest request;
  grpc::ByteBuffer request_bytes(*raw_request);  // shares the slices; Deserialize consumes it
  if (!grpc::SerializationTraits<v1::WatchRequest>::Deserialize(&request_bytes, &request).ok()) {
    return new FailedWatch(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed WatchRequest"));
  }
  std::unique_ptr<v1::Event> final_snapshot;
  if (request.run_id() != 0) {
    // A run the hub does not hold and the store has finished (long ago, or
    // just now with its events still on their way: server/stored_run_snapshot.h)
    // is served from the store, a snapshot that also ends the stream.
    auto stored = StoredRunSnapshot(*hub_, *store_, request.run_id());
    if (!stored.ok()) return new FailedWatch(ToGrpcStatus(stored.status()));
    final_snapshot = std::move(*stored);
  }
  return new WatchReactor(hub_, request, std::move(final_snapshot));
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListWorkers(grpc::CallbackServerContext* ctx,
                                                       const v1::ListWorkersRequest* request,
                                                       v1::ListWorkersResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  for (v1::WorkerInfo& info : workers_->List()) *response->add_workers() = std::move(info);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::Shutdown(grpc::CallbackServerContext* ctx,
                                                    const v1::ShutdownRequest* request,
                                                    v1::ShutdownResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  reactor->Finish(grpc::Status::OK);
  request_shutdown_(request->now());
  return reactor;
}

grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse>* FlowServiceImpl::Session(
    grpc::CallbackServerContext* ctx) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return new FailedSession(ToGrpcStatus(auth));
  return new SessionReactor(sessions_, ctx);
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListThrottle(grpc::CallbackServerContext* ctx,
                                                        const v1::ListThrottleRequest* request,
                                                        v1::ListThrottleResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->ListThrottle([reactor, response](v1::ListThrottleResponse list) {
    *response = std::move(list);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::Pause(grpc::CallbackServerContext* ctx, const v1::PauseRequest* request,
                                                 v1::PauseResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (request->for_ms() < 0) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "for_ms must be >= 0"));
    return reactor;
  }
  scheduler_->Pause(request->target(), absl::Milliseconds(request->for_ms()),
                    [reactor, response](absl::StatusOr<v1::ThrottleStatus> status) {
                      if (status.ok()) *response->mutable_status() = std::move(*status);
                      reactor->Finish(ToGrpcStatus(status.status()));
                    });
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::Resume(grpc::CallbackServerContext* ctx, const v1::ResumeRequest* request,
                                                  v1::ResumeResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->Unpause(request->target(), [reactor, response](absl::StatusOr<v1::ResumeResponse> answer) {
    if (answer.ok()) *response = std::move(*answer);
    reactor->Finish(ToGrpcStatus(answer.status()));
  });
  return reactor;
}

grpc::ServerWriteReactor<v1::LogChunk>* FlowServiceImpl::Logs(grpc::CallbackServerContext* ctx,
                                                              const v1::LogsRequest* request) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return new FailedLogs(ToGrpcStatus(auth));
  auto filter = LogsReactor::FilterOf(*request);
  if (!filter.ok()) return new FailedLogs(ToGrpcStatus(filter.status()));
  if (absl::Status s = LookupRun(request->run_id()).status(); !s.ok()) return new FailedLogs(ToGrpcStatus(s));
  return new LogsReactor(logs_, store_, &reader_, *request, std::move(*filter));
}

}  // namespace asflow
