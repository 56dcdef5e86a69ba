// Runs one command: argv (never a shell), pipes, its own process group, a
// timeout, cancellation and a group kill. Shared by asflowd's in-process pool
// and asflow-worker.
#ifndef ASFLOW_EXEC_SUBPROCESS_H_
#define ASFLOW_EXEC_SUBPROCESS_H_

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace asflow {

// What to run and how. Plain value type.
struct SubprocessSpec {
  // The command and its arguments; must not be empty. An argv[0] without '/'
  // is looked up in `search_path`; one with '/' is used as is (a relative one
  // is relative to `cwd`, as after `cd cwd`).
  std::vector<std::string> argv;
  // Working directory of the child; empty inherits the caller's.
  std::string cwd;
  // The child's complete environment, "K=V" entries; empty means an empty
  // environment (use MergeEnvironment to extend the caller's).
  std::vector<std::string> env;
  // Colon-separated directories used to find argv[0]; relative and empty
  // elements are skipped. Empty: getenv("PATH"), or
  // "/usr/local/bin:/usr/bin:/bin" if that is unset.
  std::string search_path;
  // Wall-clock limit from spawn; on expiry the group gets SIGTERM.
  absl::Duration timeout = absl::InfiniteDuration();
  // Delay between SIGTERM and SIGKILL to the group (timeout, cancel, output
  // error).
  absl::Duration kill_grace = absl::Seconds(5);
  // Keep only the last N bytes of stderr (0 keeps nothing).
  size_t stderr_tail_bytes = 16 * 1024;
  // Called on the calling thread with each chunk of stderr as it arrives
  // (whatever stderr_tail_bytes keeps), e.g. to stream it live; may be
  // null. Must not block for long: the command's pipes wait meanwhile.
  std::function<void(absl::string_view)> on_stderr;
  // Called on the calling thread once the command has started (after a
  // successful exec), with its pid, which is also its process group id. The
  // daemon records it so that, after a crash, it can kill what is left.
  std::function<void(pid_t)> on_spawn;
};

// How a run ended. Plain value type.
struct SubprocessResult {
  // Non-OK if the command never ran: InvalidArgument (empty argv), NotFound
  // ("yt-dlp: command not found in PATH", "chdir /x: No such file or
  // directory"), PermissionDenied, or Internal (pipe/fork failure).
  absl::Status spawn_status;
  // Exit status (>= 0) if the child exited normally, else -1.
  int exit_code = -1;
  // Signal number if the child was killed by a signal, else 0.
  int term_signal = 0;
  // The timeout expired and the group was killed.
  bool timed_out = false;
  // The Canceller fired (before or during the run) and the group was killed.
  bool cancelled = false;
  // First non-OK status returned by on_stdout; the group was then killed and
  // further stdout was discarded. Internal if the exit status could not be
  // collected (SIGCHLD set to SIG_IGN in this process).
  absl::Status output_status;
  // The last SubprocessSpec::stderr_tail_bytes bytes of stderr.
  std::string stderr_tail;
  // Bytes passed to on_stdout.
  int64_t stdout_bytes = 0;
  // From spawn until the child was reaped.
  absl::Duration elapsed = absl::ZeroDuration();
  // The child's pid, also its process group id; -1 if it never ran. Already
  // reaped: for diagnostics and tests only, never signal it.
  pid_t pid = -1;
  // The timeout that expired (for Describe).
  absl::Duration timeout = absl::InfiniteDuration();
  // An SDK handler (a remote worker's function, not a command) raised: the
  // exception's type and its bases, most derived first ("module.QualName",
  // builtins bare), and its formatted traceback. Never set by
  // RunSubprocess.
  std::vector<std::string> error_types;
  std::string error_text;

  // True if the command ran and exited 0 with no timeout, cancel, output
  // error or exception.
  bool ok() const;
  // One line for users: the spawn or output error message, "cancelled",
  // "timeout after 2s", the exception's last traceback line
  // ("TranscriptsDisabled: no transcript"), "killed by signal 9 (SIGKILL)"
  // or "exit code 3" (checked in that order), or "exit code 0".
  std::string Describe() const;
};

// Cancels RunSubprocess calls that were given it. Once cancelled it stays
// cancelled (one-shot). Thread-safe; must outlive the runs using it.
class Canceller {
 public:
  // Never fails; without an eventfd (fd exhaustion) runs poll cancelled().
  Canceller();
  ~Canceller();
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;

  // Marks cancelled and wakes every RunSubprocess blocked on this canceller.
  void Cancel();
  // True once Cancel() was called.
  bool cancelled() const;
  // An fd that polls readable once cancelled (never read it).
  int fd() const;

 private:
  int fd_;
  std::atomic<bool> cancelled_{false};
};

// Runs spec.argv synchronously in the calling thread and returns how it
// ended. The child gets its own process group, stdin from /dev/null, no other
// inherited fds, default signal dispositions and mask, and SIGKILL if the
// calling thread dies. Stdout chunks go to on_stdout (called in this thread)
// as they arrive. On timeout, cancel or an on_stdout error the group gets
// SIGTERM, then SIGKILL after kill_grace. Once the leader exits, the whole
// group is SIGKILLed (no stray grandchild survives) and the child is reaped.
// Safe to call from several threads at once. REQUIRES: SIGCHLD is not set to
// SIG_IGN in this process (the child must stay waitable).
SubprocessResult RunSubprocess(
    const SubprocessSpec& spec,
    absl::FunctionRef<absl::Status(absl::string_view)> on_stdout,
    Canceller* canceller = nullptr);

// Returns the current process environment with `overrides` ("K=V") replacing
// same-named entries in place and new names appended; an override "K"
// without '=' removes K. Reads environ: do not race it with setenv.
std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& overrides);

// Where a spawn with this search_path would find program `name` (a name
// with '/' is returned as is): NotFound "NAME: command not found in PATH",
// PermissionDenied when only a non-executable file of that name is there.
// For dry runs (asflowctl run --dry-run).
absl::StatusOr<std::string> FindProgram(const std::string& name, const std::string& search_path);
// The PATH a spawn with this search_path searches: it, else this process's
// PATH, else /usr/local/bin:/usr/bin:/bin.
std::string EffectiveSearchPath(const std::string& search_path);

}  // namespace asflow

#endif  // ASFLOW_EXEC_SUBPROCESS_H_
