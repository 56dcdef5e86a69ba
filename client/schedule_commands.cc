#include "client/schedule_commands.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "asflow/v1/service.grpc.pb.h"
#include "client/cli_errors.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/escape.h"
#include "client/line_printer.h"
#include "common/spec_parser.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"

namespace asflow {
namespace {

absl::StatusOr<std::unique_ptr<v1::FlowService::Stub>> Stub(const ClientOptions& client) {
  // Like `run`: a schedule needs a daemon running to fire.
  auto channel = Connect(client, /*autostart=*/client.server.empty());
  if (!channel.ok()) return channel.status();
  return v1::FlowService::NewStub(*channel);
}

// Schedule times are UTC (docs/behaviour.md, "Schedules").
std::string UtcTime(int64_t ms) {
  if (ms <= 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(ms), absl::UTCTimeZone());
}

std::string When(const v1::Schedule& s) {
  if (!s.cron().empty()) return absl::StrCat("cron ", s.cron());
  return absl::StrCat("every ", absl::FormatDuration(absl::Milliseconds(s.every_ms())));
}

std::string RealPathOf(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

}  // namespace

int ScheduleAddCommand(const ClientOptions& client, const ScheduleAddOptions& options) {
  if (options.every.empty() == options.cron.empty()) {
    return Fail(kExitUsage, "schedule add: give exactly one of --every (e.g. 6h) or --cron (e.g. \"0 */6 * * *\")");
  }
  // Checked here first, for the same file:line:col messages as `run`; the
  // daemon reads the file again at every fire.
  auto parsed = ParseFlowFile(options.flow_file);
  if (!parsed.ok()) return Fail(kExitUsage, parsed.status().message());
  for (const std::string& warning : parsed->warnings) absl::FPrintF(stderr, "asflowctl: warning: %s\n", warning);
  v1::AddScheduleRequest request;
  for (const std::string& p : options.params) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) return Fail(kExitUsage, absl::StrCat("-p ", p, ": expected name=value"));
    (*request.mutable_params())[p.substr(0, eq)] = p.substr(eq + 1);
  }
  const std::string workspace = RealPathOf(options.workspace.empty() ? "." : options.workspace);
  if (workspace.empty()) return Fail(kExitUsage, absl::StrCat("--workspace ", options.workspace, ": no such directory"));
  const std::string flow = RealPathOf(options.flow_file);
  if (flow.empty()) return Fail(kExitUsage, absl::StrCat(options.flow_file, ": cannot resolve its path"));
  request.set_name(options.name);
  request.set_flow_file(flow);
  request.set_workspace(workspace);
  request.set_every(options.every);
  request.set_cron(options.cron);
  request.set_keep_going(options.keep_going);
  if (const char* path = getenv("PATH")) (*request.mutable_env())["PATH"] = path;

  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::Schedule schedule;
  grpc::Status status = (*stub)->AddSchedule(&ctx, request, &schedule);
  if (!status.ok()) return FailRpc(status);
  absl::PrintF("schedule '%s' added: %s, next at %s UTC (%s is read again at every fire)\n",
               EscapeLine(schedule.name()), When(schedule), UtcTime(schedule.next_fire_ms()),
               EscapeLine(options.flow_file));
  return kExitOk;
}

int ScheduleListCommand(const ClientOptions& client, bool json) {
  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::ListSchedulesResponse response;
  grpc::Status status = (*stub)->ListSchedules(&ctx, v1::ListSchedulesRequest(), &response);
  if (!status.ok()) return FailRpc(status);
  if (json) {
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    for (const v1::Schedule& s : response.schedules()) {
      std::string line;
      if (!google::protobuf::util::MessageToJsonString(s, &line, print).ok()) line = "{}";
      absl::PrintF("%s\n", line);
    }
    return kExitOk;
  }
  if (response.schedules_size() == 0) {
    absl::PrintF("no schedules (asflowctl schedule add flow.yaml --every 6h)\n");
    return kExitOk;
  }
  absl::PrintF("%-16s %-22s %-20s %-20s %-8s %-10s %6s %6s  %s\n", "NAME", "WHEN (UTC)", "NEXT", "LAST FIRE",
               "LAST RUN", "STATE", "RUNS", "SKIPS", "FLOW");
  for (const v1::Schedule& s : response.schedules()) {
    std::string state = s.last_run_id() == 0 ? "-" : RunStateName(s.last_run_state());
    absl::PrintF("%-16s %-22s %-20s %-20s %-8s %-10s %6d %6d  %s\n", EscapeLine(s.name()), EscapeLine(When(s)),
                 s.paused() ? "paused" : UtcTime(s.next_fire_ms()), UtcTime(s.last_fire_ms()),
                 s.last_run_id() == 0 ? "-" : absl::StrCat(s.last_run_id()), state, s.runs_started(), s.skips(),
                 EscapeLine(s.flow_file()));
    if (s.skips() > 0) {
      absl::PrintF("  last skipped at %s UTC: its previous run was still going\n", UtcTime(s.last_skip_ms()));
    }
    if (!s.last_error().empty()) absl::PrintF("  last fire started nothing: %s\n", EscapeLine(s.last_error()));
  }
  return kExitOk;
}

int ScheduleChangeCommand(const ClientOptions& client, const std::string& action, const std::string& target) {
  v1::ScheduleRef ref;
  int64_t id = 0;
  if (absl::SimpleAtoi(target, &id)) {
    ref.set_id(id);
  } else {
    ref.set_name(target);
  }
  auto stub = Stub(client);
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::Schedule schedule;
  grpc::Status status = action == "remove"  ? (*stub)->RemoveSchedule(&ctx, ref, &schedule)
                        : action == "pause" ? (*stub)->PauseSchedule(&ctx, ref, &schedule)
                                            : (*stub)->ResumeSchedule(&ctx, ref, &schedule);
  if (!status.ok()) return FailRpc(status);
  if (action == "remove") {
    absl::PrintF("schedule '%s' removed%s\n", EscapeLine(schedule.name()),
                 schedule.last_run_id() != 0 ? absl::StrCat(" (its last run, ", schedule.last_run_id(),
                                                            ", is not cancelled)")
                                             : "");
  } else if (action == "pause") {
    absl::PrintF("schedule '%s' paused\n", EscapeLine(schedule.name()));
  } else {
    absl::PrintF("schedule '%s' resumed: next at %s UTC\n", EscapeLine(schedule.name()),
                 UtcTime(schedule.next_fire_ms()));
  }
  return kExitOk;
}

}  // namespace asflow
