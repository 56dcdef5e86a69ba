#include "server/server.h"

#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/paths.h"
#include "server/call_gate.h"
#include "common/spec_parser.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"

namespace asflow {
namespace {

// True if something accepts connections on the unix socket at `path`.
bool SocketAnswers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const ServerOptions& options) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->options_ = options;
  if (options.socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("socket path too long: ", options.socket_path));
  }
  if (absl::Status s = MakeDirs(DirName(options.state_path), 0700); !s.ok()) return s;
  if (absl::Status s = MakeDirs(DirName(options.socket_path), 0700); !s.ok()) return s;

  // One daemon per state file.
  std::string lock_path = options.state_path + ".lock";
  d->lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->lock_fd_ < 0) {
    return absl::InternalError(absl::StrCat("open ", lock_path, ": ", strerror(errno)));
  }
  if (flock(d->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("another asflowd is using ", options.state_path, " (", lock_path, " is locked)"));
  }
  // The lock file holds the daemon's PID, for scripts and tests.
  std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(d->lock_fd_, 0) != 0 || pwrite(d->lock_fd_, pid.data(), pid.size(), 0) < 0) {
    return absl::InternalError(absl::StrCat("write ", lock_path, ": ", strerror(errno)));
  }
  if (SocketAnswers(options.socket_path)) {
    return absl::AlreadyExistsError(
        absl::StrCat("another asflowd is listening on ", options.socket_path));
  }
  unlink(options.socket_path.c_str());  // stale socket of a crashed daemon

  std::vector<std::string> roots;
  for (const std::string& root : options.allowed_roots) {
    auto real = RealPath(root);
    if (!real.ok()) return absl::InvalidArgumentError(absl::StrCat("--allow-root ", real.status().message()));
    roots.push_back(*real);
  }
  std::vector<std::string> temp_roots;
  if (roots.empty()) {
    auto home = RealPath(HomeDir());
    if (!home.ok()) return home.status();
    roots.push_back(*home);
    // The user's own temporary directories too (tests' tmp_path, scratch
    // work): see SchedulerOptions::user_temp_roots.
    const char* tmpdir = getenv("TMPDIR");
    for (const std::string& dir : {std::string(tmpdir != nullptr ? tmpdir : ""), std::string("/tmp"),
                                  std::string("/var/tmp"), std::string("/dev/shm")}) {
      if (dir.empty()) continue;
      auto real = RealPath(dir);
      if (real.ok() && std::find(temp_roots.begin(), temp_roots.end(), *real) == temp_roots.end()) {
        temp_roots.push_back(*real);
      }
    }
  }

  StoreOptions store_options;
  // Backpressure: the scheduler waits for the writer rather than queueing
  // without bound. A lagging writer (W3: 100,000 no-op instances) then
  // costs at most ~2 MB of queued writes, and it still commits thousands of
  // rows per transaction. Measured on W3 (RSS above baseline per instance,
  // 3 interleaved rounds): 262,144 -> 687-760 B (the queue reached 60,000+
  // writes), 16,384 -> 393-400 B, 8,192 -> 345-351 B, 4,096 -> 306-312 B,
  // the fan-out equally fast (1.1-1.4 s) with each.
  store_options.max_pending = 4096;
  auto store = Store::Open(options.state_path, store_options);
  if (!store.ok()) return store.status();
  d->store_ = std::move(*store);
  d->hub_ = std::make_unique<EventHub>();
  // Counters for /metrics, from every event on.
  d->run_metrics_ = std::make_unique<RunMetrics>(absl::Now());
  d->hub_->AddObserver([m = d->run_metrics_.get()](const v1::Event& event) { m->Observe(event); });

  int cpus = std::max(1u, std::thread::hardware_concurrency());
  SchedulerOptions sched;
  sched.allowed_roots = roots;
  sched.user_temp_roots = temp_roots;
  sched.local_slots = options.pool_size > 0 ? options.pool_size : std::max(8, 4 * cpus);
  sched.default_limit = options.default_limit > 0 ? options.default_limit : cpus;
  sched.kill_grace = absl::Seconds(options.kill_grace_seconds);
  sched.stderr_tail_bytes = static_cast<size_t>(std::max<int64_t>(0, options.stderr_tail_bytes));
  d->logs_ = std::make_unique<LogHub>(sched.stderr_tail_bytes);
  for (const std::string& flag : options.throttle) {
    auto keys = ParseThrottleFlag(flag);
    if (!keys.ok()) return keys.status();
    for (auto& [name, key] : *keys) {
      if (sched.throttle.count(name) > 0) {
        return absl::InvalidArgumentError(absl::StrCat("--throttle: key '", name, "' is given twice"));
      }
      sched.throttle[name] = key;
    }
  }
  AtomicFileOptions file_options;
  file_options.sync = options.sync_outputs;
  WorkerHubOptions worker_options;
  worker_options.lease = absl::Seconds(options.worker_lease_seconds);
  d->fs_ = std::make_unique<RealWorkspaceFs>(file_options);
  d->scheduler_ = std::make_unique<Scheduler>(sched);
  d->local_pool_ = std::make_unique<LocalPool>(sched.local_slots, file_options, d->scheduler_->runner_events());
  d->workers_ = std::make_unique<WorkerHub>(worker_options, file_options, d->scheduler_->runner_events());
  SessionHubOptions session_options;
  session_options.reattach = sched.code_reattach;
  d->sessions_ = std::make_unique<SessionHub>(session_options, file_options, d->scheduler_->runner_events());
  d->sessions_->SetOpsSink(d->scheduler_->session_ops());
  SchedulerDeps deps;
  deps.store = d->store_.get();
  deps.hub = d->hub_.get();
  deps.clock = &d->clock_;
  deps.fs = d->fs_.get();
  deps.local = d->local_pool_.get();
  deps.remote = d->workers_.get();
  deps.code = d->sessions_.get();
  deps.logs = d->logs_.get();
  deps.send_to_session = [s = d->sessions_.get()](int64_t session, v1::SessionEvent event) {
    s->Send(session, std::move(event));
  };
  d->scheduler_->SetDeps(deps);
  if (absl::Status s = d->scheduler_->Start(); !s.ok()) return s;

  ScheduleDeps schedule_deps;
  schedule_deps.store = d->store_.get();
  schedule_deps.clock = &d->clock_;
  schedule_deps.submit = [sched = d->scheduler_.get()](v1::SubmitFlowRequest request,
                                                       std::function<void(absl::StatusOr<int64_t>)> done) {
    sched->Submit(std::move(request), [done = std::move(done)](absl::StatusOr<Scheduler::Submitted> run) {
      if (!run.ok()) return done(run.status());
      done(run->run_id);
    });
  };
  schedule_deps.check_workspace = [sched = d->scheduler_.get()](v1::SubmitFlowRequest* request) {
    return sched->CheckWorkspace(request);
  };
  schedule_deps.run_state = [store = d->store_.get()](int64_t id) -> absl::StatusOr<v1::RunState> {
    auto rec = store->GetRun(id);
    if (!rec.ok()) return rec.status();
    return rec->run.state();
  };
  d->schedules_ = std::make_unique<Schedules>(std::move(schedule_deps));
  if (absl::Status s = d->schedules_->Load(); !s.ok()) return s;
  d->schedules_->Start();
  RetentionOptions retention;
  auto keep = ParseKeepRuns(options.keep_runs);
  if (!keep.ok()) return keep.status();
  retention.keep = *keep;
  retention.every = absl::Seconds(options.prune_every_seconds);
  d->retention_ = std::make_unique<Retention>(d->store_.get(), &d->clock_, retention);
  d->retention_->Start();

  auto auth = TokenCheck::Load(options.listen.token_file);
  if (!auth.ok()) return auth.status();
  d->auth_ = std::move(*auth);
  auto worker_auth = TokenCheck::Load(options.listen.worker_token_file.empty() ? options.listen.token_file
                                                                               : options.listen.worker_token_file);
  if (!worker_auth.ok()) return worker_auth.status();
  d->worker_auth_ = std::move(*worker_auth);
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials;
  if (!options.listen.address.empty()) {
    auto creds = ListenCredentials(options.listen,
                                   std::make_shared<CallGate>(d->auth_->token(), d->worker_auth_->token()));
    if (!creds.ok()) return creds.status();
    tcp_credentials = *creds;
  }
  Daemon* raw = d.get();
  d->service_ = std::make_unique<FlowServiceImpl>(d->scheduler_.get(), d->store_.get(), d->hub_.get(), d->logs_.get(),
                                                  d->workers_.get(), d->sessions_.get(), d->auth_.get(),
                                                  [raw](bool now) { raw->RequestShutdown(now); });
  d->service_->set_max_watchers(options.max_watchers);
  d->service_->set_schedules(d->schedules_.get());
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("unix:", options.socket_path), grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (tcp_credentials != nullptr) {
    builder.AddListeningPort(options.listen.address, tcp_credentials, &tcp_port);
  }
  d->worker_service_ = std::make_unique<WorkerServiceImpl>(d->workers_.get(), d->worker_auth_.get());
  builder.RegisterService(d->service_.get());
  builder.RegisterService(d->worker_service_.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  // Streams one connection may hold open at once (Watch, sessions,
  // calls): bounds what one caller, authenticated or not, makes the
  // transport track.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 256);
  mode_t old_umask = umask(0077);  // the socket is born 0600
  d->server_ = builder.BuildAndStart();
  umask(old_umask);
  if (d->server_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on unix:", options.socket_path));
  }
  chmod(options.socket_path.c_str(), 0600);
  if (tcp_credentials != nullptr) {
    if (tcp_port == 0) {
      return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen.address));
    }
    std::string host = options.listen.address.substr(0, options.listen.address.rfind(':'));
    const ListenOptions& l = options.listen;
    spdlog::info("asflowd listening on tcp {}:{} ({}{}{}{})", host, tcp_port,
                 l.tls_cert.empty() ? "plaintext" : "TLS",
                 l.tls_client_ca.empty() ? "" : ", client certificate required",
                 l.token_file.empty() ? "" : ", client token required",
                 l.worker_token_file.empty() && l.token_file.empty() ? "" : ", worker token required");
  }
  if (!options.http.address.empty()) {
    HttpBackends http{d->scheduler_.get(), d->workers_.get(), d->store_.get(), d->hub_.get(),
                      d->run_metrics_.get(), d->auth_.get(), sched.local_slots};
    auto served = HttpServer::Start(options.http, options.listen, http);
    if (!served.ok()) return served.status();
    d->http_ = std::move(*served);
  }
  spdlog::info("asflowd listening on unix:{} (state {}, {} local slots, allowed roots: {}{}{})",
               options.socket_path, options.state_path, sched.local_slots, absl::StrJoin(roots, ", "),
               temp_roots.empty() ? "" : "; this user's private directories in ", absl::StrJoin(temp_roots, ", "));
  return d;
}

void Daemon::RequestShutdown(bool now) {
  absl::MutexLock lock(&stop_mu_);
  stop_requests_ += now ? 2 : 1;
}

void Daemon::Wait() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_mu_.Await(absl::Condition(
        +[](int* requests) { return *requests > 0; }, &stop_requests_));
  }
  // Nothing fires or prunes while the daemon stops.
  schedules_->Stop();
  retention_->Stop();
  Drain();
  spdlog::info("asflowd shutting down");
  if (http_ != nullptr) http_->Stop();  // its event streams end now
  // Worker sessions end now (their instances resume at the next start);
  // Watch streams are cancelled by the deadline; unary calls finish.
  workers_->Close();
  sessions_->Close();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  scheduler_->Stop();
  local_pool_.reset();  // joins its threads once their (cancelled) jobs end
  if (absl::Status s = store_->Flush(); !s.ok()) spdlog::error("store flush: {}", std::string(s.message()));
  unlink(options_.socket_path.c_str());
}

void Daemon::Drain() {
  const absl::Duration grace = absl::Seconds(options_.stop_grace_seconds);
  if (grace <= absl::ZeroDuration()) return;
  {
    absl::MutexLock lock(&stop_mu_);
    if (stop_requests_ > 1) return;  // asked to stop now
  }
  const absl::Time start = absl::Now();
  spdlog::info("asflowd stopping: running instances get up to {} to finish; nothing new starts "
               "(a second SIGTERM or `asflowctl daemon stop` ends the wait)",
               absl::FormatDuration(grace));
  scheduler_->Drain([this] {
    absl::MutexLock lock(&stop_mu_);
    drained_ = true;
  });
  absl::MutexLock lock(&stop_mu_);
  auto over = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(stop_mu_) { return drained_ || stop_requests_ > 1; };
  stop_mu_.AwaitWithDeadline(absl::Condition(&over), start + grace);
  if (drained_) {
    spdlog::info("asflowd: running instances finished in {}", absl::FormatDuration(absl::Now() - start));
  } else {
    spdlog::warn("asflowd: {}; instances still running are killed and run again at the next start",
                 stop_requests_ > 1 ? "stop requested again" : "stop grace over");
  }
}

Daemon::~Daemon() {
  http_.reset();
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
  // Their threads end first: nothing fires or prunes from here on; a
  // fire's Submit answered on the scheduler thread ends with it.
  if (schedules_ != nullptr) schedules_->Stop();
  if (retention_ != nullptr) retention_->Stop();
  if (scheduler_ != nullptr) scheduler_->Stop();
  local_pool_.reset();
  workers_.reset();
  sessions_.reset();
  scheduler_.reset();
  schedules_.reset();
  retention_.reset();
  store_.reset();
  if (lock_fd_ >= 0) close(lock_fd_);
}

}  // namespace asflow
