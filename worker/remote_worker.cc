#include "worker/remote_worker.h"

#include <sys/stat.h>
#include <unistd.h>

#include <deque>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "asflow/v1/worker.grpc.pb.h"
#include "common/paths.h"
#include "exec/builtins.h"
#include "grpcpp/create_channel.h"
#include "rpc/status.h"
#include "spdlog/spdlog.h"
#include "exec/protocol.h"
#include "exec/subprocess.h"

namespace asflow {
namespace {

// Largest output message: well under gRPC's 4 MiB default and the
// daemon's limit, large enough that per-message cost does not matter.
constexpr size_t kChunkBytes = 256 * 1024;

}  // namespace

bool IsRefusal(const absl::Status& status) {
  return absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status) ||
         absl::IsInvalidArgument(status) || absl::IsUnimplemented(status);
}

struct RemoteWorker::Assignment {
  v1::Assignment spec;
  Canceller canceller;
};

// One Connect stream. Writes come from the slot threads and the
// supervisor, so they are serialised by write_mu; the other fields are
// guarded by the worker's mu_.
struct RemoteWorker::Session {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::DaemonMessage>> stream;
  int64_t id = 0;
  absl::Duration lease = absl::Seconds(10);
  absl::Duration heartbeat = absl::Seconds(3);

  absl::Mutex write_mu;
  bool write_closed = false;  // guarded by write_mu

  bool ended = false;    // the reader saw the end of the stream
  bool closing = false;  // being torn down: slots take nothing more from it
  absl::Time last_recv;
  std::deque<std::shared_ptr<Assignment>> queue;                    // not started yet
  absl::flat_hash_map<int64_t, std::shared_ptr<Assignment>> open;  // queued or running
  int running = 0;

  bool Write(const v1::WorkerMessage& message) {
    absl::MutexLock lock(&write_mu);
    if (write_closed) return false;
    if (!stream->Write(message)) write_closed = true;
    return !write_closed;
  }
  // A heartbeat: skipped while another write holds the stream (a write
  // blocked on flow control must not stop the supervisor's lease checks).
  void TryWrite(const v1::WorkerMessage& message) {
    if (!write_mu.TryLock()) return;
    if (!write_closed && !stream->Write(message)) write_closed = true;
    write_mu.Unlock();
  }
  void WritesDone() {
    absl::MutexLock lock(&write_mu);
    if (!write_closed) stream->WritesDone();
    write_closed = true;
  }
};

RemoteWorker::RemoteWorker(RemoteWorkerOptions options) : options_(std::move(options)) {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  hostname_ = host;
  name_ = options_.name.empty() ? absl::StrCat(hostname_, ":", getpid()) : options_.name;
}

RemoteWorker::~RemoteWorker() {
  {
    absl::MutexLock lock(&mu_);
    quit_slots_ = true;
  }
  for (auto& t : slots_) t.join();
}

void RemoteWorker::RequestDrain() {
  absl::MutexLock lock(&mu_);
  if (!draining_) {
    draining_ = true;
    drain_deadline_ = absl::Now() + options_.drain_grace;
    spdlog::info("draining: no new instances; waiting up to {} for the running ones",
                 absl::FormatDuration(options_.drain_grace));
  } else if (!stop_now_) {
    stop_now_ = true;
    spdlog::info("stopping now: running instances are handed back to asflowd");
  }
}

absl::Status RemoteWorker::Run() {
  // Unreadable TLS files are a configuration error, not worth retrying.
  auto creds = ChannelCredentialsFor(options_.connect);
  if (!creds.ok()) return absl::InvalidArgumentError(creds.status().message());
  if (absl::Status s = MakeDirs(options_.scratch_dir, 0700); !s.ok()) return s;
  for (int i = 0; i < options_.slots; ++i) slots_.emplace_back([this] { SlotLoop(); });
  absl::Duration backoff = options_.min_backoff;
  absl::Status result = absl::OkStatus();
  for (;;) {
    bool welcomed = false;
    absl::Status status = Serve(*creds, &welcomed);
    if (welcomed) backoff = options_.min_backoff;
    absl::MutexLock lock(&mu_);
    if (draining_ || stop_now_) break;
    if (IsRefusal(status)) {
      // The daemon says nothing about tokens (no detail leaked); we can.
      absl::string_view why = absl::IsUnauthenticated(status) ? "missing or wrong token (--token-file)"
                                                               : status.message();
      result = absl::Status(status.code(), absl::StrCat("asflowd at ", options_.connect.server,
                                                        " refused this worker: ", why));
      break;
    }
    spdlog::warn("{}; reconnecting in {}",
                 welcomed ? absl::StrCat("session ended: ", status.ToString())
                          : absl::StrCat("cannot join ", options_.connect.server, ": ", status.ToString()),
                 absl::FormatDuration(backoff));
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return draining_ || stop_now_; };
    if (mu_.AwaitWithTimeout(absl::Condition(&wake), backoff)) break;
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
  {
    absl::MutexLock lock(&mu_);
    quit_slots_ = true;
  }
  for (auto& t : slots_) t.join();
  slots_.clear();
  RemoveTree(options_.scratch_dir).IgnoreError();
  return result;
}

absl::Status RemoteWorker::Serve(const std::shared_ptr<grpc::ChannelCredentials>& creds, bool* welcomed) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  auto channel = grpc::CreateCustomChannel(options_.connect.server, creds, args);
  auto stub = v1::WorkerService::NewStub(channel);

  auto session = std::make_shared<Session>();
  PrepareContext(options_.connect, &session->ctx);
  session->stream = stub->Connect(&session->ctx);
  v1::WorkerMessage hello_message;
  v1::WorkerHello& hello = *hello_message.mutable_hello();
  hello.add_pools(options_.pool);
  hello.set_slots(options_.slots);
  hello.set_hostname(hostname_);
  hello.set_version(kAsflowVersion);
  hello.set_name(name_);
  hello.add_handlers(kBuiltinNoop);
  hello.add_handlers(kBuiltinEcho);
  v1::DaemonMessage message;
  if (!session->stream->Write(hello_message) || !session->stream->Read(&message)) {
    return FromGrpcStatus(session->stream->Finish());
  }
  if (!message.has_welcome()) {
    session->ctx.TryCancel();
    session->stream->Finish();
    return absl::InternalError("asflowd did not answer hello with welcome");
  }
  *welcomed = true;
  session->id = message.welcome().session_id();
  session->lease = absl::Milliseconds(std::max<int64_t>(300, message.welcome().lease_ms()));
  session->heartbeat = absl::Milliseconds(std::max<int64_t>(100, message.welcome().heartbeat_ms()));
  spdlog::info("joined asflowd {} at {} as {} (session {}, pool '{}', {} slots, lease {})",
               message.welcome().daemon_version(), options_.connect.server, name_, session->id,
               options_.pool, options_.slots, absl::FormatDuration(session->lease));
  {
    absl::MutexLock lock(&mu_);
    session->last_recv = absl::Now();
    current_ = session;
  }

  std::thread reader([this, session] {
    v1::DaemonMessage in;
    while (session->stream->Read(&in)) {
      absl::MutexLock lock(&mu_);
      session->last_recv = absl::Now();
      if (in.has_assign()) {
        auto a = std::make_shared<Assignment>();
        a->spec = std::move(*in.mutable_assign());
        session->open[a->spec.id()] = a;
        session->queue.push_back(std::move(a));
      } else if (in.has_cancel()) {
        auto it = session->open.find(in.cancel().id());
        if (it != session->open.end()) it->second->canceller.Cancel();
      }
    }
    absl::MutexLock lock(&mu_);
    session->ended = true;
  });

  // Supervise: heartbeats, the daemon's lease, drain and stop.
  bool drain_sent = false;
  absl::Time next_beat = absl::Now();
  for (;;) {
    absl::Time now = absl::Now();
    if (now >= next_beat) {
      v1::WorkerMessage beat;
      beat.mutable_heartbeat()->set_sent_ms(absl::ToUnixMillis(now));
      session->TryWrite(beat);
      next_beat = now + session->heartbeat;
    }
    mu_.Lock();
    auto wake = [this, &session, &drain_sent]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return session->ended || stop_now_ || (draining_ && !drain_sent) ||
             (draining_ && session->open.empty());
    };
    mu_.AwaitWithTimeout(absl::Condition(&wake), std::max(next_beat - absl::Now(), absl::ZeroDuration()));
    now = absl::Now();
    bool ended = session->ended;
    bool silent = now - session->last_recv > session->lease;
    bool send_drain = draining_ && !drain_sent;
    bool drained = draining_ && session->open.empty();
    bool give_up = stop_now_ || (draining_ && now >= drain_deadline_);
    size_t open = session->open.size();
    mu_.Unlock();
    if (ended) break;
    if (silent) {
      spdlog::warn("nothing from asflowd for {} (lease {}): dropping the session",
                   absl::FormatDuration(absl::Trunc(now - session->last_recv, absl::Milliseconds(1))),
                   absl::FormatDuration(session->lease));
      session->ctx.TryCancel();
      break;
    }
    if (send_drain) {
      v1::WorkerMessage drain;
      drain.mutable_drain()->set_reason("asflow-worker got SIGTERM");
      session->Write(drain);
      drain_sent = true;
    }
    if (drained) {
      // Nothing open: say goodbye; the daemon ends the stream with OK.
      session->WritesDone();
      reader.join();
      break;
    }
    if (give_up) {
      spdlog::warn("handing {} running instances back to asflowd", open);
      session->ctx.TryCancel();
      break;
    }
  }

  // The stream is over (or being cancelled): whatever is still open here
  // the daemon has queued again. Stop the reader first so that no
  // assignment arrives after the sweep, then kill what runs and wait for
  // the slots.
  {
    absl::MutexLock lock(&mu_);
    session->closing = true;
  }
  session->ctx.TryCancel();
  if (reader.joinable()) reader.join();
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, a] : session->open) a->canceller.Cancel();
    session->queue.clear();
    auto idle = [&session]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return session->running == 0; };
    mu_.Await(absl::Condition(&idle));
    current_.reset();
  }
  return FromGrpcStatus(session->stream->Finish());
}

void RemoteWorker::SlotLoop() {
  for (;;) {
    std::shared_ptr<Session> session;
    std::shared_ptr<Assignment> assignment;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return quit_slots_ || (current_ != nullptr && !current_->closing && !current_->queue.empty());
      };
      mu_.Await(absl::Condition(&ready));
      if (quit_slots_) return;
      session = current_;
      assignment = std::move(session->queue.front());
      session->queue.pop_front();
      ++session->running;
    }
    RunAssignment(*session, *assignment);
    absl::MutexLock lock(&mu_);
    session->open.erase(assignment->spec.id());
    --session->running;
    // Let go of the session before Serve can see it idle: Serve holds the
    // last reference and tears the stream down itself, not a slot thread
    // after Serve has returned (TSan saw that teardown drop the channel's
    // last reference inside libgrpc++, where it cannot see the hand-off).
    session.reset();
  }
}

void RemoteWorker::RunAssignment(Session& session, Assignment& a) {
  const v1::Assignment& spec = a.spec;
  spdlog::debug("assignment {}: {}", spec.id(), spec.label());
  int64_t sent = 0;
  auto emit = [&](absl::string_view data) -> absl::Status {
    if (!spec.wants_output()) return absl::OkStatus();
    while (!data.empty()) {
      absl::string_view piece = data.substr(0, kChunkBytes);
      data.remove_prefix(piece.size());
      v1::WorkerMessage message;
      message.mutable_output()->set_id(spec.id());
      message.mutable_output()->set_data(piece.data(), piece.size());
      if (!session.Write(message)) return absl::UnavailableError("the stream to asflowd closed");
      sent += piece.size();
    }
    return absl::OkStatus();
  };
  SubprocessResult result;
  std::string dir;
  if (!spec.handler().empty()) {
    if (spec.handler() == kBuiltinNoop) {
      result.exit_code = 0;
    } else if (spec.handler() == kBuiltinEcho) {
      result.exit_code = 0;
      std::string line = absl::StrCat(spec.params_json(), "\n");
      result.output_status = emit(line);
      result.stdout_bytes = line.size();
    } else {
      result.spawn_status = absl::NotFoundError(
          absl::StrCat("handler '", spec.handler(), "' is not offered by worker ", name_));
    }
  } else {
    dir = absl::StrCat(options_.scratch_dir, "/", session.id, "-", spec.id());
    SubprocessSpec process;
    process.argv.assign(spec.argv().begin(), spec.argv().end());
    if (mkdir(dir.c_str(), 0700) == 0) {
      process.cwd = dir;
    } else {
      result.spawn_status = absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
    }
    std::vector<std::string> env(spec.env().begin(), spec.env().end());
    env.push_back(absl::StrCat("ASFLOW_WORKER=", name_));
    env.push_back(absl::StrCat("ASFLOW_SCRATCH=", dir));
    process.env = MergeEnvironment(env);
    if (spec.timeout_ms() > 0) process.timeout = absl::Milliseconds(spec.timeout_ms());
    process.kill_grace = absl::Milliseconds(spec.kill_grace_ms());
    if (spec.stderr_tail_bytes() > 0) process.stderr_tail_bytes = static_cast<size_t>(spec.stderr_tail_bytes());
    // Live, for asflowctl logs -f; a closed stream ends the run through
    // stdout's next write.
    process.on_stderr = [&](absl::string_view data) {
      while (!data.empty()) {
        absl::string_view piece = data.substr(0, kChunkBytes);
        data.remove_prefix(piece.size());
        v1::WorkerMessage message;
        message.mutable_output()->set_id(spec.id());
        message.mutable_output()->set_stderr(piece.data(), piece.size());
        if (!session.Write(message)) return;
      }
    };
    if (result.spawn_status.ok()) result = RunSubprocess(process, emit, &a.canceller);
  }
  v1::WorkerMessage done;
  *done.mutable_result() = ResultToProto(result);
  done.mutable_result()->set_id(spec.id());
  done.mutable_result()->set_stdout_bytes(spec.wants_output() ? sent : result.stdout_bytes);
  session.Write(done);
  if (!dir.empty()) {
    if (absl::Status s = RemoveTree(dir); !s.ok()) spdlog::warn("{}", std::string(s.message()));
  }
  spdlog::debug("assignment {} done: {}", spec.id(), result.Describe());
}

}  // namespace asflow
