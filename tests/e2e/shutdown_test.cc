// End-to-end test of stopping asflowd: SIGTERM right after a busy run must
// end the daemon within a few seconds, with exit status 0 and its socket
// removed. Regression test for exits that took ~10 s: a Watch write that met
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

#include "absl/strings/str_cat.h"
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
    ASSERT_EQ(code, 0) << "asflowd did not exit cleanly on SIGTERM (-1: still running after 15 s)";
    EXPECT_LT(seconds, 3.0) << "asflowd took " << seconds << " s to exit on SIGTERM";
    EXPECT_FALSE(FileExists(socket_)) << "asflowd left its socket behind";
  }
}

}  // namespace
}  // namespace asflow::testing
