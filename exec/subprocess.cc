#include "exec/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/unique_fd.h"

extern char** environ;

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace asflow {
namespace {

constexpr int64_t kNever = INT64_MAX;
constexpr size_t kReadChunk = 256 * 1024;

// The calling thread's read buffer, reused by every Supervisor it runs (one
// at a time). A fresh zero-filled 256 KiB string per command was mmap'd,
// faulted in page by page and unmapped again: ~64 page faults per instance,
// most of the daemon's page faults in W1.
char* ThreadReadBuffer() {
  thread_local const std::unique_ptr<char[]> buffer(new char[kReadChunk]);
  return buffer.get();
}
// Stdout pipe capacity: a command streaming a large output blocks (and both
// sides switch) once per pipe-full; the default 64 KiB makes that ~16,000
// times per GB. Best effort: the kernel caps it at pipe-max-size.
constexpr int kStdoutPipeBytes = 1 << 20;
// After the leader exits and its group is killed, the pipes normally reach
// EOF within milliseconds. A process that left the group (setsid) may hold
// them open forever, so stop waiting for EOF after this long.
constexpr int64_t kDrainAfterExitNs = 1'000'000'000;
// Without pidfd_open (old kernels, seccomp), how often to check the leader.
constexpr int kLeaderPollMs = 20;
constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

int64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

int64_t SaturatingAdd(int64_t t, absl::Duration d) {
  const int64_t ns = absl::ToInt64Nanoseconds(d);
  if (ns <= 0) return t;
  return ns > kNever - t ? kNever : t + ns;
}

std::string ErrnoText(int err) { return strerror(err); }

absl::Status ErrnoStatus(int err, absl::string_view message) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::FailedPreconditionError(message);
  }
}

// Moves `fd` to a number >= 3 (keeping O_CLOEXEC) so that the dup2 calls onto
// 0, 1 and 2 in the child can never clobber one another, even when the daemon
// runs with a standard fd closed.
absl::Status MoveAboveStdio(UniqueFd* fd) {
  if (fd->get() >= 3) return absl::OkStatus();
  const int moved = fcntl(fd->get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) {
    return absl::InternalError(
        absl::StrCat("subprocess: fcntl(F_DUPFD_CLOEXEC): ", ErrnoText(errno)));
  }
  fd->Reset(moved);
  return absl::OkStatus();
}

absl::Status MakePipe(UniqueFd* read_end, UniqueFd* write_end) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError(
        absl::StrCat("subprocess: pipe2: ", ErrnoText(errno)));
  }
  read_end->Reset(fds[0]);
  write_end->Reset(fds[1]);
  if (absl::Status s = MoveAboveStdio(read_end); !s.ok()) return s;
  return MoveAboveStdio(write_end);
}

// Finds `name` in the absolute directories of `search_path`, like execvp but
// in the parent (execvp allocates, which is unsafe after fork in a threaded
// process).
absl::StatusOr<std::string> ResolveCommand(const std::string& name,
                                           const std::string& search_path) {
  if (name.empty()) {
    return absl::InvalidArgumentError("subprocess: empty command name");
  }
  if (name.find('/') != std::string::npos) return name;
  std::string path = search_path;
  if (path.empty()) {
    const char* env_path = getenv("PATH");
    path = env_path != nullptr && *env_path != '\0' ? env_path : kDefaultPath;
  }
  std::string not_executable;
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty() || dir[0] != '/') continue;
    std::string candidate = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(candidate.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (not_executable.empty()) not_executable = std::move(candidate);
  }
  if (!not_executable.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(name, ": ", not_executable, " is not executable"));
  }
  return absl::NotFoundError(absl::StrCat(name, ": command not found in PATH"));
}

// What the child writes to the report pipe when it cannot exec.
enum ChildStage : int { kStageSetup = 1, kStageChdir = 2, kStageExec = 3 };
struct ChildReport {
  int stage;
  int err;
};

// Everything the child needs, prepared before fork so that the child only
// makes async-signal-safe calls.
struct ChildSetup {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // nullptr: inherit
  int devnull;
  int stdout_w;
  int stderr_w;
  int report_w;
  pid_t parent;
  int max_fd;
  sigset_t empty_mask;
};

[[noreturn]] void ChildFail(const ChildSetup& s, int stage) {
  const ChildReport report{stage, errno};
  // One write under PIPE_BUF is atomic; nothing useful to do if it fails.
  ssize_t unused = write(s.report_w, &report, sizeof(report));
  (void)unused;
  _exit(127);
}

// Runs in the forked child: async-signal-safe calls only.
[[noreturn]] void RunChild(const ChildSetup& s) {
  // Handlers installed by the daemon are reset by execve, but ignored signals
  // (e.g. SIGPIPE) and the blocked mask would be inherited.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) sigaction(sig, &dfl, nullptr);
  if (sigprocmask(SIG_SETMASK, &s.empty_mask, nullptr) != 0) {
    ChildFail(s, kStageSetup);
  }
  if (setpgid(0, 0) != 0) ChildFail(s, kStageSetup);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(s, kStageSetup);
  // The parent may have died before prctl took effect.
  if (getppid() != s.parent) _exit(127);
  if (dup2(s.devnull, 0) < 0 || dup2(s.stdout_w, 1) < 0 ||
      dup2(s.stderr_w, 2) < 0) {
    ChildFail(s, kStageSetup);
  }
  // Fds opened by other threads without O_CLOEXEC must not leak. Marking
  // them close-on-exec (rather than closing) keeps report_w usable.
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    for (int fd = 3; fd < s.max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (s.cwd != nullptr && chdir(s.cwd) != 0) ChildFail(s, kStageChdir);
  execve(s.path, s.argv, s.envp);
  ChildFail(s, kStageExec);
}

// Returns false if `pid` cannot be waited for (ECHILD: the daemon set
// SIGCHLD to SIG_IGN or someone else reaped it).
bool WaitForPid(pid_t pid, int* status) {
  while (waitpid(pid, status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return true;
}

// A running child: pid (== pgid), pipe read ends, and a pidfd (or -1).
struct Child {
  pid_t pid = -1;
  UniqueFd stdout_r;
  UniqueFd stderr_r;
  UniqueFd pidfd;
};

absl::StatusOr<Child> Spawn(const SubprocessSpec& spec,
                            const std::string& path) {
  std::vector<char*> argv;
  argv.reserve(spec.argv.size() + 1);
  for (const std::string& arg : spec.argv) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  envp.reserve(spec.env.size() + 1);
  for (const std::string& kv : spec.env) {
    envp.push_back(const_cast<char*>(kv.c_str()));
  }
  envp.push_back(nullptr);

  UniqueFd devnull(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (devnull.get() < 0) {
    return absl::InternalError(
        absl::StrCat("subprocess: open /dev/null: ", ErrnoText(errno)));
  }
  if (absl::Status s = MoveAboveStdio(&devnull); !s.ok()) return s;
  Child child;
  UniqueFd stdout_w, stderr_w, report_r, report_w;
  for (auto [r, w] : {std::pair{&child.stdout_r, &stdout_w},
                      std::pair{&child.stderr_r, &stderr_w},
                      std::pair{&report_r, &report_w}}) {
    if (absl::Status s = MakePipe(r, w); !s.ok()) return s;
  }
  fcntl(child.stdout_r.get(), F_SETPIPE_SZ, kStdoutPipeBytes);

  ChildSetup setup;
  setup.path = path.c_str();
  setup.argv = argv.data();
  setup.envp = envp.data();
  setup.cwd = spec.cwd.empty() ? nullptr : spec.cwd.c_str();
  setup.devnull = devnull.get();
  setup.stdout_w = stdout_w.get();
  setup.stderr_w = stderr_w.get();
  setup.report_w = report_w.get();
  setup.parent = getpid();
  const long open_max = sysconf(_SC_OPEN_MAX);
  setup.max_fd =
      open_max > 0 ? static_cast<int>(std::min(open_max, 65536L)) : 65536;
  sigemptyset(&setup.empty_mask);

  // vfork: the child borrows the parent's memory until execve instead of
  // copying its page tables, which for a daemon with a large heap and many
  // threads is most of the cost of a spawn. The child only makes syscalls
  // (RunChild). All signals stay blocked across the vfork, as in glibc's
  // posix_spawn, so no handler can run in the child on borrowed memory;
  // RunChild resets the handlers before it unblocks them.
  sigset_t all_signals, saved_mask;
  sigfillset(&all_signals);
  pthread_sigmask(SIG_SETMASK, &all_signals, &saved_mask);
  const pid_t pid = vfork();
  if (pid == 0) RunChild(setup);
  const int vfork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr);
  if (pid < 0) {
    return absl::InternalError(
        absl::StrCat(spec.argv[0], ": vfork: ", ErrnoText(vfork_errno)));
  }

  child.pid = pid;
  stdout_w.Reset();
  stderr_w.Reset();
  report_w.Reset();
  devnull.Reset();

  // EOF on the report pipe means execve succeeded (it is O_CLOEXEC), so
  // setpgid has happened and the group exists before we ever signal it.
  ChildReport report;
  size_t got = 0;
  while (got < sizeof(report)) {
    const ssize_t n =
        read(report_r.get(), reinterpret_cast<char*>(&report) + got,
             sizeof(report) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > 0) {
    int status;
    WaitForPid(pid, &status);
    if (got < sizeof(report)) {
      return absl::InternalError(
          absl::StrCat(spec.argv[0], ": short report from the child"));
    }
    switch (report.stage) {
      case kStageChdir:
        return ErrnoStatus(report.err, absl::StrCat("chdir ", spec.cwd, ": ",
                                                    ErrnoText(report.err)));
      case kStageExec:
        return ErrnoStatus(
            report.err,
            path == spec.argv[0]
                ? absl::StrCat(path, ": ", ErrnoText(report.err))
                : absl::StrCat(spec.argv[0], ": ", ErrnoText(report.err), " (",
                               path, ")"));
      default:
        return absl::InternalError(absl::StrCat(
            spec.argv[0],
            ": setting up the child process: ", ErrnoText(report.err)));
    }
  }

  for (UniqueFd* fd : {&child.stdout_r, &child.stderr_r}) {
    fcntl(fd->get(), F_SETFL, fcntl(fd->get(), F_GETFL) | O_NONBLOCK);
  }
  // Lets poll wake up when the leader exits even while a grandchild keeps
  // the pipes open. Falls back to periodic checks if unavailable.
  child.pidfd.Reset(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  return child;
}

// Drives a spawned child to completion and fills `result`.
class Supervisor {
 public:
  Supervisor(const SubprocessSpec& spec, Child& child,
             absl::FunctionRef<absl::Status(absl::string_view)> on_stdout,
             Canceller* canceller, int64_t start, SubprocessResult* result)
      : spec_(spec),
        child_(child),
        on_stdout_(on_stdout),
        canceller_(canceller),
        result_(result),
        timeout_deadline_(SaturatingAdd(start, spec.timeout)),
        buffer_(ThreadReadBuffer()) {}

  void Run() {
    while (true) {
      const int64_t now = MonotonicNowNs();
      if (!leader_exited_) {
        if (!term_sent_ && now >= timeout_deadline_) {
          result_->timed_out = true;
          Terminate(now);
        }
        if (term_sent_ && !kill_sent_ && now >= kill_deadline_) {
          kill(-child_.pid, SIGKILL);
          kill_sent_ = true;
        }
      }
      const bool pipes_open =
          child_.stdout_r.get() >= 0 || child_.stderr_r.get() >= 0;
      if (leader_exited_ && !pipes_open) break;
      if (leader_exited_ && now >= drain_deadline_) {
        DrainBuffered();
        break;
      }
      if (!PollOnce(now)) {
        // poll itself failed: nothing sensible left but to end the run.
        kill(-child_.pid, SIGKILL);
        if (!leader_exited_) ReapLeader();
        break;
      }
      if (!leader_exited_ && leader_may_have_exited_ && LeaderHasExited()) {
        ReapLeader();
      }
    }
    if (result_->stderr_tail.size() > spec_.stderr_tail_bytes) {
      result_->stderr_tail.erase(
          0, result_->stderr_tail.size() - spec_.stderr_tail_bytes);
    }
  }

 private:
  // Starts the SIGTERM -> SIGKILL sequence once.
  void Terminate(int64_t now) {
    if (term_sent_ || leader_exited_) return;
    term_sent_ = true;
    kill(-child_.pid, SIGTERM);
    kill_deadline_ = SaturatingAdd(now, spec_.kill_grace);
  }

  // Returns false if poll failed for a reason other than EINTR.
  bool PollOnce(int64_t now) {
    pollfd fds[4];
    int n = 0;
    int out_i = -1, err_i = -1, pid_i = -1;
    auto add = [&](int fd) {
      fds[n] = pollfd{fd, POLLIN, 0};
      return n++;
    };
    if (child_.stdout_r.get() >= 0) out_i = add(child_.stdout_r.get());
    if (child_.stderr_r.get() >= 0) err_i = add(child_.stderr_r.get());
    if (!leader_exited_ && child_.pidfd.get() >= 0) {
      pid_i = add(child_.pidfd.get());
    }
    const bool watch_cancel =
        !leader_exited_ && canceller_ != nullptr && !result_->cancelled;
    if (watch_cancel && canceller_->fd() >= 0) add(canceller_->fd());

    int64_t next = kNever;
    if (!leader_exited_) {
      if (!term_sent_) next = std::min(next, timeout_deadline_);
      if (term_sent_ && !kill_sent_) next = std::min(next, kill_deadline_);
      if (child_.pidfd.get() < 0 || (watch_cancel && canceller_->fd() < 0)) {
        next = std::min(next, now + int64_t{kLeaderPollMs} * 1'000'000);
      }
    } else {
      next = std::min(next, drain_deadline_);
    }
    int timeout_ms = -1;
    if (next != kNever) {
      const int64_t ms =
          (std::max<int64_t>(next - now, 0) + 999'999) / 1'000'000;
      timeout_ms = static_cast<int>(std::min<int64_t>(ms, INT_MAX));
    }
    if (poll(fds, n, timeout_ms) < 0) return errno == EINTR;

    // The flag, not the fd, is the truth: the fd is -1 if eventfd failed.
    if (watch_cancel && canceller_->cancelled()) {
      result_->cancelled = true;
      Terminate(MonotonicNowNs());
    }
    if (out_i >= 0 && fds[out_i].revents != 0) ReadStdout();
    if (err_i >= 0 && fds[err_i].revents != 0) ReadStderr();
    leader_may_have_exited_ = pid_i < 0 || fds[pid_i].revents != 0;
    return true;
  }

  // Reads one chunk from `fd`; closes it on EOF or error. Returns the number
  // of bytes read into buffer_ (0 if none).
  size_t ReadChunk(UniqueFd* fd) {
    while (true) {
      const ssize_t n = read(fd->get(), buffer_, kReadChunk);
      if (n > 0) return static_cast<size_t>(n);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
      fd->Reset();  // EOF, or an error that will not go away.
      return 0;
    }
  }

  void ReadStdout() {
    const size_t n = ReadChunk(&child_.stdout_r);
    if (n == 0 || !result_->output_status.ok()) return;
    result_->stdout_bytes += static_cast<int64_t>(n);
    absl::Status status = on_stdout_(absl::string_view(buffer_, n));
    if (!status.ok()) {
      result_->output_status = std::move(status);
      Terminate(MonotonicNowNs());
    }
  }

  void ReadStderr() {
    const size_t n = ReadChunk(&child_.stderr_r);
    const size_t keep = spec_.stderr_tail_bytes;
    if (n > 0 && spec_.on_stderr != nullptr) spec_.on_stderr(absl::string_view(buffer_, n));
    if (n == 0 || keep == 0) return;
    std::string& tail = result_->stderr_tail;
    tail.append(buffer_, n);
    if (tail.size() > keep + kReadChunk) tail.erase(0, tail.size() - keep);
  }

  // Reads what is already buffered in the pipes (bounded: a writer outside
  // the group could keep them busy forever).
  void DrainBuffered() {
    for (int i = 0; i < 16 && HasInput(child_.stdout_r); ++i) ReadStdout();
    for (int i = 0; i < 16 && HasInput(child_.stderr_r); ++i) ReadStderr();
  }

  // True if `fd` is open and a read would not block.
  static bool HasInput(const UniqueFd& fd) {
    if (fd.get() < 0) return false;
    pollfd p{fd.get(), POLLIN, 0};
    return poll(&p, 1, 0) > 0 && p.revents != 0;
  }

  // True if the leader is a zombie (not reaped: WNOWAIT keeps its pid, and
  // so the group id, from being reused until ReapLeader).
  bool LeaderHasExited() {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    while (waitid(P_PID, child_.pid, &info, WEXITED | WNOHANG | WNOWAIT) < 0) {
      if (errno != EINTR) return true;  // ECHILD: someone reaped it.
    }
    return info.si_pid == child_.pid;
  }

  // Kills what is left of the group (so no grandchild survives and the pipes
  // reach EOF), then reaps the leader.
  void ReapLeader() {
    kill(-child_.pid, SIGKILL);
    int status = 0;
    if (!WaitForPid(child_.pid, &status)) {
      result_->output_status = absl::InternalError(
          absl::StrCat(child_.pid, ": waitpid: ", ErrnoText(errno),
                       " (is SIGCHLD ignored?)"));
    } else if (WIFEXITED(status))
      result_->exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) result_->term_signal = WTERMSIG(status);
    leader_exited_ = true;
    drain_deadline_ = MonotonicNowNs() + kDrainAfterExitNs;
  }

  const SubprocessSpec& spec_;
  Child& child_;
  absl::FunctionRef<absl::Status(absl::string_view)> on_stdout_;
  Canceller* const canceller_;
  SubprocessResult* const result_;
  const int64_t timeout_deadline_;
  char* const buffer_;  // kReadChunk bytes, ThreadReadBuffer()
  bool term_sent_ = false;
  bool kill_sent_ = false;
  int64_t kill_deadline_ = kNever;
  bool leader_exited_ = false;
  // Set when the pidfd polled readable (always, without a pidfd).
  bool leader_may_have_exited_ = true;
  int64_t drain_deadline_ = kNever;
};

const char* SignalName(int sig) {
  static constexpr const char* kNames[] = {
      nullptr,   "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",    "SIGTRAP",
      "SIGABRT", "SIGBUS",  "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV",
      "SIGUSR2", "SIGPIPE", "SIGALRM",   "SIGTERM", "SIGSTKFLT", "SIGCHLD",
      "SIGCONT", "SIGSTOP", "SIGTSTP",   "SIGTTIN", "SIGTTOU",   "SIGURG",
      "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",  "SIGIO",
      "SIGPWR",  "SIGSYS"};
  if (sig > 0 && sig < static_cast<int>(std::size(kNames))) return kNames[sig];
  return sig >= SIGRTMIN && sig <= SIGRTMAX ? "SIGRT" : "unknown signal";
}

}  // namespace

bool SubprocessResult::ok() const {
  return spawn_status.ok() && output_status.ok() && !timed_out && !cancelled &&
         error_types.empty() && exit_code == 0;
}

std::string SubprocessResult::Describe() const {
  if (!spawn_status.ok()) return std::string(spawn_status.message());
  if (!output_status.ok()) return std::string(output_status.message());
  if (cancelled) return "cancelled";
  if (timed_out) {
    return absl::StrCat("timeout after ", absl::FormatDuration(timeout));
  }
  if (!error_types.empty()) {
    // A Python traceback ends with "Type: message".
    absl::string_view text = absl::StripTrailingAsciiWhitespace(error_text);
    size_t nl = text.rfind('\n');
    absl::string_view last = nl == absl::string_view::npos ? text : text.substr(nl + 1);
    return last.empty() ? absl::StrCat("raised ", error_types.front()) : std::string(last);
  }
  if (term_signal != 0) {
    return absl::StrCat("killed by signal ", term_signal, " (",
                        SignalName(term_signal), ")");
  }
  return absl::StrCat("exit code ", exit_code);
}

// If eventfd fails (fd exhaustion) fd_ is -1 and RunSubprocess falls back to
// checking cancelled() periodically.
Canceller::Canceller() : fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Canceller::~Canceller() {
  if (fd_ >= 0) close(fd_);
}

void Canceller::Cancel() {
  cancelled_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  // The counter is never read, so the fd stays readable for every waiter.
  while (fd_ >= 0 && write(fd_, &one, sizeof(one)) < 0 && errno == EINTR) {
  }
}

bool Canceller::cancelled() const {
  return cancelled_.load(std::memory_order_acquire);
}

int Canceller::fd() const { return fd_; }

SubprocessResult RunSubprocess(
    const SubprocessSpec& spec,
    absl::FunctionRef<absl::Status(absl::string_view)> on_stdout,
    Canceller* canceller) {
  SubprocessResult result;
  result.timeout = spec.timeout;
  if (spec.argv.empty()) {
    result.spawn_status = absl::InvalidArgumentError("subprocess: empty argv");
    return result;
  }
  if (canceller != nullptr && canceller->cancelled()) {
    result.cancelled = true;
    return result;
  }
  absl::StatusOr<std::string> path =
      ResolveCommand(spec.argv[0], spec.search_path);
  if (!path.ok()) {
    result.spawn_status = path.status();
    return result;
  }
  const int64_t start = MonotonicNowNs();
  absl::StatusOr<Child> child = Spawn(spec, *path);
  if (!child.ok()) {
    result.spawn_status = child.status();
  } else {
    result.pid = child->pid;
    if (spec.on_spawn) spec.on_spawn(child->pid);
    Supervisor(spec, *child, on_stdout, canceller, start, &result).Run();
  }
  result.elapsed = absl::Nanoseconds(MonotonicNowNs() - start);
  return result;
}

std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& overrides) {
  std::vector<std::string> merged;
  std::map<std::string, size_t, std::less<>> index;  // name -> merged[i]
  auto name_of = [](absl::string_view kv) {
    return kv.substr(0, kv.find('='));
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv(*e);
    // getenv returns the first of duplicated names; keep only that one.
    if (index.emplace(std::string(name_of(kv)), merged.size()).second) {
      merged.emplace_back(kv);
    }
  }
  std::set<size_t> removed;
  for (const std::string& kv : overrides) {
    const std::string name(name_of(kv));
    auto it = index.find(name);
    if (kv.find('=') == std::string::npos) {
      if (it != index.end()) removed.insert(it->second);
      continue;
    }
    if (it == index.end()) {
      index.emplace(name, merged.size());
      merged.push_back(kv);
    } else {
      merged[it->second] = kv;
      removed.erase(it->second);
    }
  }
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (size_t i = 0; i < merged.size(); ++i) {
    if (removed.count(i) == 0) out.push_back(std::move(merged[i]));
  }
  return out;
}

absl::StatusOr<std::string> FindProgram(const std::string& name, const std::string& search_path) {
  return ResolveCommand(name, search_path);
}

std::string EffectiveSearchPath(const std::string& search_path) {
  if (!search_path.empty()) return search_path;
  const char* env_path = getenv("PATH");
  return env_path != nullptr && *env_path != '\0' ? env_path : kDefaultPath;
}

}  // namespace asflow
