#include "server/flow_service.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/session_reactor.h"
#include "server/watch_reactor.h"

namespace asflow {

FlowServiceImpl::FlowServiceImpl(Scheduler* scheduler, Store* store, EventHub* hub, WorkerHub* workers,
                                 SessionHub* sessions, const TokenCheck* auth,
                                 std::function<void()> request_shutdown)
    : scheduler_(scheduler),
      store_(store),
      hub_(hub),
      workers_(workers),
      sessions_(sessions),
      auth_(auth),
      request_shutdown_(std::move(request_shutdown)) {}

bool FlowServiceImpl::Authorized(grpc::CallbackServerContext* ctx, grpc::ServerUnaryReactor* reactor) const {
  absl::Status auth = auth_->Check(*ctx);
  if (!auth.ok()) reactor->Finish(ToGrpcStatus(auth));
  return auth.ok();
}

namespace {

// Bytes of items a list response may hold: under gRPC's default receive
// limit (4 MiB; asflowctl allows 64) with room for the framing, whatever
// the items hold, so a listing never breaks for good because some runs or
// instances are large.
constexpr size_t kMaxPageBytes = 3 << 20;

// Counts a page's items against kMaxPageBytes; the first item always fits.
class PageBudget {
 public:
  // False (and full() from then on) if an item of `bytes` would pass the
  // budget; the caller stops there.
  bool Take(size_t bytes) {
    if (used_ > 0 && used_ + bytes > kMaxPageBytes) {
      full_ = true;
      return false;
    }
    used_ += bytes;
    return true;
  }
  bool full() const { return full_; }

 private:
  size_t used_ = 0;
  bool full_ = false;
};

// Reactors that only report an error.
class FailedWatch : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit FailedWatch(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};
class FailedSession : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  explicit FailedSession(grpc::Status s) { Finish(std::move(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

absl::StatusOr<v1::Run> FlowServiceImpl::LookupRun(int64_t run_id) {
  if (std::optional<v1::Run> run = hub_->FindRun(run_id)) return *run;
  auto rec = store_->GetRun(run_id);
  if (!rec.ok()) return rec.status();
  return rec->run;
}

grpc::ServerUnaryReactor* FlowServiceImpl::SubmitFlow(grpc::CallbackServerContext* ctx,
                                                      const v1::SubmitFlowRequest* request,
                                                      v1::SubmitFlowResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  scheduler_->Submit(*request, [reactor, response](absl::StatusOr<Scheduler::Submitted> run) {
    if (run.ok()) {
      response->set_run_id(run->run_id);
      response->set_watch_from_seq(run->seq);
    }
    reactor->Finish(ToGrpcStatus(run.status()));
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
  int limit = request->limit() > 0 ? std::min(request->limit(), 10000) : 50;
  int64_t before_id = 0;
  if (!request->page_token().empty() && (!absl::SimpleAtoi(request->page_token(), &before_id) || before_id <= 0)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("bad page_token '", request->page_token(), "'")));
    return reactor;
  }
  auto runs = store_->ListRuns(limit, /*only_running=*/false, before_id, /*with_request=*/false);
  if (runs.ok()) {
    PageBudget budget;
    for (RunRecord& rec : *runs) {
      std::optional<v1::Run> fresh = hub_->FindRun(rec.run.id());
      v1::Run run = fresh ? std::move(*fresh) : std::move(rec.run);
      if (!budget.Take(run.ByteSizeLong())) break;
      *response->add_runs() = std::move(run);
    }
    if (response->runs_size() > 0 && (response->runs_size() == limit || budget.full())) {
      response->set_next_page_token(absl::StrCat(response->runs().rbegin()->id()));
    }
  }
  reactor->Finish(ToGrpcStatus(runs.status()));
  return reactor;
}

grpc::ServerUnaryReactor* FlowServiceImpl::ListTasks(grpc::CallbackServerContext* ctx,
                                                     const v1::ListTasksRequest* request,
                                                     v1::ListTasksResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!Authorized(ctx, reactor)) return reactor;
  InstanceQuery query;
  query.run_id = request->run_id();
  query.task = request->task();
  for (int s : request->states()) query.states.push_back(static_cast<v1::InstanceState>(s));
  query.limit = request->page_size() > 0 ? std::min(request->page_size(), 10000) : 1000;
  if (!request->params().empty()) {
    if (request->task().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "a params filter needs a task"));
      return reactor;
    }
    query.params = CanonicalParams({request->params().begin(), request->params().end()});
  }
  if (!request->page_token().empty() && !absl::SimpleAtoi(request->page_token(), &query.after_seq)) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("bad page_token '", request->page_token(), "'")));
    return reactor;
  }
  absl::Status status = LookupRun(request->run_id()).status();
  if (status.ok()) {
    auto rows = store_->ListInstances(query);
    status = rows.status();
    if (rows.ok()) {
      PageBudget budget;
      for (const InstanceRecord& row : *rows) {
        v1::Instance instance = InstanceToProto(row);
        if (!budget.Take(instance.ByteSizeLong())) break;
        *response->add_instances() = std::move(instance);
      }
      if (response->instances_size() > 0 &&
          (static_cast<int>(rows->size()) == query.limit || budget.full())) {
        response->set_next_page_token(absl::StrCat(response->instances().rbegin()->seq()));
      }
    }
  }
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
  scheduler_->Reset(*request, [reactor, response](absl::StatusOr<int64_t> count) {
    if (count.ok()) response->set_reset(*count);
    reactor->Finish(ToGrpcStatus(count.status()));
  });
  return reactor;
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* FlowServiceImpl::Watch(grpc::CallbackServerContext* ctx,
                                                                   const grpc::ByteBuffer* raw_request) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return new FailedWatch(ToGrpcStatus(auth));
  v1::WatchRequest request;
  grpc::ByteBuffer request_bytes(*raw_request);  // shares the slices; Deserialize consumes it
  if (!grpc::SerializationTraits<v1::WatchRequest>::Deserialize(&request_bytes, &request).ok()) {
    return new FailedWatch(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed WatchRequest"));
  }
  std::unique_ptr<v1::Event> final_snapshot;
  if (request.run_id() != 0 && !hub_->FindRun(request.run_id())) {
    // A run the hub does not hold: finished long ago (or unknown). Serve
    // its stored state as the snapshot, which also ends the stream.
    auto rec = store_->GetRun(request.run_id());
    if (!rec.ok()) return new FailedWatch(ToGrpcStatus(rec.status()));
    // Only a finished run is served from the store. A running one is just
    // being submitted (its first event is on its way): subscribe as usual.
    if (rec->run.state() != v1::RUN_RUNNING) {
      final_snapshot = std::make_unique<v1::Event>();
      final_snapshot->set_seq(hub_->last_seq());
      *final_snapshot->mutable_snapshot()->add_runs() = rec->run;
    }
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
  request_shutdown_();
  return reactor;
}

grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse>* FlowServiceImpl::Session(
    grpc::CallbackServerContext* ctx) {
  if (absl::Status auth = auth_->Check(*ctx); !auth.ok()) return new FailedSession(ToGrpcStatus(auth));
  return new SessionReactor(sessions_, ctx);
}

}  // namespace asflow
