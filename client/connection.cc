#include "client/connection.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/paths.h"
#include "common/small_file.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"

namespace asflow {
namespace {

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

// ASFLOW_DAEMON, else asflowd next to this binary (installed layout), else
// ../server/asflowd (build tree), else "asflowd" on PATH.
std::string FindDaemonBinary() {
  const char* env = getenv("ASFLOW_DAEMON");
  if (env != nullptr && *env != '\0') return env;
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string dir(self, n);
    dir = dir.substr(0, dir.rfind('/'));
    for (const std::string& candidate : {dir + "/asflowd", dir + "/../server/asflowd"}) {
      if (IsExecutable(candidate)) return candidate;
    }
  }
  return "asflowd";
}

std::string Tail(const std::string& path, size_t max_lines) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > max_lines) lines.erase(lines.begin());
  }
  std::string out;
  for (const auto& l : lines) absl::StrAppend(&out, "\n  ", l);
  return out;
}

// Starts `asflowd --socket SOCKET --config USER_CONFIG` detached from this process (own session,
// output appended to the log), so it outlives the client.
absl::Status StartDaemon(const std::string& socket) {
  std::string binary = FindDaemonBinary();
  std::string log = DaemonLogPath();
  if (absl::Status s = MakeDirs(log.substr(0, log.rfind('/')), 0700); !s.ok()) return s;
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  if (pid == 0) {
    setsid();
    if (fork() != 0) _exit(0);  // the grandchild is reparented to init
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    // The per-user configuration if there is one; never the system
    // daemon's /etc/asflow/asflowd.conf (`--config ""` reads no file).
    std::string config = UserDaemonConfigPath();
    if (access(config.c_str(), F_OK) != 0) config.clear();
    execlp(binary.c_str(), binary.c_str(), "--socket", socket.c_str(), "--config", config.c_str(),
           static_cast<char*>(nullptr));
    dprintf(2, "asflowctl: cannot run %s: %s\n", binary.c_str(), strerror(errno));
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return absl::OkStatus();
}

bool WaitConnected(const std::shared_ptr<grpc::Channel>& channel, std::chrono::milliseconds wait) {
  return channel->WaitForConnected(std::chrono::system_clock::now() + wait);
}

}  // namespace

std::string DaemonLogPath() { return DefaultLogPath(); }

absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(const ClientOptions& options, bool autostart) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // A Watch stream gets a batch about every 100 ms. With gRPC's default
  // flow control each batch also cost a BDP ping (and its ack, and a timer)
  // and a WINDOW_UPDATE part-way through, i.e. extra wake-ups of this
  // process, of gRPC's timer thread and of the daemon, per batch and per
  // watcher. A fixed window that holds many batches needs neither (50
  // `watch --json` consumers of W5: 0.71 -> 0.63 s of clients' CPU).
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  if (!options.server.empty()) {
    auto creds = ChannelCredentialsFor(options);
    if (!creds.ok()) return creds.status();
    auto channel = grpc::CreateCustomChannel(options.server, *creds, args);
    if (!WaitConnected(channel, std::chrono::seconds(5))) {
      return absl::UnavailableError(absl::StrCat("cannot reach asflowd at ", options.server));
    }
    return channel;
  }
  std::string target = absl::StrCat("unix:", options.socket);
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  struct stat st;
  bool socket_exists = stat(options.socket.c_str(), &st) == 0;
  if (socket_exists && WaitConnected(channel, std::chrono::seconds(2))) return channel;
  if (!autostart) {
    return absl::UnavailableError(absl::StrCat("no asflowd is listening on ", options.socket));
  }
  if (absl::Status s = StartDaemon(options.socket); !s.ok()) return s;
  // A fresh channel: the first one may be in reconnect backoff.
  for (int i = 0; i < 100; ++i) {
    if (stat(options.socket.c_str(), &st) == 0) {
      channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
      if (WaitConnected(channel, std::chrono::milliseconds(500))) return channel;
    } else {
      usleep(100 * 1000);
    }
  }
  return absl::UnavailableError(absl::StrCat("started asflowd but it did not come up on ",
                                             options.socket, "; last lines of ", DaemonLogPath(), ":",
                                             Tail(DaemonLogPath(), 10)));
}

}  // namespace asflow
