// End-to-end tests of each attempt's history: `asflowctl logs` (stored
// tails, and -f following instances' stderr live from the daemon) and the
// attempts `asflowctl show` lists, through the real asflowd and asflowctl
// on a temporary socket.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

class HistoryTest : public E2eTest {
 protected:
  // Lets noisy.sh's instance `id` finish.
  void Go(const std::string& id) { WriteFileOrDie(ws_ + "/go." + id, ""); }
};

TEST_F(HistoryTest, LogsFollowsStderrLiveAndEndsWithTheRun) {
  StartDaemon();
  const int64_t run = Detach("noisy");
  Launch follow;
  const pid_t pid = SpawnCtl({"logs", absl::StrCat(run), "-f"}, &follow);
  // Live: every instance said it waits, and none has finished (each waits
  // for its go file), so these lines came while they ran. Instance 3's
  // first try failed and its stored tail came first.
  std::string out;
  ASSERT_TRUE(WaitFor(
      [&] {
        out = ReadAll(follow.stdout_path);
        return absl::StrContains(out, "talk(i=1) | 1: waiting\n") && absl::StrContains(out, "talk(i=2) | 2: waiting\n") &&
               absl::StrContains(out, "talk(i=3) #2 | 3: waiting\n");
      },
      20s))
      << out << ReadAll(follow.stderr_path);
  EXPECT_THAT(out, HasSubstr("talk(i=3) | 3: transient trouble\n"));
  EXPECT_THAT(out, Not(HasSubstr("done")));
  EXPECT_EQ(TryReap(pid), -2) << "logs -f ended while the run goes on";

  for (const std::string id : {"1", "2", "3"}) Go(id);
  EXPECT_EQ(WaitChild(pid, 20s), 0) << ReadAll(follow.stderr_path);
  out = ReadAll(follow.stdout_path);
  // The last line had no newline: printed whole once its attempt ended.
  EXPECT_THAT(out, HasSubstr("talk(i=1) | 1: done\n"));
  EXPECT_THAT(out, HasSubstr("talk(i=3) #2 | 3: done\n"));
  // Each line once, although the attempt went from live to stored meanwhile.
  EXPECT_EQ(CountLines(follow.stdout_path)["talk(i=2) | 2: waiting"], 1) << out;
  EXPECT_EQ(CountLines(follow.stdout_path)["talk(i=2) | 2: done"], 1) << out;
}

TEST_F(HistoryTest, LogsPrintsStoredTailsOfSuccessesAndShowListsAttempts) {
  StartDaemon();
  for (const std::string id : {"1", "2", "3"}) Go(id);
  CommandResult r = Ctl({"run", Flow("noisy"), "--plain"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string run = "1";

  // One instance asked for: its lines as they are, attempts marked.
  CommandResult logs = Ctl({"logs", run, "talk", "i=3"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "3: transient trouble\n== attempt 2 ==\n3: waiting\n3: done\n");

  // The whole run: every instance's kept tail, each line named.
  logs = Ctl({"logs", run});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out,
            "talk(i=1) | 1: waiting\ntalk(i=1) | 1: done\n"
            "talk(i=2) | 2: waiting\ntalk(i=2) | 2: done\n"
            "talk(i=3) | 3: transient trouble\n"
            "talk(i=3) #2 | 3: waiting\ntalk(i=3) #2 | 3: done\n");

  CommandResult show = Ctl({"show", run, "talk", "i=3"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("  attempts:\n"));
  EXPECT_THAT(show.out, ::testing::ContainsRegex("#1  [0-9-]+ [0-9:.]+  [0-9.ms]+  exit 75  tried again: attempt 1 of 2 failed, "
                                                 "retrying in [^\n]*: exit code 75: 3: transient trouble\n        \\| 3: transient trouble\n"));
  EXPECT_THAT(show.out, ::testing::ContainsRegex("#2  [0-9-]+ [0-9:.]+  [0-9.ms]+  exit 0  done\n        \\| 3: waiting\n"
                                                 "        \\| 3: done\n"));
  CommandResult json = Ctl({"show", run, "talk", "i=3", "--json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"attempt_history\":[{\"attempt\":1,"));
  EXPECT_THAT(json.out, HasSubstr("\"exit_code\":75"));

  // A quiet success has no row of its own; show still lists its attempt.
  show = Ctl({"show", run, "ids"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, ::testing::ContainsRegex("  attempts:\n    #1  [0-9-]+ [0-9:.]+  [0-9.ms]+  exit 0  done\n"));
}

TEST_F(HistoryTest, StderrTailFlagBoundsWhatIsKept) {
  StartDaemon({"--stderr-tail", "8"});
  for (const std::string id : {"1", "2", "3"}) Go(id);
  CommandResult r = Ctl({"run", Flow("noisy"), "--plain", "-p", "n=1"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  CommandResult logs = Ctl({"logs", "1", "talk", "i=1"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  // "1: waiting\n1: done" kept to its last 8 bytes.
  EXPECT_EQ(logs.out, "\n1: done\n");
}

TEST_F(HistoryTest, LogsOfAnUnknownRunOrBadFilterIsAClearError) {
  StartDaemon();
  CommandResult r = Ctl({"logs", "42"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("run 42 not found"));
  r = Ctl({"logs", "42", "", "i=1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bindings need a task"));
}

}  // namespace
}  // namespace asflow::testing
