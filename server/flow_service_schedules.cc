// FlowService's schedule RPCs: thin over Schedules (server/schedules.h).
#include <utility>

#include "server/flow_service.h"

namespace asflow {
namespace {

// Finishes `reactor` with the schedule or the error.
std::function<void(absl::StatusOr<v1::Schedule>)> Answer(grpc::ServerUnaryReactor* reactor, v1::Schedule* response) {
  return [reactor, response](absl::StatusOr<v1::Schedule> s) {
    if (s.ok()) *response = std::move(*s);
    reactor->Finish(ToGrpcStatus(s.status()));
  };
}

absl::Status NoSchedules() { return absl::UnavailableError("this asflowd has no schedules"); }

}  // namespace

grpc::ServerUnaryReactor* FlowServiceImpl::AddSchedule(grpc::CallbackServerContext* ctx,
                                                       const v1::AddScheduleRequest* request,
                                                       v1::Schedule* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  schedules_->Add(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListSchedules(grpc::CallbackServerContext* ctx,
                                                         const v1::ListSchedulesRequest* /*request*/,
                                                         v1::ListSchedulesResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  for (v1::Schedule& s : schedules_->List()) *response->add_schedules() = std::move(s);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::RemoveSchedule(grpc::CallbackServerContext* ctx,
                                                          const v1::ScheduleRef* request, v1::Schedule* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  schedules_->Remove(*request, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::PauseSchedule(grpc::CallbackServerContext* ctx,
                                                         const v1::ScheduleRef* request, v1::Schedule* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  schedules_->SetPaused(*request, true, Answer(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ResumeSchedule(grpc::CallbackServerContext* ctx,
                                                          const v1::ScheduleRef* request, v1::Schedule* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  schedules_->SetPaused(*request, false, Answer(reactor, response));
  return reactor;
}

}  // namespace asflow
