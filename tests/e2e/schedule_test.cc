// End-to-end tests of schedules and --keep-runs through the real asflowd
// and asflowctl: a schedule every second gives a skipped instance its
// retry on the next run by itself; a fire while the previous run goes is
// skipped and counted; schedules survive a restart; old runs leave `runs`
// while a suppressed instance's error text stays.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Instance i=2 fails with a ParseError the first time (a skip rule), then
// works.
constexpr char kFlaky[] = R"(name: flaky
tasks:
  - name: fetch
    for_each: {values: ["1", "2", "3"], as: i}
    on: out/{i}.txt
    run: [sh, -c, 'if [ {i} = 2 ] && [ ! -e tried ]; then touch tried; echo ParseError >&2; exit 1; fi; echo ok {i}']
    skip: {stderr: ParseError}
)";

constexpr char kSlow[] = R"(name: slow
tasks:
  - name: wait
    run: [sleep, "2.5"]
)";

// i=2 is suppressed; nothing else fails. The others are cached after
// the first run.
constexpr char kSuppress[] = R"(name: keep
tasks:
  - name: fetch
    for_each: {values: ["1", "2", "3"], as: i}
    on: out/{i}.txt
    run: [sh, -c, 'if [ {i} = 2 ]; then echo TranscriptsDisabled for {i} >&2; exit 3; fi; echo ok {i}']
    suppress: {exit_codes: [3]}
)";

class ScheduleTest : public E2eTest {};

TEST_F(ScheduleTest, ASkippedInstanceGetsItsRetryOnTheNextScheduledRun) {
  StartDaemon();
  WriteFileOrDie(ws_ + "/flaky.yaml", kFlaky);
  CommandResult add = Ctl({"schedule", "add", "flaky.yaml", "--every", "1s"});
  ASSERT_EQ(add.exit_code, 0) << add.err;
  EXPECT_THAT(add.out, HasSubstr("schedule 'flaky' added: every 1s, next at "));
  ASSERT_TRUE(WaitFor([&] { return FileExists(ws_ + "/out/2.txt"); }, 20s)) << Ctl({"runs"}).out;
  EXPECT_EQ(ReadAll(ws_ + "/out/2.txt"), "ok 2\n");
  CommandResult removed = Ctl({"schedule", "remove", "flaky"});
  EXPECT_EQ(removed.exit_code, 0) << removed.err;
  // The first run skipped i=2 (SKIPPED 1), a later one ran it; `runs`
  // names the schedule that started each.
  CommandResult runs = Ctl({"runs"});
  ASSERT_EQ(runs.exit_code, 0) << runs.err;
  std::vector<std::string> rows = TableRows(runs.out);
  ASSERT_GE(rows.size(), 2u) << runs.out;
  for (const std::string& row : rows) EXPECT_THAT(row, HasSubstr("(schedule flaky)"));
  EXPECT_THAT(rows.back(), ::testing::ContainsRegex("^1 +succeeded +flaky .* 3 +2 +0 +1 +0 +0 +0 "));
  CommandResult first = Ctl({"show", "1", "fetch", "i=2"});
  EXPECT_THAT(first.out, HasSubstr("ParseError"));
}

TEST_F(ScheduleTest, AFireWhileThePreviousRunGoesIsSkippedAndListed) {
  StartDaemon();
  WriteFileOrDie(ws_ + "/slow.yaml", kSlow);
  ASSERT_EQ(Ctl({"schedule", "add", "slow.yaml", "--every", "1s", "--name", "sleepy"}).exit_code, 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        CommandResult list = Ctl({"schedule", "list", "--json"});
        return absl::StrContains(list.out, "\"skips\":\"2\"");
      },
      15s))
      << Ctl({"schedule", "list"}).out;
  CommandResult list = Ctl({"schedule", "list"});
  EXPECT_THAT(list.out, HasSubstr("sleepy"));
  EXPECT_THAT(list.out, HasSubstr("its previous run was still going"));
  ASSERT_EQ(Ctl({"schedule", "pause", "sleepy"}).exit_code, 0);
  EXPECT_THAT(Ctl({"schedule", "list"}).out, HasSubstr("paused"));
  // Removing it leaves the run going.
  ASSERT_EQ(Ctl({"schedule", "remove", "sleepy"}).exit_code, 0);
  EXPECT_EQ(Ctl({"schedule", "remove", "sleepy"}).err, "asflowctl: no schedule is named 'sleepy'\n");
}

TEST_F(ScheduleTest, SchedulesSurviveARestartAndBadOnesAreRefused) {
  StartDaemon();
  WriteFileOrDie(ws_ + "/flaky.yaml", kFlaky);
  CommandResult bad = Ctl({"schedule", "add", "flaky.yaml", "--cron", "0 25 * * *"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "asflowctl: cron '0 25 * * *': hour: 25 is out of range 0-23\n");
  EXPECT_EQ(Ctl({"schedule", "add", "flaky.yaml"}).exit_code, 2);
  ASSERT_EQ(Ctl({"schedule", "add", "flaky.yaml", "--cron", "0 3 * * *", "--name", "nightly"}).exit_code, 0);
  KillDaemon();
  StartDaemon();
  CommandResult list = Ctl({"schedule", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_THAT(list.out, ::testing::ContainsRegex("nightly +cron 0 3 \\* \\* \\* +[0-9-]+ 03:00:00 +- +- +- +0 +0"));
}

TEST_F(ScheduleTest, KeepRunsPrunesOldRunsAndKeepsSuppressedErrorText) {
  StartDaemon({"--keep-runs", "2", "--prune-every", "0.2"});
  WriteFileOrDie(ws_ + "/keep.yaml", kSuppress);
  for (int i = 0; i < 4; ++i) {
    CommandResult r = Ctl({"run", "keep.yaml", "--plain"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  ASSERT_TRUE(WaitFor([&] { return TableRows(Ctl({"runs"}).out).size() == 2; }, 10s)) << Ctl({"runs"}).out;
  std::vector<std::string> rows = TableRows(Ctl({"runs"}).out);
  EXPECT_THAT(rows[0], ::testing::StartsWith("4 "));
  EXPECT_THAT(rows[1], ::testing::StartsWith("3 "));
  // Run 1 suppressed i=2: the .err file and the stored error text stay.
  EXPECT_THAT(ReadAll(ws_ + "/out/2.err"), HasSubstr("TranscriptsDisabled for 2"));
  CommandResult show = Ctl({"show", "1", "fetch", "i=2"});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("TranscriptsDisabled for 2"));
  // Run 2 kept nothing (all cached): it is gone.
  EXPECT_NE(Ctl({"show", "2", "fetch", "i=1"}).exit_code, 0);
  // Reset finds the kept row and asks for it again.
  CommandResult reset = Ctl({"reset", "--task", "fetch", "--state", "suppressed", "--yes"});
  EXPECT_EQ(reset.exit_code, 0) << reset.err;
  EXPECT_FALSE(FileExists(ws_ + "/out/2.err"));
}

TEST_F(ScheduleTest, KeepRunsIsReadFromTheConfigFileAndCheckedThere) {
  WriteFileOrDie(tmp_.Join("asflowd.conf"), "keep-runs = \"soon\"\nprune-every = 0.2\n");
  CommandResult r = RunProcess(
      MakeLaunch({kDaemon, "--config", tmp_.Join("asflowd.conf"), "--socket", socket_, "--state", state_}, tmp_.path()),
      10s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("asflowd: --keep-runs 'soon': 'soon' is neither a count nor an age"));
}

}  // namespace
}  // namespace asflow::testing
