#include "client/dry_run.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "asflow/v1/service.grpc.pb.h"
#include "client/cli_errors.h"
#include "client/commands.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"

namespace asflow {
namespace {

std::string Count(bool known, int64_t n) { return known ? absl::StrCat(n) : "?"; }

// The NOTE column of one task.
std::string Note(const v1::TaskCheck& t) {
  if (t.excluded()) return "not run (--only)";
  std::string note;
  if (!t.expanded()) note = t.waits_on().empty() ? "count unknown" : absl::StrCat("waits on ", t.waits_on());
  if (t.held()) note = note.empty() ? "upstream of --only: cached outputs only" : note + "; upstream of --only";
  if (!t.program_path().empty()) {
    absl::StrAppend(&note, note.empty() ? "" : "; ", t.program(), " -> ", t.program_path());
  } else if (!t.program().empty() && t.error_field() != "run[0]") {
    absl::StrAppend(&note, note.empty() ? "" : "; ", t.program(), " not checked here");
  }
  if (!t.error().empty()) note = note.empty() ? "PROBLEM (below)" : absl::StrCat("PROBLEM (below); ", note);
  return note;
}

}  // namespace

int DryRunCommand(const ClientOptions& client, const v1::SubmitFlowRequest& request, const LoadedFlow& flow,
                  bool json, bool autostart) {
  auto channel = Connect(client, autostart);
  if (!channel.ok()) return Fail(kExitUnavailable, channel.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::CheckFlowResponse response;
  grpc::Status status = v1::FlowService::NewStub(*channel)->CheckFlow(&ctx, request, &response);
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    return Fail(kExitUsage, flow.LocateLines(status.error_message()));
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return Fail(kExitUnavailable, "this asflowd has no dry runs (CheckFlow); upgrade it");
  }
  if (!status.ok()) return FailRpc(status);
  std::vector<std::string> problems;
  for (v1::TaskCheck& t : *response.mutable_tasks()) {
    if (t.error().empty()) continue;
    const std::string field = absl::StrCat("tasks[", t.index(), "]", t.error_field().empty() ? "" : ".",
                                           t.error_field());
    // "FILE:LINE:COL: tasks[1].run[0] (transcript): program ...", the
    // path and position as the task's own file has them.
    const bool own = t.index() < static_cast<int>(flow.task_origin.size()) && flow.task_origin[t.index()].first == 0;
    const std::string own_field =
        own ? absl::StrCat("tasks[", flow.task_origin[t.index()].second, "]", t.error_field().empty() ? "" : ".",
                           t.error_field())
            : "";
    t.set_error(own ? absl::StrCat(flow.Locate(field), ": ", own_field, " (", t.task(), "): ", t.error())
                    : flow.LocateLines(absl::StrCat(field, ": ", t.error())));
    problems.push_back(t.error());
  }
  if (json) {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    std::string text;
    if (!google::protobuf::util::MessageToJsonString(response, &text, options).ok()) text = "{}";
    absl::PrintF("%s\n", text);
  } else {
    absl::PrintF("dry run of flow %s in %s: nothing recorded, nothing run\n", request.spec().name(),
                 response.workspace());
    size_t width = 4;
    for (const v1::TaskCheck& t : response.tasks()) width = std::max(width, t.task().size());
    absl::PrintF("%-*s %8s %8s %10s %7s  %s\n", width, "TASK", "RUN", "CACHED", "SUPPRESSED", "MERGED", "NOTE");
    int64_t run = 0, cached = 0, suppressed = 0;
    bool all_known = true;
    for (const v1::TaskCheck& t : response.tasks()) {
      const bool known = t.expanded() || t.excluded();
      all_known = all_known && known;
      run += t.would_run();
      cached += t.cached();
      suppressed += t.suppressed();
      absl::PrintF("%-*s %8s %8s %10s %7s  %s\n", width, t.task(), Count(known, t.would_run()),
                   Count(known, t.cached()), Count(known, t.suppressed()), Count(known, t.merged()), Note(t));
    }
    absl::PrintF("would run %d%s, cached %d, suppressed %d\n", run, all_known ? "" : " and more (counts with ? wait "
                 "on upstream instances that would run first)", cached, suppressed);
    for (const std::string& p : problems) absl::FPrintF(stderr, "%s\n", p);
  }
  return problems.empty() ? kExitOk : kExitUsage;
}

int CheckCommand(const ClientOptions& client, const CheckCommandOptions& options) {
  auto flow = LoadFlowFile(options.flow_file);
  if (!flow.ok()) return Fail(kExitUsage, flow.status().message());
  for (const std::string& warning : flow->warnings) absl::FPrintF(stderr, "asflowctl: warning: %s\n", warning);
  auto request = BuildFlowRequest(options.flow_file, *flow, options.request);
  if (!request.ok()) return Fail(kExitUsage, request.status().message());
  if (!options.local) {
    // Never starts a daemon: checking a file should not leave one running.
    auto channel = Connect(client, /*autostart=*/false);
    if (channel.ok()) return DryRunCommand(client, *request, *flow, options.json, false);
  }
  const int imported = flow->spec.tasks_size() - static_cast<int>(std::count_if(
                                                     flow->task_origin.begin(), flow->task_origin.end(),
                                                     [](const auto& o) { return o.first == 0; }));
  if (options.json) {
    absl::PrintF("{\"valid\":true,\"flow\":\"%s\",\"tasks\":%d,\"imported_tasks\":%d,\"daemon\":false}\n",
                 flow->spec.name(), flow->spec.tasks_size(), imported);
  } else {
    absl::PrintF("%s: flow %s is valid: %d tasks (%d imported from %d files)\n", options.flow_file,
                 flow->spec.name(), flow->spec.tasks_size(), imported, flow->files.size() - 1);
    absl::PrintF("%s\n", options.local ? "programs and instance counts not checked (--local)"
                                       : "asflowd is not running: programs on its PATH and instance counts not "
                                         "checked (asflowctl run --dry-run starts it)");
  }
  return kExitOk;
}

}  // namespace asflow
