#include "exec/subprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SubprocessTest : public ::testing::Test {
 protected:
  // Orphaned grandchildren are reparented to this process, so GroupIsGone
  // can reap them and tell "killed" from "still running" without sleeping.
  static void SetUpTestSuite() { prctl(PR_SET_CHILD_SUBREAPER, 1); }

  static SubprocessSpec Spec(std::vector<std::string> argv) {
    SubprocessSpec spec;
    spec.argv = std::move(argv);
    spec.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    return spec;
  }

  // Runs `spec`, collecting stdout into stdout_.
  SubprocessResult Run(const SubprocessSpec& spec,
                       Canceller* canceller = nullptr) {
    stdout_.clear();
    return RunSubprocess(
        spec,
        [this](absl::string_view chunk) {
          stdout_.append(chunk.data(), chunk.size());
          ++chunks_;
          return absl::OkStatus();
        },
        canceller);
  }

  // Reaps the members of process group `pgid` that were reparented to us,
  // then checks that nobody is left in the group. Fails (after killing the
  // group) if a member is still alive after 2 seconds.
  static ::testing::AssertionResult GroupIsGone(pid_t pgid) {
    auto reaper = std::async(std::launch::async, [pgid] {
      int reaped = 0;
      int status;
      while (true) {
        if (waitpid(-pgid, &status, 0) > 0) {
          ++reaped;
        } else if (errno != EINTR) {
          break;
        }
      }
      return reaped;
    });
    if (reaper.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      kill(-pgid, SIGKILL);
      return ::testing::AssertionFailure()
             << "process group " << pgid << " still has live members";
    }
    reaper.get();
    if (kill(-pgid, 0) == 0 || errno != ESRCH) {
      return ::testing::AssertionFailure()
             << "kill(-" << pgid << ", 0) did not fail with ESRCH";
    }
    return ::testing::AssertionSuccess();
  }

  std::string stdout_;
  int chunks_ = 0;
};

TEST_F(SubprocessTest, DeliversStdoutExactly) {
  SubprocessResult r = Run(Spec({"printf", "hello\\nworld"}));
  EXPECT_TRUE(r.spawn_status.ok()) << r.spawn_status;
  EXPECT_EQ(stdout_, "hello\nworld");
  EXPECT_EQ(r.stdout_bytes, 11);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.Describe(), "exit code 0");
  EXPECT_GT(r.pid, 0);
}

TEST_F(SubprocessTest, DeliversMultiMegabyteStream) {
  SubprocessResult r = Run(Spec({"head", "-c", "5000000", "/dev/zero"}));
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.stdout_bytes, 5000000);
  ASSERT_EQ(stdout_.size(), 5000000u);
  EXPECT_EQ(std::count(stdout_.begin(), stdout_.end(), '\0'), 5000000);
  EXPECT_GT(chunks_, 1);
}

TEST_F(SubprocessTest, KeepsOnlyTheStderrTail) {
  SubprocessSpec spec =
      Spec({"sh", "-c", "head -c 100000 /dev/zero >&2; printf 0123456789 >&2"});
  spec.stderr_tail_bytes = 10;
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.stderr_tail, "0123456789");
  EXPECT_EQ(stdout_, "");
}

TEST_F(SubprocessTest, KeepsShortStderrWhole) {
  SubprocessResult r = Run(Spec({"sh", "-c", "echo oops >&2; echo out"}));
  EXPECT_EQ(r.stderr_tail, "oops\n");
  EXPECT_EQ(stdout_, "out\n");
}

TEST_F(SubprocessTest, ReportsExitCodeAndLeavesNoZombie) {
  SubprocessResult r = Run(Spec({"sh", "-c", "exit 3"}));
  EXPECT_TRUE(r.spawn_status.ok());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.term_signal, 0);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Describe(), "exit code 3");
  int status;
  EXPECT_EQ(waitpid(r.pid, &status, WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

TEST_F(SubprocessTest, ReportsKillingSignal) {
  SubprocessResult r = Run(Spec({"sh", "-c", "kill -9 $$"}));
  EXPECT_EQ(r.exit_code, -1);
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Describe(), "killed by signal 9 (SIGKILL)");
}

TEST_F(SubprocessTest, CommandNotFoundIsNotFound) {
  SubprocessResult r = Run(Spec({"asflow-no-such-command", "x"}));
  EXPECT_EQ(r.spawn_status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.spawn_status.message(),
            "asflow-no-such-command: command not found in PATH");
  EXPECT_EQ(r.Describe(), "asflow-no-such-command: command not found in PATH");
  EXPECT_EQ(r.pid, -1);
  EXPECT_FALSE(r.ok());
}

TEST_F(SubprocessTest, MissingExplicitPathIsNotFound) {
  SubprocessResult r = Run(Spec({"/nonexistent/asflow-tool"}));
  EXPECT_EQ(r.spawn_status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.spawn_status.message(),
            "/nonexistent/asflow-tool: No such file or directory");
}

TEST_F(SubprocessTest, NonExecutableInSearchPathIsPermissionDenied) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Join("tool"), "#!/bin/sh\necho hi\n");
  SubprocessSpec spec = Spec({"tool"});
  spec.search_path = dir.path();
  SubprocessResult r = Run(spec);
  EXPECT_EQ(r.spawn_status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(r.spawn_status.message(),
            absl::StrCat("tool: ", dir.Join("tool"), " is not executable"));
}

TEST_F(SubprocessTest, FindsCommandInSearchPathSkippingRelativeEntries) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.Join("tool"), "#!/bin/sh\necho \"tool $1\"\n");
  ASSERT_EQ(chmod(dir.Join("tool").c_str(), 0755), 0);
  SubprocessSpec spec = Spec({"tool", "arg"});
  spec.search_path = absl::StrCat("relative::", dir.path());
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, "tool arg\n");
}

TEST_F(SubprocessTest, BadCwdIsReported) {
  SubprocessSpec spec = Spec({"pwd"});
  spec.cwd = "/nonexistent-asflow-dir";
  SubprocessResult r = Run(spec);
  EXPECT_EQ(r.spawn_status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.spawn_status.message(),
            "chdir /nonexistent-asflow-dir: No such file or directory");
  EXPECT_EQ(r.exit_code, -1);
}

TEST_F(SubprocessTest, EmptyArgvIsInvalid) {
  SubprocessResult r = Run(Spec({}));
  EXPECT_EQ(r.spawn_status.code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SubprocessTest, HonoursCwd) {
  testing::TempDir dir;
  char* real = realpath(dir.path().c_str(), nullptr);
  ASSERT_NE(real, nullptr);
  const std::string expected = absl::StrCat(real, "\n");
  free(real);
  SubprocessSpec spec = Spec({"pwd"});
  spec.cwd = dir.path();
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, expected);
}

TEST_F(SubprocessTest, ChildGetsExactlyTheGivenEnvironment) {
  SubprocessSpec spec = Spec({"env"});
  spec.env = {"A=1", "B=two words"};
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, "A=1\nB=two words\n");
}

TEST_F(SubprocessTest, EnvironmentReachesTheCommand) {
  SubprocessSpec spec = Spec({"sh", "-c", "echo \"$ASFLOW_PARAM_x\""});
  spec.env.push_back("ASFLOW_PARAM_x=hello; $(world)");
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, "hello; $(world)\n");
}

TEST_F(SubprocessTest, StdinIsDevNull) {
  SubprocessResult r = Run(Spec({"cat"}));
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, "");
}

TEST_F(SubprocessTest, DoesNotLeakInheritableFds) {
  const int leaked = dup(STDERR_FILENO);  // dup() does not set O_CLOEXEC.
  ASSERT_GE(leaked, 3);
  SubprocessResult r =
      Run(Spec({"sh", "-c",
                absl::StrCat("[ -e /proc/$$/fd/", leaked,
                             " ] && echo open || echo closed")}));
  close(leaked);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, "closed\n");
}

TEST_F(SubprocessTest, ChildRunsInItsOwnProcessGroup) {
  SubprocessResult r = Run(Spec({"sh", "-c", "echo $$ $(ps -o pgid= -p $$)"}));
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(stdout_, absl::StrCat(r.pid, " ", r.pid, "\n"));
}

TEST_F(SubprocessTest, TimeoutKillsTheWholeGroup) {
  SubprocessSpec spec = Spec({"sh", "-c", "sleep 1000 & sleep 1000; wait"});
  spec.timeout = absl::Milliseconds(300);
  spec.kill_grace = absl::Milliseconds(200);
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.timed_out);
  EXPECT_FALSE(r.cancelled);
  EXPECT_EQ(r.term_signal, SIGTERM);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Describe(), "timeout after 300ms");
  EXPECT_GE(r.elapsed, absl::Milliseconds(300));
  EXPECT_LT(r.elapsed, absl::Milliseconds(300 + 200 + 500));
  EXPECT_TRUE(GroupIsGone(r.pid));
}

TEST_F(SubprocessTest, TimeoutEscalatesToSigkillAfterGrace) {
  SubprocessSpec spec =
      Spec({"sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000; wait"});
  spec.timeout = absl::Milliseconds(300);
  spec.kill_grace = absl::Milliseconds(200);
  SubprocessResult r = Run(spec);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGKILL);
  EXPECT_EQ(r.Describe(), "timeout after 300ms");
  EXPECT_GE(r.elapsed, absl::Milliseconds(500));
  EXPECT_LT(r.elapsed, absl::Milliseconds(300 + 200 + 500));
  EXPECT_TRUE(GroupIsGone(r.pid));
}

TEST_F(SubprocessTest, CancelFromAnotherThreadStopsTheChild) {
  Canceller canceller;
  absl::Notification started;
  absl::Time cancelled_at;
  std::thread cancel_thread([&] {
    started.WaitForNotification();
    cancelled_at = absl::Now();
    canceller.Cancel();
  });
  SubprocessSpec spec = Spec({"sh", "-c", "echo ready; exec sleep 1000"});
  std::string out;
  SubprocessResult r = RunSubprocess(
      spec,
      [&](absl::string_view chunk) {
        out.append(chunk.data(), chunk.size());
        if (!started.HasBeenNotified()) started.Notify();
        return absl::OkStatus();
      },
      &canceller);
  const absl::Time returned_at = absl::Now();
  cancel_thread.join();
  EXPECT_TRUE(canceller.cancelled());
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.term_signal, SIGTERM);
  EXPECT_EQ(out, "ready\n");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Describe(), "cancelled");
  // Prompt: from Cancel() to the return, not from the spawn (which, with
  // the output callback, took most of a second under ThreadSanitizer).
  EXPECT_LT(returned_at - cancelled_at, absl::Seconds(1));
  EXPECT_TRUE(GroupIsGone(r.pid));
}

TEST_F(SubprocessTest, AlreadyCancelledDoesNotSpawn) {
  Canceller canceller;
  canceller.Cancel();
  SubprocessResult r = Run(Spec({"sleep", "1000"}), &canceller);
  EXPECT_TRUE(r.cancelled);
  EXPECT_TRUE(r.spawn_status.ok());
  EXPECT_EQ(r.pid, -1);
  EXPECT_EQ(r.Describe(), "cancelled");
}

TEST_F(SubprocessTest, OutputErrorKillsTheChildAndIsReported) {
  int calls = 0;
  int64_t first_chunk = 0;
  SubprocessResult r =
      RunSubprocess(Spec({"yes"}), [&](absl::string_view chunk) {
        ++calls;
        first_chunk = chunk.size();
        return absl::ResourceExhaustedError("out.jsonl: disk full");
      });
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r.stdout_bytes, first_chunk);
  EXPECT_EQ(r.output_status,
            absl::ResourceExhaustedError("out.jsonl: disk full"));
  EXPECT_EQ(r.term_signal, SIGTERM);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.Describe(), "out.jsonl: disk full");
  EXPECT_TRUE(GroupIsGone(r.pid));
}

TEST_F(SubprocessTest, LeaderExitWithBackgroundGrandchildDoesNotHang) {
  SubprocessResult r = Run(Spec({"sh", "-c", "sleep 1000 & echo done"}));
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(stdout_, "done\n");
  EXPECT_LT(r.elapsed, absl::Seconds(1));
  EXPECT_TRUE(GroupIsGone(r.pid));
}

TEST_F(SubprocessTest, RunsConcurrentlyFromSeveralThreads) {
  std::vector<std::string> outs(4);
  std::vector<SubprocessResult> results(4);
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      results[i] = RunSubprocess(Spec({"sh", "-c", absl::StrCat("echo ", i)}),
                                 [&, i](absl::string_view chunk) {
                                   outs[i].append(chunk.data(), chunk.size());
                                   return absl::OkStatus();
                                 });
    });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(results[i].ok()) << results[i].Describe();
  EXPECT_THAT(outs, ElementsAre("0\n", "1\n", "2\n", "3\n"));
}

TEST(MergeEnvironmentTest, ReplacesAppendsAndRemoves) {
  setenv("ASFLOW_MERGE_OLD", "old", 1);
  setenv("ASFLOW_MERGE_GONE", "x", 1);
  unsetenv("ASFLOW_MERGE_NEW");
  std::vector<std::string> env =
      MergeEnvironment({"ASFLOW_MERGE_OLD=new=value", "ASFLOW_MERGE_NEW=1",
                        "ASFLOW_MERGE_GONE"});
  auto count = [&](const std::string& prefix) {
    return std::count_if(env.begin(), env.end(), [&](const std::string& kv) {
      return kv.rfind(prefix, 0) == 0;
    });
  };
  EXPECT_EQ(count("ASFLOW_MERGE_OLD="), 1);
  EXPECT_EQ(count("ASFLOW_MERGE_GONE="), 0);
  EXPECT_NE(std::find(env.begin(), env.end(), "ASFLOW_MERGE_OLD=new=value"),
            env.end());
  EXPECT_EQ(env.back(), "ASFLOW_MERGE_NEW=1");
  EXPECT_NE(
      std::find(env.begin(), env.end(), absl::StrCat("PATH=", getenv("PATH"))),
      env.end());
  unsetenv("ASFLOW_MERGE_OLD");
  unsetenv("ASFLOW_MERGE_GONE");
}

}  // namespace
}  // namespace asflow
