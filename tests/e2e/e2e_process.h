// Process helpers for the end-to-end tests: run a real binary with a given
// environment and working directory and capture its output, start one in the
// background, wait for conditions with a deadline, and inspect /proc.
// Not thread-safe; meant for single-threaded GoogleTest bodies.
#ifndef ASFLOW_TESTS_E2E_E2E_PROCESS_H_
#define ASFLOW_TESTS_E2E_E2E_PROCESS_H_

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace asflow::testing {

// ASFLOW_TEST_TIME_SCALE (a number >= 1, default 1): how many times slower
// than a plain build the binaries under test may be; scripts/test-tsan.sh
// sets it for ThreadSanitizer's slowdown. It multiplies how long a test
// waits for something that is to happen (WaitFor, WaitChild, RunProcess
// deadlines: the time before a test gives up, not a time it asserts) and,
// through ScaledSeconds, the upper bounds of the durations tests assert.
// Never a lower bound, nor a duration a test hands the daemon (a timeout,
// a backoff), unless that test says why. Unset, every bound is as written.
inline double TimeScale() {
  static const double scale = [] {
    const char *v = getenv("ASFLOW_TEST_TIME_SCALE");
    if (v == nullptr || *v == '\0') return 1.0;
    char *end = nullptr;
    double d = strtod(v, &end);
    if (*end != '\0' || !(d >= 1.0 && d <= 100.0)) {
      fprintf(stderr, "ASFLOW_TEST_TIME_SCALE=%s: expected a number from 1 to 100\n", v);
      abort();
    }
    return d;
  }();
  return scale;
}

// `d` times TimeScale(): a deadline for something expected to happen.
inline std::chrono::milliseconds Scaled(std::chrono::milliseconds d) {
  return std::chrono::milliseconds(static_cast<int64_t>(static_cast<double>(d.count()) * TimeScale()));
}

// `seconds` times TimeScale(): the upper bound of a duration a test asserts.
inline double ScaledSeconds(double seconds) { return seconds * TimeScale(); }

// What a finished command did. exit_code is the exit status, 128 + N if it
// died of signal N, or -1 if it outlived its timeout (it is then killed).
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  double seconds = 0;
};

inline std::string ReadAll(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// How to start a process: argv, the whole environment ("NAME=value"), the
// working directory and where stdout and stderr go ("" = /dev/null).
struct Launch {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  std::string stdout_path;
  std::string stderr_path;
};

// Forks and execs `launch` in its own process group. Returns the pid, or -1.
inline pid_t SpawnProcess(const Launch &launch) {
  std::vector<char *> argv;
  for (const std::string &a : launch.argv) argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char *> env;
  for (const std::string &e : launch.env) env.push_back(const_cast<char *>(e.c_str()));
  env.push_back(nullptr);
  const char *out = launch.stdout_path.empty() ? "/dev/null" : launch.stdout_path.c_str();
  const char *err = launch.stderr_path.empty() ? "/dev/null" : launch.stderr_path.c_str();
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpgid(0, 0);
  int in_fd = open("/dev/null", O_RDONLY);
  int out_fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int err_fd = strcmp(out, err) == 0 ? dup(out_fd) : open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (in_fd < 0 || out_fd < 0 || err_fd < 0) _exit(126);
  dup2(in_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  if (!launch.cwd.empty() && chdir(launch.cwd.c_str()) != 0) _exit(126);
  execve(argv[0], argv.data(), env.data());
  _exit(127);
}

// Reaps `pid` if it has exited and returns its exit code (128 + N for signal
// N); returns -2 while it still runs and -3 if it is not (or no longer) a
// child of this process.
inline int TryReap(pid_t pid) {
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r < 0 && errno == ECHILD) return -3;
  if (r != pid) return -2;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -2;
}

// Waits for our child `pid` to exit for up to `timeout` (Scaled); returns
// its exit code, -1 after killing its process group on timeout, or -3 if it
// was already reaped. Blocks in poll() on a pidfd, which becomes readable when
// the child exits.
inline int WaitChild(pid_t pid, std::chrono::milliseconds timeout) {
  int code = TryReap(pid);
  if (code != -2) return code;
  timeout = Scaled(timeout);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready;
    do {
      ready = poll(&p, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);
    close(pidfd);
    code = TryReap(pid);
    if (code != -2) return code;
  } else {
    // No pidfd (kernel < 5.3): wait without a deadline rather than kill.
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return -3;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// Runs `launch` to completion (stdout/stderr paths are used as scratch files
// and must be set) and returns what it did; killed after `timeout` (Scaled).
inline CommandResult RunProcess(const Launch &launch, std::chrono::milliseconds timeout) {
  CommandResult result;
  auto start = std::chrono::steady_clock::now();
  pid_t pid = SpawnProcess(launch);
  if (pid < 0) return result;
  result.exit_code = WaitChild(pid, timeout);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.out = ReadAll(launch.stdout_path);
  result.err = ReadAll(launch.stderr_path);
  return result;
}

// Polls `condition` every 20 ms until it holds or `timeout` (Scaled)
// passes.
inline bool WaitFor(const std::function<bool()> &condition, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + Scaled(timeout);
  while (true) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// The one-letter state of /proc/PID/stat ('R', 'S', 'Z', ...), or 0 if there
// is no such process.
inline char ProcessState(pid_t pid) {
  std::string stat = ReadAll("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return 0;
  return stat[paren + 2];
}

// True while `pid` exists and is not a zombie. Reaps it first if it is our
// child (or was re-parented to us as a subreaper).
inline bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  TryReap(pid);
  char state = ProcessState(pid);
  return state != 0 && state != 'Z';
}

inline std::string ProcessCmdline(pid_t pid) {
  std::string cmdline = ReadAll("/proc/" + std::to_string(pid) + "/cmdline");
  for (char &c : cmdline) {
    if (c == '\0') c = ' ';
  }
  return cmdline;
}

// Pids of live processes whose environment contains the entry `needle`
// ("NAME=value").
inline std::vector<pid_t> ProcessesWithEnv(const std::string &needle) {
  std::vector<pid_t> pids;
  DIR *dir = opendir("/proc");
  if (dir == nullptr) return pids;
  while (struct dirent *entry = readdir(dir)) {
    char *end = nullptr;
    long pid = strtol(entry->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == getpid()) continue;
    std::string env = ReadAll(std::string("/proc/") + entry->d_name + "/environ");
    size_t pos = 0;
    while (pos < env.size()) {
      size_t nul = env.find('\0', pos);
      if (nul == std::string::npos) nul = env.size();
      if (env.compare(pos, nul - pos, needle) == 0) {
        if (ProcessAlive(static_cast<pid_t>(pid))) pids.push_back(static_cast<pid_t>(pid));
        break;
      }
      pos = nul + 1;
    }
  }
  closedir(dir);
  return pids;
}

}  // namespace asflow::testing

#endif  // ASFLOW_TESTS_E2E_E2E_PROCESS_H_
