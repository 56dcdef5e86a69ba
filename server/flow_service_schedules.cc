// FlowService's schedule RPCs: thin over Schedules (server/schedules.h).
#include <functional>
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

grpc::ServerUnaryReactor* FlowServiceImpl::WithSchedules(grpc::CallbackServerContext* ctx,
                                                         const std::function<void(grpc::ServerUnaryReactor*)>& fn) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  if (schedules_ == nullptr) {
    reactor->Finish(ToGrpcStatus(NoSchedules()));
    return reactor;
  }
  fn(reactor);
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::AddSchedule(grpc::CallbackServerContext* ctx,
                                                       const v1::AddScheduleRequest* request,
                                                       v1::Schedule* response) {
  return WithSchedules(ctx, [&](grpc::ServerUnaryReactor* r) { schedules_->Add(*request, Answer(r, response)); });
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListSchedules(grpc::CallbackServerContext* ctx,
                                                         const v1::ListSchedulesRequest* /*request*/,
                                                         v1::ListSchedulesResponse* response) {
  return WithSchedules(ctx, [&](grpc::ServerUnaryReactor* r) {
    for (v1::Schedule& s : schedules_->List()) *response->add_schedules() = std::move(s);
    r->Finish(grpc::Status::OK);
  });
}

grpc::ServerUnaryReactor* FlowServiceImpl::RemoveSchedule(grpc::CallbackServerContext* ctx,
                                                          const v1::ScheduleRef* request, v1::Schedule* response) {
  return WithSchedules(ctx, [&](grpc::ServerUnaryReactor* r) { schedules_->Remove(*request, Answer(r, response)); });
}

grpc::ServerUnaryReactor* FlowServiceImpl::PauseSchedule(grpc::CallbackServerContext* ctx,
                                                         const v1::ScheduleRef* request, v1::Schedule* response) {
  return WithSchedules(ctx,
                       [&](grpc::ServerUnaryReactor* r) { schedules_->SetPaused(*request, true, Answer(r, response)); });
}

grpc::ServerUnaryReactor* FlowServiceImpl::ResumeSchedule(grpc::CallbackServerContext* ctx,
                                                          const v1::ScheduleRef* request, v1::Schedule* response) {
  return WithSchedules(
      ctx, [&](grpc::ServerUnaryReactor* r) { schedules_->SetPaused(*request, false, Answer(r, response)); });
}

}  // namespace asflow
