#include "client/cli_errors.h"
#include "client/commands.h"

#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "asflow/v1/service.grpc.pb.h"
#include "client/dry_run.h"
#include "client/escape.h"
#include "client/event_json.h"
#include "client/line_printer.h"
#include "client/flow_request.h"
#include "common/beneath.h"
#include "common/flow_imports.h"
#include "common/codec.h"
#include "common/paths.h"
#include "common/safe_path.h"
#include "common/spec_parser.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"

namespace asflow {
namespace {

// A Watch call read raw: each message is the encoded v1::Event as it came,
// so a batch's events reach the sink as views into it instead of being
// copied into a parsed Event's strings first (8% of a W5 watcher's CPU).
class RawWatch {
 public:
  RawWatch(grpc::Channel* channel, grpc::ClientContext* ctx, const v1::WatchRequest& request)
      : method_name_(absl::StrCat("/", v1::FlowService::service_full_name(), "/Watch")),
        method_(method_name_.c_str(), grpc::internal::RpcMethod::SERVER_STREAMING),
        reader_(grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel, method_, ctx, request)) {}

  // The next message, valid until the next call; false at the end.
  bool Read(absl::string_view* message) {
    if (!reader_->Read(&buffer_)) return false;
    // One slice is taken as is; a message in several is joined.
    if (!buffer_.TrySingleSlice(&slice_).ok() && !buffer_.DumpToSingleSlice(&slice_).ok()) return false;
    *message = absl::string_view(reinterpret_cast<const char*>(slice_.begin()), slice_.size());
    return true;
  }
  grpc::Status Finish() { return reader_->Finish(); }

 private:
  const std::string method_name_;
  const grpc::internal::RpcMethod method_;
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader_;
  grpc::ByteBuffer buffer_;
  grpc::Slice slice_;  // the current message
};

absl::StatusOr<std::unique_ptr<v1::FlowService::Stub>> Stub(const ClientOptions& client, bool autostart) {
  auto channel = Connect(client, autostart);
  if (!channel.ok()) return channel.status();
  return v1::FlowService::NewStub(*channel);
}

// What Ctrl-C acts on: the run being followed and its Watch call.
struct Interrupt {
  absl::Mutex mu;
  ClientOptions client;
  int64_t run_id ABSL_GUARDED_BY(mu) = 0;
  grpc::ClientContext* watch ABSL_GUARDED_BY(mu) = nullptr;
  std::shared_ptr<ProgressSink> sink ABSL_GUARDED_BY(mu);  // shared: the prompt may outlive Follow
  bool detached ABSL_GUARDED_BY(mu) = false;
};
Interrupt& TheInterrupt() {
  static Interrupt* interrupt = new Interrupt();
  return *interrupt;
}

// The terminal's modes before asflowctl changed them (stdin a terminal).
std::optional<struct termios>& TermiosAtStart() {
  static std::optional<struct termios> modes;
  return modes;
}
void RestoreTerminal() {
  if (TermiosAtStart()) tcsetattr(STDIN_FILENO, TCSANOW, &*TermiosAtStart());
}

// One key from the terminal, without waiting for Enter or echoing it.
char ReadKey() {
  struct termios now;
  if (tcgetattr(STDIN_FILENO, &now) != 0) return 0;
  struct termios raw = now;
  raw.c_lflag &= ~(ICANON | ECHO);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &raw);
  char c = 0;
  if (read(STDIN_FILENO, &c, 1) != 1) c = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &now);
  return c;
}

void OnInterrupt() {
  Interrupt& in = TheInterrupt();
  int64_t run_id;
  std::shared_ptr<ProgressSink> sink;
  {
    absl::MutexLock lock(&in.mu);
    run_id = in.run_id;
    sink = in.sink;
  }
  if (run_id == 0) {
    RestoreTerminal();
    _exit(kExitDetached);
  }
  bool cancel = false;
  if (isatty(STDIN_FILENO)) {
    if (sink != nullptr) sink->Suspend(true);
    absl::FPrintF(stderr, "\nrun %d: [c]ancel it, or [d]etach and let it go on? [d] ", run_id);
    const char key = ReadKey();
    cancel = key == 'c' || key == 'C';
    absl::FPrintF(stderr, "%s\n", cancel ? "c" : "d");
    if (sink != nullptr) sink->Suspend(false);
  }
  if (cancel) {
    absl::FPrintF(stderr, "cancelling run %d...\n", run_id);
    auto stub = Stub(in.client, false);
    if (stub.ok()) {
      grpc::ClientContext ctx;
      PrepareContext(in.client, &ctx);
      v1::CancelRunRequest request;
      request.set_run_id(run_id);
      v1::CancelRunResponse response;
      grpc::Status status = (*stub)->CancelRun(&ctx, request, &response);
      if (status.ok()) return;  // the stream ends with the cancelled run
      absl::FPrintF(stderr, "asflowctl: cancel failed: %s\n", status.error_message());
    }
  }
  absl::MutexLock lock(&in.mu);
  in.detached = true;
  if (in.watch != nullptr) in.watch->TryCancel();
}

bool Detached() {
  Interrupt& in = TheInterrupt();
  absl::MutexLock lock(&in.mu);
  return in.detached;
}

// Follows run `run_id` from event `from_seq` (0: a snapshot first) until it
// ends, reconnecting where it left off if the stream breaks, e.g. while the
// daemon restarts. `first_channel`, if set, is used for the first attempt
// (the connection a submit just used); reconnects make a fresh one. Returns
// the exit code.
int Follow(const ClientOptions& client, std::shared_ptr<grpc::Channel> first_channel, int64_t run_id,
           int64_t from_seq, ProgressMode mode, int max_running) {
  std::shared_ptr<ProgressSink> sink = MakeProgressSink(mode, run_id, max_running);
  Interrupt& in = TheInterrupt();
  {
    absl::MutexLock lock(&in.mu);
    in.run_id = run_id;
    in.sink = sink;
  }
  struct Unregister {
    Interrupt& in;
    ~Unregister() {
      absl::MutexLock lock(&in.mu);
      in.sink = nullptr;
    }
  } unregister{in};
  absl::Time give_up = absl::InfiniteFuture();
  bool announced_loss = false;
  std::vector<absl::string_view> batch;
  v1::Event event;
  while (!sink->finished() && !Detached()) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        first_channel != nullptr ? std::move(first_channel) : Connect(client, /*autostart=*/false);
    first_channel = nullptr;
    if (channel.ok()) {
      grpc::ClientContext ctx;
      PrepareContext(client, &ctx);
      {
        absl::MutexLock lock(&in.mu);
        if (in.detached) break;
        in.watch = &ctx;
      }
      v1::WatchRequest request;
      request.set_run_id(run_id);
      request.set_from_seq(std::max(from_seq, sink->last_seq()));
      request.set_batch(true);
      request.set_batch_interval_ms(sink->batch_interval_ms());
      RawWatch reader(channel->get(), &ctx, request);
      absl::string_view message;
      while (reader.Read(&message)) {
        batch.clear();
        if (!SplitBatch(message, &batch) ||
            (batch.empty() && !event.ParseFromArray(message.data(), static_cast<int>(message.size())))) {
          ctx.TryCancel();  // not an Event: drop the stream and reconnect, as on a broken one
          continue;  // until Read fails
        }
        if (!batch.empty()) {
          sink->HandleEncoded(batch);
        } else {
          sink->Handle(event);
        }
        give_up = absl::InfiniteFuture();
        announced_loss = false;
      }
      grpc::Status status = reader.Finish();
      {
        absl::MutexLock lock(&in.mu);
        in.watch = nullptr;
      }
      if (sink->finished() || Detached()) break;
      if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
        sink->Suspend(true);
        return FailRpc(status);
      }
    }
    if (!announced_loss) {
      sink->Notice(absl::StrFormat("asflowctl: lost the connection to asflowd; reconnecting (run %d)...", run_id));
      announced_loss = true;
      give_up = absl::Now() + absl::Seconds(60);
    }
    if (absl::Now() > give_up) {
      sink->Suspend(true);
      return Fail(kExitUnavailable,
                  absl::StrCat("asflowd is unreachable; the run continues when it is back: asflowctl watch ", run_id));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (Detached() && !sink->finished()) {
    sink->Suspend(true);
    absl::FPrintF(stderr, "detached from run %d; it goes on. Reattach with: asflowctl watch %d\n", run_id, run_id);
    return kExitDetached;
  }
  sink->Finish();
  return sink->run()->state() == v1::RUN_SUCCEEDED ? kExitOk : kExitRunFailed;
}

// One message as a JSON line: protobuf's JSON mapping with proto field
// names, as `--json` events are (64-bit integers as strings).
void PrintJsonLine(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) json = "{}";
  absl::PrintF("%s\n", json);
}

std::string Cwd() {
  char buf[PATH_MAX];
  return getcwd(buf, sizeof(buf)) != nullptr ? std::string(buf) : std::string(".");
}

}  // namespace

int RunCommand(const ClientOptions& client, const RunCommandOptions& options) {
  auto parsed = LoadFlowFile(options.flow_file);
  if (!parsed.ok()) return Fail(kExitUsage, parsed.status().message());
  for (const std::string& warning : parsed->warnings) absl::FPrintF(stderr, "asflowctl: warning: %s\n", warning);
  FlowRequestOptions request_options;
  request_options.params = options.params;
  request_options.force = options.force;
  request_options.only = options.only;
  request_options.keep_going = options.keep_going;
  auto built = BuildFlowRequest(options.flow_file, *parsed, request_options);
  if (!built.ok()) return Fail(kExitUsage, built.status().message());
  v1::SubmitFlowRequest request = std::move(*built);
  if (options.dry_run) return DryRunCommand(client, request, *parsed, options.mode == ProgressMode::kJson, true);

  auto channel = Connect(client, /*autostart=*/client.server.empty());
  if (!channel.ok()) return Fail(kExitUnavailable, channel.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::SubmitFlowResponse response;
  grpc::Status status = v1::FlowService::NewStub(*channel)->SubmitFlow(&ctx, request, &response);
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
    // What only the daemon can check (its throttle keys, a key another
    // flow defines) names the field: point at it in the file it came from.
    return Fail(kExitUsage, parsed->LocateLines(status.error_message()));
  }
  if (!status.ok()) return FailRpc(status);
  for (const std::string& warning : response.warnings()) {
    absl::FPrintF(stderr, "asflowctl: warning: %s\n", EscapeLine(warning));
  }
  if (options.detach) {
    absl::PrintF("%d\n", response.run_id());
    return kExitOk;
  }
  if (options.mode != ProgressMode::kJson) {
    absl::PrintF("run %d: flow %s in %s\n", response.run_id(), parsed->spec.name(), request.workspace());
    std::fflush(stdout);
  }
  int code = Follow(client, std::move(*channel), response.run_id(), response.watch_from_seq(), options.mode,
                    options.max_running);
  if (code == kExitOk && options.mode != ProgressMode::kJson) {
    for (const v1::TaskSpec& task : parsed->spec.tasks()) {
      if (!task.on().empty()) absl::PrintF("  outputs of %s: %s/%s\n", task.name(), request.workspace(), task.on());
    }
  }
  return code;
}

int WatchCommand(const ClientOptions& client, int64_t run_id, int64_t from_seq, ProgressMode mode,
                 int max_running) {
  return Follow(client, nullptr, run_id, from_seq, mode, max_running);
}

int RunsCommand(const ClientOptions& client, int limit, bool json) {
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  // Pages until `limit` runs are in: the daemon may send fewer per page
  // when runs are large.
  v1::ListRunsResponse response;
  v1::ListRunsRequest request;
  for (;;) {
    grpc::ClientContext ctx;
    PrepareContext(client, &ctx);
    request.set_limit(limit - response.runs_size());
    v1::ListRunsResponse page;
    grpc::Status status = (*stub)->ListRuns(&ctx, request, &page);
    if (!status.ok()) return FailRpc(status);
    for (v1::Run& run : *page.mutable_runs()) *response.add_runs() = std::move(run);
    if (page.next_page_token().empty() || response.runs_size() >= limit) break;
    request.set_page_token(page.next_page_token());
  }
  if (json) {
    for (const v1::Run& run : response.runs()) PrintJsonLine(run);
    return kExitOk;
  }
  // Every final state has its column: they add up to TOTAL with QUEUED and
  // RUNNING of a run still going.
  absl::PrintF("%-6s %-10s %-16s %-20s %9s %8s %8s %8s %8s %10s %8s %9s  %s\n", "RUN", "STATE", "FLOW",
               "STARTED", "DURATION", "TOTAL", "DONE", "CACHED", "SKIPPED", "SUPPRESSED", "FAILED", "CANCELLED",
               "WORKSPACE");
  for (const v1::Run& run : response.runs()) {
    int64_t total = 0, done = 0, cached = 0, skipped = 0, suppressed = 0, failed = 0, cancelled = 0;
    for (const auto& t : run.tasks()) {
      total += t.total();
      done += t.done();
      cached += t.cached();
      skipped += t.skipped();
      suppressed += t.suppressed();
      failed += t.failed();
      cancelled += t.cancelled();
    }
    int64_t end = run.finished_ms() > 0 ? run.finished_ms() : absl::ToUnixMillis(absl::Now());
    absl::PrintF("%-6d %-10s %-16s %-20s %9s %8d %8d %8d %8d %10d %8d %9d  %s\n", run.id(),
                 RunStateName(run.state()), EscapeLine(run.flow()),
                 absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMillis(run.created_ms()),
                                  absl::LocalTimeZone()),
                 FormatDuration(end - run.created_ms()), total, done, cached, skipped, suppressed, failed,
                 cancelled,
                 EscapeLine(run.schedule().empty() ? run.workspace()
                                                   : absl::StrCat(run.workspace(), "  (schedule ", run.schedule(), ")")));
  }
  return kExitOk;
}

int WorkersCommand(const ClientOptions& client, bool json) {
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::ListWorkersResponse response;
  grpc::Status status = (*stub)->ListWorkers(&ctx, v1::ListWorkersRequest(), &response);
  if (!status.ok()) return FailRpc(status);
  if (json) {
    for (const v1::WorkerInfo& w : response.workers()) PrintJsonLine(w);
    return kExitOk;
  }
  if (response.workers_size() == 0) {
    absl::PrintF("no workers connected (start one with: asflow-worker --server HOST:PORT --pool NAME)\n");
    return kExitOk;
  }
  absl::PrintF("%-8s %-20s %-12s %5s %7s %9s %10s %9s %-9s %s\n", "SESSION", "NAME", "POOL", "SLOTS",
               "RUNNING", "ASSIGNED", "HEARTBEAT", "UPTIME", "STATE", "HOST / PEER");
  const int64_t now = absl::ToUnixMillis(absl::Now());
  for (const v1::WorkerInfo& w : response.workers()) {
    absl::PrintF("%-8d %-20s %-12s %5d %7d %9d %10s %9s %-9s %s %s\n", w.session_id(), EscapeLine(w.name()),
                 EscapeLine(absl::StrJoin(w.pools(), ",")), w.slots(), w.running(), w.assigned_total(),
                 absl::StrCat(FormatDuration(std::max<int64_t>(0, now - w.last_heartbeat_ms())), " ago"),
                 FormatDuration(std::max<int64_t>(0, now - w.connected_ms())),
                 w.draining() ? "draining" : "ready", EscapeLine(w.hostname()), EscapeLine(w.peer()));
  }
  return kExitOk;
}

int TasksCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                 const std::vector<std::string>& states, bool json) {
  v1::ListTasksRequest request;
  request.set_run_id(run_id);
  request.set_task(task);
  for (const std::string& s : states) {
    v1::InstanceState state;
    if (!v1::InstanceState_Parse(absl::AsciiStrToUpper(s), &state) || state == v1::INSTANCE_STATE_UNSPECIFIED) {
      return Fail(kExitUsage, absl::StrCat("--state ", s,
                                           ": expected queued, running, done, cached, skipped, suppressed, "
                                           "failed or cancelled"));
    }
    request.add_states(state);
  }
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  if (!json) absl::PrintF("%-7s %-10s %-10s %8s %8s  %-40s %s\n", "SEQ", "STATE", "DURATION", "LINES", "ATTEMPTS",
               "INSTANCE", "OUTPUT / ERROR");
  for (;;) {
    grpc::ClientContext ctx;
    PrepareContext(client, &ctx);
    v1::ListTasksResponse response;
    grpc::Status status = (*stub)->ListTasks(&ctx, request, &response);
    if (!status.ok()) return FailRpc(status);
    for (const v1::Instance& inst : response.instances()) {
      if (json) {
        PrintJsonLine(inst);
        continue;
      }
      std::string duration = inst.finished_ms() > 0 && inst.started_ms() > 0
                                 ? FormatDuration(inst.finished_ms() - inst.started_ms())
                                 : "-";
      std::string tail =
          EscapeLine(inst.error().empty() ? inst.output() : inst.error().substr(0, inst.error().find('\n')));
      if (inst.made_by_run() != 0) tail = absl::StrCat("(by run ", inst.made_by_run(), ") ", tail);
      absl::PrintF("%-7d %-10s %-10s %8d %8d  %-40s %s\n", inst.seq(), InstanceStateName(inst.state()),
                   duration, inst.lines(), inst.attempts(), Label(inst), tail);
    }
    if (response.next_page_token().empty()) break;
    request.set_page_token(response.next_page_token());
  }
  return kExitOk;
}

int CancelCommand(const ClientOptions& client, int64_t run_id) {
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::CancelRunRequest request;
  request.set_run_id(run_id);
  v1::CancelRunResponse response;
  grpc::Status status = (*stub)->CancelRun(&ctx, request, &response);
  if (!status.ok()) return FailRpc(status);
  absl::PrintF("run %d: %s\n", run_id, RunStateName(response.state()));
  return kExitOk;
}

namespace {

// Lines of an attempt's stderr tail `show` prints (logs prints it all).
constexpr int kShowStderrLines = 10;

// show's "attempts:" section: one line per attempt (start, duration, how
// it ended), then the end of its stderr.
void PrintAttempts(const v1::Instance& inst) {
  if (inst.attempt_history().empty()) return;
  absl::PrintF("  attempts:\n");
  for (const v1::Attempt& a : inst.attempt_history()) {
    std::string how;
    if (a.term_signal() > 0) {
      how = absl::StrCat("signal ", a.term_signal());
    } else if (a.exit_code() >= 0) {
      how = absl::StrCat("exit ", a.exit_code());
    } else {
      how = "did not run";
    }
    std::string what = a.state() == v1::QUEUED ? "tried again" : InstanceStateName(a.state());
    std::string line = absl::StrCat("    #", a.attempt(), "  ",
                                    absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::FromUnixMillis(a.started_ms()),
                                                     absl::LocalTimeZone()),
                                    "  ", FormatDuration(std::max<int64_t>(0, a.finished_ms() - a.started_ms())), "  ",
                                    how, "  ", what);
    if (!a.error().empty()) absl::StrAppend(&line, ": ", EscapeLine(a.error().substr(0, a.error().find('\n'))));
    absl::PrintF("%s\n", line);
    if (a.stderr_tail().empty()) continue;
    std::vector<absl::string_view> lines = absl::StrSplit(a.stderr_tail(), '\n');
    if (!lines.empty() && lines.back().empty()) lines.pop_back();
    const size_t from = lines.size() > kShowStderrLines ? lines.size() - kShowStderrLines : 0;
    if (from > 0) absl::PrintF("        | ... (asflowctl logs %d %s ... prints all %d kept lines)\n", inst.run_id(),
                               inst.task(), lines.size());
    for (size_t i = from; i < lines.size(); ++i) absl::PrintF("        | %s\n", EscapeLine(lines[i]));
  }
}

}  // namespace

int ShowCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                const std::vector<std::string>& params, bool json) {
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  auto list = [&](const v1::ListTasksRequest& request, v1::ListTasksResponse* response) {
    grpc::ClientContext ctx;
    PrepareContext(client, &ctx);
    return (*stub)->ListTasks(&ctx, request, response);
  };
  v1::ListTasksRequest request;
  request.set_run_id(run_id);
  request.set_task(task);
  request.set_with_attempts(true);
  v1::ListTasksResponse response;
  // Every binding given whole: the one instance with exactly those.
  bool whole = true;
  for (const std::string& p : params) {
    size_t eq = p.find('=');
    if (eq == 0) return Fail(kExitUsage, absl::StrCat(p, ": expected name=value or a value"));
    if (eq == std::string::npos) {
      whole = false;
      continue;
    }
    (*request.mutable_params())[p.substr(0, eq)] = p.substr(eq + 1);
  }
  if (whole) {
    request.set_page_size(1);
    if (grpc::Status status = list(request, &response); !status.ok()) return FailRpc(status);
  }
  if (response.instances().empty()) {
    // Else a unique prefix: each name=text (or bare text) starts a binding.
    constexpr int kCandidates = 10;
    request.clear_params();
    request.set_page_size(kCandidates + 1);
    for (const std::string& p : params) request.add_match(p);
    if (grpc::Status status = list(request, &response); !status.ok()) return FailRpc(status);
    const std::string asked = absl::StrCat(task, "(", absl::StrJoin(params, ", "), ")");
    if (response.instances().empty()) {
      return Fail(kExitUsage, absl::StrCat("run ", run_id, " has no instance ", asked,
                                           " (asflowctl tasks ", run_id, " --task ", task, " lists them)"));
    }
    if (response.instances_size() > 1) {
      std::string candidates = absl::StrCat("run ", run_id, ": ",
                                      response.instances_size() > kCandidates ? "more than 10" : absl::StrCat(response.instances_size()),
                                      " instances match ", asked, "; say which:");
      for (int i = 0; i < std::min(response.instances_size(), kCandidates); ++i) {
        const v1::Instance& c = response.instances(i);
        absl::StrAppend(&candidates, "\n  ", Label(c), "  ", InstanceStateName(c.state()));
      }
      return Fail(kExitUsage, candidates);
    }
  }
  const v1::Instance& inst = response.instances(0);
  if (json) {
    PrintJsonLine(inst);
    return kExitOk;
  }
  auto when = [](int64_t ms) {
    return ms == 0 ? std::string("-")
                   : absl::FormatTime("%Y-%m-%d %H:%M:%E3S", absl::FromUnixMillis(ms), absl::LocalTimeZone());
  };
  absl::PrintF("%s in run %d (seq %d)\n", Label(inst), inst.run_id(), inst.seq());
  absl::PrintF("  state     %s\n", InstanceStateName(inst.state()));
  if (inst.made_by_run() != 0) {
    absl::PrintF("  made by   run %d, a different command for the same output (this task's did not run)\n",
                 inst.made_by_run());
  }
  absl::PrintF("  output    %s\n", inst.output().empty() ? "-" : EscapeLine(inst.output()));
  absl::PrintF("  attempts  %d\n", inst.attempts());
  absl::PrintF("  started   %s\n", when(inst.started_ms()));
  absl::PrintF("  finished  %s\n", when(inst.finished_ms()));
  if (inst.started_ms() > 0 && inst.finished_ms() >= inst.started_ms()) {
    absl::PrintF("  duration  %s\n", FormatDuration(inst.finished_ms() - inst.started_ms()));
  }
  absl::PrintF("  written   %d bytes, %d lines\n", inst.bytes(), inst.lines());
  if (!inst.error().empty()) {
    absl::PrintF("  error:\n");
    for (absl::string_view line : absl::StrSplit(inst.error(), '\n')) absl::PrintF("    %s\n", EscapeLine(line));
  }
  PrintAttempts(inst);
  return kExitOk;
}

namespace {

// "task(k=v, ...)" of a reset target.
std::string TargetLabel(const v1::ResetTarget& target) {
  v1::Instance inst;
  inst.set_task(target.task());
  *inst.mutable_params() = target.params();
  return Label(inst);
}

// Asks on the terminal; true for an answer starting with y or Y.
bool Confirm(const std::string& question) {
  absl::FPrintF(stderr, "%s [y/N] ", question);
  std::fflush(stderr);
  char answer[16] = {0};
  if (fgets(answer, sizeof(answer), stdin) == nullptr) return false;
  return answer[0] == 'y' || answer[0] == 'Y';
}

}  // namespace

int ResetCommand(const ClientOptions& client, const ResetCommandOptions& options) {
  v1::ResetTasksRequest request;
  request.set_run_id(options.run_id);
  request.set_task(options.task);
  if (!options.path.empty()) {
    std::string path = options.path[0] == '/' ? options.path : absl::StrCat(Cwd(), "/", options.path);
    // The output itself usually does not exist (that is why it is being
    // reset), so resolve its directory only.
    size_t slash = path.rfind('/');
    auto dir = RealPath(path.substr(0, slash == 0 ? 1 : slash));
    if (!dir.ok()) return Fail(kExitUsage, absl::StrCat("--path ", dir.status().message()));
    request.set_path(absl::StrCat(*dir == "/" ? "" : *dir, "/", path.substr(slash + 1)));
  }
  // A run or a path names its workspace; a task name alone means this
  // workspace's instances unless told otherwise.
  const bool scoped = options.run_id == 0 && options.path.empty() && !options.all_workspaces;
  if (scoped) request.set_workspace(Cwd());
  for (const std::string& s : options.states) {
    v1::InstanceState state;
    if (!v1::InstanceState_Parse(absl::AsciiStrToUpper(s), &state) ||
        (state != v1::SUPPRESSED && state != v1::FAILED)) {
      return Fail(kExitUsage, absl::StrCat("--state ", s, ": expected suppressed or failed"));
    }
    request.add_states(state);
  }
  auto stub = Stub(client, client.server.empty());
  if (!stub.ok()) return Fail(kExitUnavailable, stub.status().message());
  auto call = [&](const v1::ResetTasksRequest& req, v1::ResetTasksResponse* response) {
    grpc::ClientContext ctx;
    PrepareContext(client, &ctx);
    return (*stub)->ResetTasks(&ctx, req, response);
  };
  // First what would be reset; then only the runs seen (and confirmed).
  v1::ResetTasksRequest preview = request;
  preview.set_dry_run(true);
  v1::ResetTasksResponse planned;
  if (grpc::Status status = call(preview, &planned); !status.ok()) return FailRpc(status);
  if (planned.reset() == 0) {
    absl::PrintF("nothing to reset: no suppressed or failed instance matched%s\n",
                 scoped ? absl::StrCat(" in ", request.workspace()) : "");
    if (scoped) {
      // Say where they are, without touching them.
      preview.clear_workspace();
      v1::ResetTasksResponse elsewhere;
      if (call(preview, &elsewhere).ok() && elsewhere.reset() > 0) {
        absl::PrintF("(%d matched in %d other workspace%s: asflowctl reset --all-workspaces ... lists them)\n",
                     elsewhere.reset(), elsewhere.workspaces_size(), elsewhere.workspaces_size() == 1 ? "" : "s");
      }
    }
    return kExitOk;
  }
  if (planned.run_ids_size() > 1 && !options.yes) {
    absl::PrintF("this resets %d instance%s in %d runs and %d workspace%s:\n", planned.reset(),
                 planned.reset() == 1 ? "" : "s", planned.run_ids_size(), planned.workspaces_size(),
                 planned.workspaces_size() == 1 ? "" : "s");
    for (const v1::ResetTarget& t : planned.targets()) {
      absl::PrintF("  run %-5d %-10s %-40s %s/%s\n", t.run_id(), InstanceStateName(t.state()), TargetLabel(t),
                   EscapeLine(t.workspace()), EscapeLine(t.output()));
    }
    if (planned.reset() > planned.targets_size()) {
      absl::PrintF("  ... and %d more\n", planned.reset() - planned.targets_size());
    }
    std::fflush(stdout);
    if (!isatty(STDIN_FILENO)) {
      return Fail(kExitUsage, "not resetting without a terminal to ask on: pass --yes to reset them");
    }
    if (!Confirm("reset them?")) {
      absl::PrintF("nothing reset\n");
      return kExitUsage;
    }
  }
  for (int64_t id : planned.run_ids()) request.add_only_runs(id);
  v1::ResetTasksResponse response;
  if (grpc::Status status = call(request, &response); !status.ok()) return FailRpc(status);
  if (response.reset() == 0) {
    absl::PrintF("nothing to reset: no suppressed or failed instance matched\n");
  } else {
    absl::PrintF("reset %d instance%s; the next run runs %s again\n", response.reset(),
                 response.reset() == 1 ? "" : "s", response.reset() == 1 ? "it" : "them");
  }
  return kExitOk;
}

void InstallInterruptHandler(const ClientOptions& client) {
  {
    absl::MutexLock lock(&TheInterrupt().mu);
    TheInterrupt().client = client;
  }
  struct termios modes;
  if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &modes) == 0) {
    // Ctrl-C would echo "^C" into the live view: not while asflowctl runs.
    TermiosAtStart() = modes;
    std::atexit(RestoreTerminal);
    modes.c_lflag &= ~ECHOCTL;
    tcsetattr(STDIN_FILENO, TCSANOW, &modes);
  }
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) == 0) OnInterrupt();
    }
  }).detach();
}

namespace {

// A path that stays below the current directory (a workspace's outputs) is
// opened below it without following any symlink, as the daemon writes
// them; any other path is the user's explicit choice and opened as given.
absl::Status CatOne(const std::string& cwd, const std::string& path) {
  std::string rel = path;
  if (!path.empty() && path[0] == '/') rel = PathIsUnder(path, cwd) && path != cwd ? path.substr(cwd.size() + 1) : "";
  absl::StatusOr<std::string> normal = NormalizeOutputPath(rel);
  if (rel.empty() || !normal.ok()) return CopyDecompressed(path, STDOUT_FILENO);
  absl::StatusOr<UniqueFd> root = OpenRoot(cwd);
  if (!root.ok()) return root.status();
  absl::StatusOr<UniqueFd> file = OpenFileBeneath(root->get(), cwd, *normal);
  if (!file.ok()) return file.status();
  absl::StatusOr<std::unique_ptr<Decoder>> decoder = Decoder::FromFd(std::move(*file), path);
  if (!decoder.ok()) return decoder.status();
  return CopyDecompressed(**decoder, path, STDOUT_FILENO);
}

}  // namespace

int CatCommand(const std::vector<std::string>& paths) {
  const std::string cwd = Cwd();
  for (const std::string& path : paths) {
    if (absl::Status s = CatOne(cwd, path); !s.ok()) return Fail(kExitUsage, s.message());
  }
  return kExitOk;
}

int DaemonStopCommand(const ClientOptions& client, bool now) {
  auto stub = Stub(client, false);
  if (!stub.ok()) {
    absl::PrintF("asflowd is not running (%s)\n", stub.status().message());
    return kExitOk;
  }
  grpc::ClientContext ctx;
  PrepareContext(client, &ctx);
  v1::ShutdownRequest request;
  request.set_now(now);
  v1::ShutdownResponse response;
  grpc::Status status = (*stub)->Shutdown(&ctx, request, &response);
  if (!status.ok()) return FailRpc(status);
  if (!client.server.empty()) {
    absl::PrintF("asflowd is stopping\n");
    return kExitOk;
  }
  // Wait until the socket is gone, so a following start finds it free:
  // running instances may take the daemon's --stop-grace to finish.
  struct stat st;
  const absl::Time start = absl::Now();
  bool told = false;
  while (stat(client.socket.c_str(), &st) == 0) {
    absl::Duration waited = absl::Now() - start;
    if (waited > absl::Minutes(10)) {
      absl::PrintF("asflowd is still stopping after %s\n", absl::FormatDuration(waited));
      return kExitUnavailable;
    }
    if (!told && waited > absl::Seconds(1)) {
      absl::PrintF("waiting for running instances to finish (`asflowctl daemon stop --now` kills them)\n");
      std::fflush(stdout);
      told = true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  absl::PrintF("asflowd stopped\n");
  return kExitOk;
}

int DaemonStatusCommand(const ClientOptions& client) {
  auto stub = Stub(client, false);
  if (!stub.ok()) {
    absl::PrintF("asflowd is not running (%s)\n", stub.status().message());
    return kExitUnavailable;
  }
  absl::PrintF("asflowd is running on %s\n", client.server.empty() ? "unix:" + client.socket : client.server);
  return kExitOk;
}

}  // namespace asflow
