// The end-to-end fixture: a temporary HOME, XDG dirs, socket, state file and
// workspace; the real asflowd and asflowctl; cleanup of every process a test
// started (by PID, by lock file, by marker). Shared by the e2e suites.
#ifndef ASFLOW_TESTS_E2E_E2E_FIXTURE_H_
#define ASFLOW_TESTS_E2E_E2E_FIXTURE_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/e2e/e2e_process.h"
#include "tests/test_util.h"

namespace asflow::testing {

using namespace std::chrono_literals;

inline const std::string kDaemon = ASFLOW_BINARY_DIR "/server/asflowd";
inline const std::string kCtl = ASFLOW_BINARY_DIR "/client/asflowctl";
inline const std::string kData = ASFLOW_TEST_DATA_DIR "/e2e";

inline std::string Flow(const std::string &name) { return kData + "/" + name + ".flow.yaml"; }

inline std::vector<std::string> Lines(const std::string &text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines;
}

// How many times each line occurs in a file (missing file: none).
inline std::map<std::string, int> CountLines(const std::string &path) {
  std::map<std::string, int> counts;
  for (const std::string &line : Lines(ReadAll(path))) ++counts[line];
  return counts;
}

// The largest count in a slots.log written by scripts/slot.sh or
// remote_item.sh (how many instances held a slot at once); -1 if a line
// is not a number.
inline int MaxHeld(const std::vector<std::string> &held) {
  int max_held = 0;
  for (const std::string &h : held) {
    int n = 0;
    if (!absl::SimpleAtoi(h, &n)) return -1;
    max_held = std::max(max_held, n);
  }
  return max_held;
}

// The first line of `text` that begins with `prefix`, or "".
inline std::string LineStartingWith(const std::string &text, const std::string &prefix) {
  for (const std::string &line : Lines(text)) {
    if (absl::StartsWith(line, prefix)) return line;
  }
  return "";
}

class E2eTest : public ::testing::Test {
 protected:
  // asflowctl's auto-started daemon double-forks; as a subreaper this test
  // process becomes its parent, so it can be reaped and never lingers as a
  // zombie that looks alive.
  // A bad ASFLOW_TEST_TIME_SCALE aborts here, before a process is started
  // that the abort would leave behind.
  static void SetUpTestSuite() {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    TimeScale();
  }

  void SetUp() override {
    home_ = tmp_.Join("home");
    ws_ = home_ + "/ws";
    socket_ = tmp_.Join("d.sock");
    state_ = tmp_.Join("daemon/state.db");
    std::filesystem::create_directories(ws_);
    std::filesystem::create_directories(tmp_.Join("run"));
    std::filesystem::create_directories(tmp_.Join("state"));
    std::filesystem::create_directories(tmp_.Join("daemon"));
    std::filesystem::create_directories(tmp_.Join("cmd"));
    std::filesystem::copy(kData + "/scripts", ws_ + "/scripts", std::filesystem::copy_options::recursive);
  }

  void TearDown() override {
    for (const std::string &server : tmux_servers_) {
      CommandResult r = RunProcess(TmuxLaunch({"/usr/bin/env", "tmux", "-L", server, "kill-server"}), 10s);
      EXPECT_EQ(r.exit_code, 0) << "tmux -L " << server << " kill-server: " << r.err;
    }
    for (pid_t pid : children_) {
      if (TryReap(pid) != -2) continue;  // exited and reaped: the pid is not ours now
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      WaitChild(pid, 5s);
    }
    // Commands of a run, found through their marker parameter (they may
    // have outlived their daemon).
    for (const std::string &entry : markers_) {
      for (pid_t pid : ProcessesWithEnv(entry)) kill(pid, SIGKILL);
      EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(entry).empty(); }, 5s)) << entry;
    }
    // A daemon asflowctl started on its own, found through its lock file.
    for (const std::string &lock : {state_ + ".lock", DefaultStateDir() + "/state.db.lock"}) {
      pid_t pid = LockPid(lock);
      if (pid > 0 && ProcessAlive(pid) && absl::StrContains(ProcessCmdline(pid), "asflowd")) {
        kill(pid, SIGKILL);
        EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, 5s)) << "asflowd " << pid;
      }
    }
    // Orphans re-parented to this subreaper (e.g. a killed daemon's
    // grandchildren) that have exited.
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    if (HasFailure()) {
      for (int i = 1; i <= daemon_starts_; ++i) {
        std::string log = ReadAll(tmp_.Join(absl::StrCat("daemon/asflowd.", i, ".log")));
        if (log.size() > 4000) log = log.substr(log.size() - 4000);
        std::printf("--- asflowd log %d (tail) ---\n%s\n", i, log.c_str());
      }
    }
  }

  // Starts a tmux server of its own (killed in TearDown) with one 100x30
  // window running `argv` in the workspace, then a line "exited with N".
  // (tmux may notice a dead pane late, so the exit is told by the line.)
  // SIGINT interrupts the wrapper shell's wait without ending it.
  std::string StartTmux(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"/bin/sh", "-c", "trap : INT; \"$0\" \"$@\"; echo \"exited with $?\""});
    std::string server = absl::StrCat("asflow-e2e-", getpid(), "-", tmux_servers_.size());
    std::string conf = tmp_.Join(absl::StrCat(server, ".conf"));
    WriteFileOrDie(conf, "set -g remain-on-exit on\nset -g history-limit 0\n");
    std::vector<std::string> args = {"/usr/bin/env", "tmux", "-L", server, "-f", conf,
                                     "new-session", "-d", "-s", "main", "-x", "100", "-y", "30", "-c", ws_, "--"};
    args.insert(args.end(), argv.begin(), argv.end());
    tmux_servers_.push_back(server);
    CommandResult r = RunProcess(TmuxLaunch(args), 10s);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return server;
  }

  std::string Screen(const std::string &server) {
    return RunProcess(TmuxLaunch({"/usr/bin/env", "tmux", "-L", server, "capture-pane", "-p"}), 10s).out;
  }

  void SendKeys(const std::string &server, std::vector<std::string> keys) {
    std::vector<std::string> args = {"/usr/bin/env", "tmux", "-L", server, "send-keys", "-t", "main"};
    args.insert(args.end(), keys.begin(), keys.end());
    CommandResult r = RunProcess(TmuxLaunch(args), 10s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }

  // Polls the screen until `condition` holds on it; returns the last screen.
  bool WaitForScreen(const std::string &server, const std::function<bool(const std::string &)> &condition,
                     std::chrono::milliseconds timeout, std::string *screen) {
    return WaitFor([&] { return condition(*screen = Screen(server)); }, timeout);
  }

  // tmux with the fixture's environment, its sockets under the temp dir.
  Launch TmuxLaunch(std::vector<std::string> args) {
    Launch launch = MakeLaunch(std::move(args), tmp_.path());
    launch.env.push_back("TMUX_TMPDIR=" + tmp_.path());
    launch.env.push_back("TERM=xterm-256color");
    return launch;
  }

  bool HaveTmux() {
    return RunProcess(MakeLaunch({"/usr/bin/env", "tmux", "-V"}, tmp_.path()), 10s).exit_code == 0;
  }

  std::string DefaultStateDir() const { return tmp_.Join("state/asflow"); }
  std::string DefaultSocket() const { return tmp_.Join("run/asflow/asflowd.sock"); }

  static pid_t LockPid(const std::string &lock) {
    int pid = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadAll(lock)), &pid)) return -1;
    return pid;
  }

  std::vector<std::string> Env() const {
    return {"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home_,
            "XDG_RUNTIME_DIR=" + tmp_.Join("run"), "XDG_STATE_HOME=" + tmp_.Join("state"),
            "LANG=C"};
  }

  Launch MakeLaunch(std::vector<std::string> argv, const std::string &cwd) {
    ++commands_;
    return Launch{std::move(argv), Env(), cwd, tmp_.Join(absl::StrCat("cmd/", commands_, ".out")),
                  tmp_.Join(absl::StrCat("cmd/", commands_, ".err"))};
  }

  // Starts asflowd on socket_ and state_ (allowing home_ unless told
  // otherwise) and waits until it answers.
  void StartDaemon(std::vector<std::string> extra = {}, std::string allow_root = "") {
    // `--config ""`: no /etc/asflow/asflowd.conf of the machine's.
    std::vector<std::string> argv = {kDaemon,
                                     "--config",
                                     "",
                                     "--socket",
                                     socket_,
                                     "--state",
                                     state_,
                                     "--allow-root",
                                     allow_root.empty() ? home_ : allow_root};
    argv.insert(argv.end(), extra.begin(), extra.end());
    // One log per start, so a restart keeps the story of the first.
    std::string log = tmp_.Join(absl::StrCat("daemon/asflowd.", ++daemon_starts_, ".log"));
    Launch launch{argv, Env(), tmp_.path(), log, log};
    daemon_pid_ = SpawnProcess(launch);
    ASSERT_GT(daemon_pid_, 0);
    children_.push_back(daemon_pid_);
    ASSERT_TRUE(WaitFor(
        [&] {
          return FileExists(socket_) && Ctl({"daemon", "status"}, tmp_.path(), 5s).exit_code == 0;
        },
        10s))
        << "asflowd did not come up: " << ReadAll(launch.stdout_path);
  }

  // SIGKILLs the daemon started by StartDaemon and reaps it.
  void KillDaemon() {
    ASSERT_EQ(kill(daemon_pid_, SIGKILL), 0);
    EXPECT_EQ(WaitChild(daemon_pid_, 5s), 128 + SIGKILL);
  }

  // asflowctl --socket socket_ ARGS, run in `cwd` (default: the workspace).
  CommandResult Ctl(std::vector<std::string> args, const std::string &cwd = "",
                    std::chrono::milliseconds timeout = 30s) {
    args.insert(args.begin(), {kCtl, "--socket", socket_});
    return RunProcess(MakeLaunch(args, cwd.empty() ? ws_ : cwd), timeout);
  }

  // Ctl with `env` entries ("NAME=value") replacing those of Env() with the
  // same name, or added (e.g. a PATH the client hands to the daemon).
  CommandResult CtlWithEnv(std::vector<std::string> args, const std::vector<std::string> &env,
                           const std::string &cwd = "", std::chrono::milliseconds timeout = 30s) {
    args.insert(args.begin(), {kCtl, "--socket", socket_});
    Launch launch = MakeLaunch(args, cwd.empty() ? ws_ : cwd);
    for (const std::string &entry : env) {
      std::string name = entry.substr(0, entry.find('=') + 1);
      auto same = [&](const std::string &e) { return absl::StartsWith(e, name); };
      launch.env.erase(std::remove_if(launch.env.begin(), launch.env.end(), same),
                       launch.env.end());
      launch.env.push_back(entry);
    }
    return RunProcess(launch, timeout);
  }

  // asflowctl ARGS with the default socket (from XDG_RUNTIME_DIR).
  CommandResult CtlDefault(std::vector<std::string> args) {
    args.insert(args.begin(), kCtl);
    return RunProcess(MakeLaunch(args, ws_), 30s);
  }

  // Starts asflowctl --socket socket_ ARGS in the background; returns the
  // pid and where its output goes.
  pid_t SpawnCtl(std::vector<std::string> args, Launch *launch) {
    args.insert(args.begin(), {kCtl, "--socket", socket_});
    *launch = MakeLaunch(args, ws_);
    pid_t pid = SpawnProcess(*launch);
    children_.push_back(pid);
    return pid;
  }

  // A marker parameter value unique to this test, and the environment entry
  // ("ASFLOW_PARAM_marker=...") that the run's commands inherit; TearDown
  // kills whatever still carries it.
  std::string NewMarker(std::string *env_entry) {
    std::string marker = absl::StrCat("e2e-", getpid(), "-", time(nullptr), "-", markers_.size());
    *env_entry = "ASFLOW_PARAM_marker=" + marker;
    markers_.push_back(*env_entry);
    return marker;
  }

  // Submits the flow file at `path` with --detach and returns the run id it
  // prints.
  int64_t DetachPath(const std::string &path, std::vector<std::string> params = {}) {
    std::vector<std::string> args = {"run", path, "--detach"};
    for (const std::string &p : params) args.insert(args.end(), {"-p", p});
    CommandResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    int64_t id = 0;
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out), &id)) << r.out;
    EXPECT_EQ(r.out, absl::StrCat(id, "\n"));
    return id;
  }

  // Submits tests/testdata/e2e/FLOW.flow.yaml with --detach.
  int64_t Detach(const std::string &flow, std::vector<std::string> params = {}) {
    return DetachPath(Flow(flow), std::move(params));
  }

  // Decompresses `path` with the real zstd or gzip CLI.
  std::string Decompress(const std::string &tool, const std::string &path) {
    CommandResult r = RunProcess(MakeLaunch({"/usr/bin/env", tool, "-dc", path}, ws_), 10s);
    EXPECT_EQ(r.exit_code, 0) << tool << " -dc " << path << ": " << r.err;
    return r.out;
  }

  // The rows of an `asflowctl tasks` table (header dropped).
  static std::vector<std::string> TableRows(const std::string &out) {
    std::vector<std::string> lines = Lines(out);
    if (!lines.empty()) lines.erase(lines.begin());
    return lines;
  }

  TempDir tmp_;
  std::string home_;
  std::string ws_;
  std::string socket_;
  std::string state_;
  pid_t daemon_pid_ = -1;
  int daemon_starts_ = 0;
  int commands_ = 0;
  std::vector<pid_t> children_;
  std::vector<std::string> tmux_servers_;  // tmux -L names, killed in TearDown
  std::vector<std::string> markers_;
};

}  // namespace asflow::testing

#endif  // ASFLOW_TESTS_E2E_E2E_FIXTURE_H_
