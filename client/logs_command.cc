#include "client/logs_command.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "asflow/v1/service.grpc.pb.h"
#include "client/cli_errors.h"
#include "client/commands.h"
#include "client/connection.h"
#include "client/escape.h"
#include "client/line_printer.h"
#include "grpcpp/client_context.h"

namespace asflow {

std::string LogPrinter::Line(const v1::LogChunk& chunk, absl::string_view text) const {
  std::string line;
  if (prefix_) {
    v1::Instance inst;
    inst.set_task(chunk.task());
    *inst.mutable_params() = chunk.params();
    line = EscapeLine(Label(inst));
    if (chunk.attempt() > 1) absl::StrAppend(&line, " #", chunk.attempt());
    absl::StrAppend(&line, " | ");
  }
  absl::StrAppend(&line, escape_ ? EscapeLine(text) : std::string(text), "\n");
  return line;
}

std::string LogPrinter::Add(const v1::LogChunk& chunk) {
  const Key key{chunk.run_id(), chunk.seq(), chunk.attempt()};
  std::string out;
  if (!prefix_ && any_ && key != last_) {
    absl::StrAppend(&out, "== attempt ", chunk.attempt(), chunk.stored() ? "" : " (running)", " ==\n");
  }
  any_ = true;
  last_ = key;
  heads_.try_emplace(key, chunk).first->second.clear_data();
  if (chunk.dropped_bytes() > 0) {
    out += Line(chunk, absl::StrCat("[", chunk.dropped_bytes(), " bytes not shown]"));
  }
  std::string& partial = partial_[key];
  absl::string_view data = chunk.data();
  size_t nl;
  while ((nl = data.find('\n')) != absl::string_view::npos) {
    std::string text = std::move(partial);
    partial.clear();
    text.append(data.data(), nl);
    if (!text.empty() && text.back() == '\r') text.pop_back();
    out += Line(chunk, text);
    data.remove_prefix(nl + 1);
  }
  partial.append(data.data(), data.size());
  // A stored tail is all there is of its attempt.
  if (chunk.stored() && !partial.empty()) {
    out += Line(chunk, partial);
    partial.clear();
  }
  return out;
}

std::string LogPrinter::Flush() {
  std::string out;
  for (auto& [key, partial] : partial_) {
    if (!partial.empty()) out += Line(heads_[key], partial);
    partial.clear();
  }
  return out;
}

int LogsCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                const std::vector<std::string>& params, bool follow) {
  if (!params.empty() && task.empty()) return Fail(kExitUsage, "bindings need a task: logs RUN TASK [bindings]");
  auto channel = Connect(client, client.server.empty());
  if (!channel.ok()) return Fail(kExitUnavailable, channel.status().message());
  auto stub = v1::FlowService::NewStub(*channel);
  v1::LogsRequest request;
  request.set_run_id(run_id);
  request.set_task(task);
  for (const std::string& p : params) request.add_match(p);
  request.set_follow(follow);
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  auto reader = stub->Logs(&ctx, request);
  // One instance asked for: its lines as they are, unless the bindings
  // given match several.
  LogPrinter printer(/*prefix=*/task.empty() || params.empty(), /*escape=*/isatty(STDOUT_FILENO) == 1);
  v1::LogChunk chunk;
  std::pair<int64_t, int64_t> first{-1, -1};
  while (reader->Read(&chunk)) {
    const std::pair<int64_t, int64_t> inst{chunk.run_id(), chunk.seq()};
    if (first.first < 0) first = inst;
    if (!printer.prefix() && inst != first) {
      std::fputs(printer.Flush().c_str(), stdout);
      printer.set_prefix(true);
    }
    const std::string text = printer.Add(chunk);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
  }
  std::fputs(printer.Flush().c_str(), stdout);
  std::fflush(stdout);
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FailRpc(status);
  return kExitOk;
}

}  // namespace asflow
