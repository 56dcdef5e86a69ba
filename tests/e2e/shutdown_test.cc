// End-to-end tests of stopping asflowd: the stop grace (running instances
// finish, nothing new starts, new runs are refused, a second SIGTERM ends
// the wait), and a SIGTERM right after a busy run must end the daemon
// within a few seconds, with exit status 0 and its socket removed.
// Regression test for exits that took ~10 s: a Watch write that met
// a full socket buffer started gRPC's TCP backup poller, and the final
// grpc_shutdown waited out its 10 s poll (docs/behaviour.md, "Stopping").
// The poller was left behind in about half of such stops, so eight rounds
// catch it almost surely (the old daemon failed 10 runs of 10); a round
// takes about 0.2 s.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include <gmock/gmock.h>
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

using namespace std::chrono_literals;

// n instances of the built-in no-op handler: no process, no output, but one
// progress event each, which `run` watches.
constexpr char kManyNoops[] = R"(name: many_noops
params:
  n: "5000"
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "{n}"]
  - name: noop
    for_each:
      lines_of: ids
      as: i
    handler: builtin.noop
)";

// Six instances, two at a time, each logging its start and then waiting
// for the workspace's `gate` file before it writes its output.
constexpr char kGated[] = R"(name: gated
tasks:
  - name: ids
    on: ids.txt
    run: [seq, "6"]
  - name: wait
    for_each:
      lines_of: ids
      as: i
    on: out/{i}.txt
    limit: 2
    run: [sh, -c, 'echo {i} >> started.log; while [ ! -e gate ]; do sleep 0.02; done; echo ok {i}']
)";

class StopGraceTest : public E2eTest {
 protected:
  // Submits the gated flow and waits until its first two instances run.
  int64_t StartGatedRun() {
    WriteFileOrDie(ws_ + "/gated.flow.yaml", kGated);
    int64_t run = DetachPath(ws_ + "/gated.flow.yaml");
    EXPECT_TRUE(WaitFor([&] { return Started().size() == 2; }, 20s)) << ReadAll(ws_ + "/started.log");
    return run;
  }
  // The instances that started, one line each, in order.
  std::vector<std::string> Started() {
    std::string log = FileExists(ws_ + "/started.log") ? ReadAll(ws_ + "/started.log") : "";
    return absl::StrSplit(log, '\n', absl::SkipEmpty());
  }
  // SIGTERM, once the daemon has taken it (signals of one kind pending
  // together count once).
  void Sigterm(const std::string &log, const std::string &taken) {
    ASSERT_EQ(kill(daemon_pid_, SIGTERM), 0);
    ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadAll(log), taken); }, 10s)) << ReadAll(log);
  }
};

TEST_F(StopGraceTest, RunningInstancesFinishAndNothingNewStarts) {
  StartDaemon({"--stop-grace", "120"});
  const std::string log = tmp_.Join("daemon/asflowd.1.log");
  int64_t run = StartGatedRun();
  Sigterm(log, "running instances get up to 2m to finish");

  // Still serving while it waits: reads answer, new runs are refused.
  CommandResult runs = Ctl({"runs"});
  EXPECT_EQ(runs.exit_code, 0) << runs.err;
  CommandResult refused = Ctl({"run", ws_ + "/gated.flow.yaml", "--detach"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, ::testing::HasSubstr("asflowd is shutting down"));

  WriteFileOrDie(ws_ + "/gate", "");
  ASSERT_EQ(WaitChild(daemon_pid_, 30s), 0) << ReadAll(log);
  EXPECT_THAT(ReadAll(log), ::testing::HasSubstr("running instances finished in"));
  EXPECT_FALSE(FileExists(socket_));
  std::vector<std::string> started = Started();
  ASSERT_EQ(started.size(), 2u) << "an instance started during the stop grace";
  for (const std::string &i : started) {
    EXPECT_EQ(ReadAll(absl::StrCat(ws_, "/out/", i, ".txt")), absl::StrCat("ok ", i, "\n"));
  }

  // The next start runs the other four; the two that finished are done.
  StartDaemon();
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 60s);
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_EQ(Started().size(), 6u) << ReadAll(ws_ + "/started.log");
  for (int i = 1; i <= 6; ++i) {
    EXPECT_EQ(ReadAll(absl::StrCat(ws_, "/out/", i, ".txt")), absl::StrCat("ok ", i, "\n"));
  }
}

TEST_F(StopGraceTest, SecondSigtermEndsTheGrace) {
  StartDaemon({"--stop-grace", "600", "--kill-grace", "1"});
  const std::string log = tmp_.Join("daemon/asflowd.1.log");
  StartGatedRun();
  Sigterm(log, "running instances get up to 10m to finish");
  Sigterm(log, "stop requested again");
  ASSERT_EQ(WaitChild(daemon_pid_, 30s), 0) << ReadAll(log);
  EXPECT_FALSE(FileExists(ws_ + "/out/1.txt"));
  EXPECT_FALSE(FileExists(ws_ + "/out/2.txt"));
  EXPECT_FALSE(FileExists(socket_));
}

TEST_F(StopGraceTest, DaemonStopNowSkipsTheGrace) {
  StartDaemon({"--stop-grace", "600", "--kill-grace", "1"});
  StartGatedRun();
  CommandResult stop = Ctl({"daemon", "stop", "--now"});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(stop.out, "asflowd stopped\n");
  ASSERT_EQ(WaitChild(daemon_pid_, 30s), 0);
  EXPECT_FALSE(FileExists(ws_ + "/out/1.txt"));
  EXPECT_EQ(Started().size(), 2u);
}

TEST_F(E2eTest, SigtermAfterBusyRunExitsPromptly) {
  const std::string flow = ws_ + "/many_noops.flow.yaml";
  WriteFileOrDie(flow, kManyNoops);
  constexpr int kRounds = 8;
  for (int round = 1; round <= kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    // A fresh state each round, so every run does all its instances.
    for (const char *suffix : {"", "-wal", "-shm"}) std::filesystem::remove(state_ + suffix);
    std::filesystem::remove(ws_ + "/ids.txt");
    StartDaemon({"--pool-size", "8"});
    CommandResult run = Ctl({"run", flow, "--plain"});
    ASSERT_EQ(run.exit_code, 0) << run.out << run.err;

    auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(kill(daemon_pid_, SIGTERM), 0);
    int code = WaitChild(daemon_pid_, 15s);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(code, 0) << "asflowd did not exit cleanly on SIGTERM (-1: still running after "
                       << Scaled(15s).count() / 1000 << " s)";
    EXPECT_LT(seconds, ScaledSeconds(3.0)) << "asflowd took " << seconds << " s to exit on SIGTERM";
    EXPECT_FALSE(FileExists(socket_)) << "asflowd left its socket behind";
  }
}

}  // namespace
}  // namespace asflow::testing
