#include "client/throttle_commands.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "asflow/v1/service.grpc.pb.h"
#include "client/cli_errors.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/escape.h"
#include "grpcpp/client_context.h"

namespace asflow {
namespace {

std::string Clock(int64_t ms) {
  return absl::FormatTime("%H:%M:%S", absl::FromUnixMillis(ms), absl::LocalTimeZone());
}

// The STATE column: "open", "cooling down until 12:03:10 (why)", "paused".
std::string StateText(const v1::ThrottleStatus& s) {
  if (s.state() == "paused") {
    return s.paused_until_ms() > 0 ? absl::StrCat("paused until ", Clock(s.paused_until_ms())) : "paused";
  }
  if (s.state() == "cooling down") {
    return absl::StrCat("cooling down until ", Clock(s.cooldown_until_ms()), " (", s.cooldown_reason(), ")");
  }
  return s.state();
}

// The RATE column: as defined, or for `rate: auto` the pace now.
std::string RateText(const v1::ThrottleStatus& s) {
  if (s.effective_rate() > 0) return absl::StrCat("auto:", absl::StrFormat("%.3g", s.effective_rate()), "/s");
  return s.rate().empty() ? "-" : s.rate();
}

absl::StatusOr<std::unique_ptr<v1::FlowService::Stub>> Stub(const ClientOptions& client) {
  auto channel = Connect(client, /*autostart=*/false);
  if (!channel.ok()) return channel.status();
  return v1::FlowService::NewStub(*channel);
}

}  // namespace

absl::StatusOr<absl::Duration> ParsePauseDuration(const std::string& text) {
  absl::Duration d;
  if (!absl::ParseDuration(text, &d) || d <= absl::ZeroDuration() || d == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--for ", text, ": expected a positive duration like 10m, 90s or 1h30m"));
  }
  return d;
}

int ThrottleCommand(const ClientOptions& client) {
  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::ListThrottleResponse response;
  grpc::Status status = (*stub)->ListThrottle(&ctx, v1::ListThrottleRequest(), &response);
  if (!status.ok()) return FailRpc(status);
  if (response.keys_size() == 0) {
    absl::PrintF("no throttle keys (a flow defines them under throttle:, asflowd with --throttle)\n");
    return kExitOk;
  }
  absl::PrintF("%-24s %5s %9s %-10s %7s  %-14s %s\n", "KEY", "LIMIT", "IN FLIGHT", "RATE", "QUEUED", "DEFINED BY",
               "STATE");
  for (const v1::ThrottleStatus& s : response.keys()) {
    absl::PrintF("%-24s %5s %9d %-10s %7d  %-14s %s\n", s.is_task() ? absl::StrCat("task ", s.name()) : s.name(),
                 s.limit() > 0 ? absl::StrCat(s.limit()) : "-", s.in_flight(), RateText(s),
                 s.queued(), s.is_task() ? "-" : s.defined_by(), EscapeLine(StateText(s)));
  }
  return kExitOk;
}

int PauseCommand(const ClientOptions& client, const std::string& target, const std::string& duration) {
  v1::PauseRequest request;
  request.set_target(target);
  if (!duration.empty()) {
    auto d = ParsePauseDuration(duration);
    if (!d.ok()) return Fail(kExitUsage, d.status().message());
    request.set_for_ms(absl::ToInt64Milliseconds(*d));
  }
  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::PauseResponse response;
  grpc::Status status = (*stub)->Pause(&ctx, request, &response);
  if (!status.ok()) return FailRpc(status);
  const v1::ThrottleStatus& s = response.status();
  absl::PrintF("%s%s %s: running instances finish, nothing new starts%s\n", s.is_task() ? "task " : "", s.name(),
               StateText(s), s.paused_until_ms() > 0 ? "" : absl::StrCat(" until asflowctl resume ", s.name()));
  return kExitOk;
}

int ResumeCommand(const ClientOptions& client, const std::string& target) {
  v1::ResumeRequest request;
  request.set_target(target);
  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::ResumeResponse response;
  grpc::Status status = (*stub)->Resume(&ctx, request, &response);
  if (!status.ok()) return FailRpc(status);
  const v1::ThrottleStatus& s = response.status();
  absl::PrintF("%s%s %s\n", s.is_task() ? "task " : "", s.name(),
               response.was_paused() ? absl::StrCat("resumed (", StateText(s), ")") : "was not paused");
  return kExitOk;
}

}  // namespace asflow
