// End-to-end tests of the error rules (skip, suppress, retry, timeout), rate,
// fail fast, --keep-going, cancel and detach on Ctrl-C: the real asflowd and
// asflowctl running the flows and scripts in tests/testdata/rules, with
// exact counts of executions and exact messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

const std::string kRules = ASFLOW_TEST_DATA_DIR "/rules";

std::string RulesFlow(const std::string &name) { return kRules + "/" + name + ".flow.yaml"; }

// The summary row of `task` in a run's table: total done cached skipped
// suppressed failed cancelled.
std::string SummaryRow(const std::string &task, int total, int done, int cached, int skipped,
                       int suppressed, int failed, int cancelled) {
  return absl::StrFormat("\n  %-24s%5d%9d%9d%9d%11d%9d%10d\n", task, total, done, cached, skipped,
                         suppressed, failed, cancelled);
}

// The start times that scripts/stamp.sh appended to starts.txt, in order.
std::vector<double> StartTimes(const std::string &path) {
  std::vector<double> times;
  for (const std::string &line : Lines(ReadAll(path))) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    double t = 0;
    EXPECT_EQ(fields.size(), 2u) << line;
    if (fields.size() == 2 && absl::SimpleAtod(fields[1], &t)) times.push_back(t);
  }
  std::sort(times.begin(), times.end());
  return times;
}

// The started_ms of every STARTED event in `asflowctl run --json` output
// (one per attempt), in order.
std::vector<int64_t> StartedMs(const std::string &json_lines) {
  std::vector<int64_t> started;
  for (const std::string &line : Lines(json_lines)) {
    if (!absl::StrContains(line, "\"kind\":\"STARTED\"")) continue;
    const std::string key = "\"started_ms\":\"";
    size_t pos = line.find(key);
    int64_t ms = 0;
    EXPECT_NE(pos, std::string::npos) << line;
    if (pos == std::string::npos) continue;
    pos += key.size();
    EXPECT_TRUE(absl::SimpleAtoi(line.substr(pos, line.find('"', pos) - pos), &ms)) << line;
    started.push_back(ms);
  }
  std::sort(started.begin(), started.end());
  return started;
}

template <typename T>
T MinGap(const std::vector<T> &sorted) {
  T gap = sorted.size() < 2 ? T() : sorted[1] - sorted[0];
  for (size_t i = 1; i < sorted.size(); ++i) gap = std::min(gap, sorted[i] - sorted[i - 1]);
  return gap;
}

class RulesTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    fs::copy(kRules + "/scripts", ws_ + "/scripts",
             fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    StartDaemon({"--kill-grace", "1"});
  }

  // The line of `asflowctl runs` for run `id`.
  std::string RunsRow(int64_t id) {
    CommandResult runs = Ctl({"runs"});
    EXPECT_EQ(runs.exit_code, 0) << runs.err;
    return LineStartingWith(runs.out, absl::StrCat(id, " "));
  }

  // Submits tests/testdata/rules/FLOW.flow.yaml with --detach; returns the
  // run id it prints.
  int64_t DetachRules(const std::string &flow, std::vector<std::string> params = {}) {
    return DetachPath(RulesFlow(flow), std::move(params));
  }

  // Lines of the workspace's counter.txt (one per execution).
  std::map<std::string, int> Counter() { return CountLines(ws_ + "/counter.txt"); }
};

TEST_F(RulesTest, SuppressedWritesErrAndIsNotRunAgain) {
  const std::string err_file = ws_ + "/data/t/a1.err";
  const std::string stored =
      "exit code 3: TranscriptsDisabled: a1\nfirst line a1\nTranscriptsDisabled: a1\n";

  CommandResult first = Ctl({"run", RulesFlow("suppress"), "--plain"});
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_THAT(first.out,
              HasSubstr("\n  suppressed fetch(id=a1)  exit code 3: TranscriptsDisabled: a1\n"));
  EXPECT_THAT(first.out, HasSubstr("run 1 succeeded in "));
  EXPECT_THAT(first.out, HasSubstr(SummaryRow("fetch", 1, 0, 0, 0, 1, 0, 0)));
  EXPECT_EQ(ReadAll(err_file), stored);
  EXPECT_FALSE(FileExists(ws_ + "/data/t/a1.jsonl.zst"));
  EXPECT_EQ(Counter(), (std::map<std::string, int>{{"a1", 1}}));

  CommandResult suppressed = Ctl({"tasks", "1", "--state", "suppressed"});
  ASSERT_EQ(suppressed.exit_code, 0) << suppressed.err;
  std::vector<std::string> rows = TableRows(suppressed.out);
  ASSERT_EQ(rows.size(), 1u) << suppressed.out;
  EXPECT_THAT(rows[0], HasSubstr(" suppressed "));
  EXPECT_THAT(rows[0], HasSubstr("fetch(id=a1)"));
  EXPECT_TRUE(absl::EndsWith(rows[0], " exit code 3: TranscriptsDisabled: a1")) << rows[0];

  CommandResult show = Ctl({"show", "1", "fetch", "id=a1"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("  state     suppressed\n"));
  EXPECT_THAT(show.out, HasSubstr("  output    data/t/a1.jsonl.zst\n"));
  EXPECT_THAT(show.out, HasSubstr("  attempts  1\n"));
  EXPECT_THAT(show.out, HasSubstr("  error:\n"
                                  "    exit code 3: TranscriptsDisabled: a1\n"
                                  "    first line a1\n"
                                  "    TranscriptsDisabled: a1\n"));

  // The .err file makes the instance cached: not executed again.
  CommandResult second = Ctl({"run", RulesFlow("suppress"), "--plain"});
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_THAT(second.out, HasSubstr("  fetch: 1 instance, 1 cached\n"));
  EXPECT_THAT(second.out, HasSubstr(SummaryRow("fetch", 1, 0, 1, 0, 0, 0, 0)));
  EXPECT_EQ(Counter(), (std::map<std::string, int>{{"a1", 1}}));
  CommandResult cached = Ctl({"tasks", "2"});
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  rows = TableRows(cached.out);
  ASSERT_EQ(rows.size(), 1u) << cached.out;
  EXPECT_THAT(rows[0], HasSubstr(" cached "));
  EXPECT_TRUE(
      absl::EndsWith(rows[0], " suppressed earlier: data/t/a1.err (asflowctl reset clears it)"))
      << rows[0];

  CommandResult reset = Ctl({"reset", "--task", "fetch"});
  ASSERT_EQ(reset.exit_code, 0) << reset.out << reset.err;
  EXPECT_EQ(reset.out, "reset 1 instance; the next run runs it again\n");
  EXPECT_FALSE(FileExists(err_file));

  CommandResult third = Ctl({"run", RulesFlow("suppress"), "--plain"});
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  EXPECT_THAT(third.out,
              HasSubstr("\n  suppressed fetch(id=a1)  exit code 3: TranscriptsDisabled: a1\n"));
  EXPECT_EQ(Counter(), (std::map<std::string, int>{{"a1", 2}}));
  EXPECT_EQ(ReadAll(err_file), stored);
}

TEST_F(RulesTest, SkippedRunsAgainNextTime) {
  for (int run = 1; run <= 2; ++run) {
    CommandResult r = Ctl({"run", RulesFlow("skip"), "--plain"});
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_THAT(
        r.out,
        HasSubstr("\n  skipped    fetch(id=b1)  exit code 1: ParseError: b1 is truncated\n"));
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("run ", run, " succeeded in ")));
    EXPECT_THAT(r.out, HasSubstr(SummaryRow("fetch", 1, 0, 0, 1, 0, 0, 0)));
    EXPECT_EQ(Counter(), (std::map<std::string, int>{{"b1", run}}));
    // Nothing recorded as done and no .err file.
    EXPECT_FALSE(FileExists(ws_ + "/data/t/b1.jsonl.zst"));
    EXPECT_FALSE(FileExists(ws_ + "/data/t/b1.err"));

    CommandResult show = Ctl({"show", absl::StrCat(run), "fetch", "id=b1"});
    ASSERT_EQ(show.exit_code, 0) << show.err;
    EXPECT_THAT(show.out, HasSubstr("  state     skipped\n"));
    EXPECT_THAT(show.out, HasSubstr("  error:\n"
                                    "    exit code 1: ParseError: b1 is truncated\n"
                                    "    first line b1\n"
                                    "    ParseError: b1 is truncated\n"));
  }
  EXPECT_THAT(RunsRow(2), HasSubstr(" succeeded "));
}

TEST_F(RulesTest, RetryRunsExactlyAttemptsPlusOneWithGrowingDelays) {
  CommandResult r = Ctl({"run", RulesFlow("retry"), "--plain"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out,
              HasSubstr("\n  start      flaky(id=c1)\n"
                        "  retry      flaky(id=c1)  attempt 1 of 3 failed, retrying in 200ms: "
                        "exit code 75: temporary failure of c1\n"
                        "  start      flaky(id=c1)\n"
                        "  retry      flaky(id=c1)  attempt 2 of 3 failed, retrying in 400ms: "
                        "exit code 75: temporary failure of c1\n"
                        "  start      flaky(id=c1)\n"
                        "  failed     flaky(id=c1)  exit code 75: temporary failure of c1\n"));
  EXPECT_THAT(r.out, HasSubstr("\nerror: flaky(id=c1): exit code 75: temporary failure of c1\n"));
  EXPECT_THAT(r.out, HasSubstr(SummaryRow("flaky", 1, 0, 0, 0, 0, 1, 0)));

  std::vector<double> starts = StartTimes(ws_ + "/starts.txt");
  ASSERT_EQ(starts.size(), 3u) << ReadAll(ws_ + "/starts.txt");
  double gap1 = starts[1] - starts[0];
  double gap2 = starts[2] - starts[1];
  // The delays are lower bounds here (the gaps also hold how long `sh`
  // takes to reach `date`, which on a loaded machine is anything); the
  // exact schedule is pinned on a fake clock by
  // SchedulerTest.RetryWaitsBackoffTimesTwoToTheAttemptPlusJitter.
  EXPECT_GE(gap1, 0.2);
  EXPECT_GE(gap2, 0.4);

  CommandResult show = Ctl({"show", "1", "flaky", "id=c1"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("  state     failed\n"));
  EXPECT_THAT(show.out, HasSubstr("  attempts  3\n"));
  EXPECT_THAT(show.out, HasSubstr("  error:\n"
                                  "    exit code 75: temporary failure of c1\n"
                                  "    temporary failure of c1\n"));
  EXPECT_THAT(RunsRow(1), HasSubstr(" failed "));
}

// Issue 15 defect 5: `attempts` counted retries. Renamed `retries`; the old
// name keeps its meaning, with a warning that says so.
TEST_F(RulesTest, RetryAttemptsStillMeansRetriesWithADeprecationWarning) {
  std::string flow = ReadFileOrDie(RulesFlow("retry"));
  ASSERT_THAT(flow, HasSubstr("{retries: 2,"));
  flow.replace(flow.find("{retries: 2,"), 12, "{attempts: 2,");
  WriteFileOrDie(ws_ + "/old.flow.yaml", flow);
  CommandResult r = Ctl({"run", "old.flow.yaml", "--plain"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("asflowctl: warning: old.flow.yaml:10:13: tasks[0].retry.attempts: deprecated: it "
                               "counts retries (attempts: 2 runs up to 3 times); write retries: 2 (same meaning)\n"));
  EXPECT_EQ(StartTimes(ws_ + "/starts.txt").size(), 3u);
  EXPECT_THAT(r.out, HasSubstr("attempt 2 of 3 failed, retrying in 400ms"));
}

TEST_F(RulesTest, TimeoutKillsProcessGroup) {
  // The command ignores SIGTERM (and so do its children): only the SIGKILL
  // after --kill-grace ends it.
  std::string env_entry;
  const std::string marker = NewMarker(&env_entry);
  CommandResult r = Ctl({"run", RulesFlow("timeout"), "--plain", "-p", "marker=" + marker});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string instance = "hang()";
  EXPECT_THAT(r.out, HasSubstr("\n  failed     " + instance + "  timeout after 1s\n"));
  EXPECT_THAT(r.out, HasSubstr("\nerror: " + instance + ": timeout after 1s\n"));
  EXPECT_GE(r.seconds, 1.9) << "1 s timeout + 1 s kill grace";
  EXPECT_LT(r.seconds, ScaledSeconds(5.0));
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(env_entry).empty(); }, 2s))
      << ProcessesWithEnv(env_entry).size() << " processes of the instance remain, e.g. "
      << ProcessCmdline(ProcessesWithEnv(env_entry).front());
  EXPECT_FALSE(FileExists(ws_ + "/data/hang.txt"));
  EXPECT_FALSE(FileExists(ws_ + "/data/hang.err"));
  EXPECT_THAT(RunsRow(1), HasSubstr(" failed "));

  // With suppress {timeout: true} the same timeout is suppressed.
  std::string env_entry2;
  const std::string marker2 = NewMarker(&env_entry2);
  CommandResult s =
      Ctl({"run", RulesFlow("timeout_suppressed"), "--plain", "-p", "marker=" + marker2});
  EXPECT_EQ(s.exit_code, 0) << s.out << s.err;
  EXPECT_THAT(s.out, HasSubstr("\n  suppressed hang()  timeout after 1s\n"));
  EXPECT_THAT(s.out, HasSubstr(SummaryRow("hang", 1, 0, 0, 0, 1, 0, 0)));
  EXPECT_THAT(ReadAll(ws_ + "/data/hang.err"), HasSubstr("timeout after 1s"));
  EXPECT_FALSE(FileExists(ws_ + "/data/hang.txt"));
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(env_entry2).empty(); }, 2s))
      << ProcessesWithEnv(env_entry2).size() << " processes of the instance remain";
}

TEST_F(RulesTest, UnknownErrorFailsRunFast) {
  std::string env_entry;
  const std::string marker = NewMarker(&env_entry);
  CommandResult r = Ctl({"run", RulesFlow("failfast"), "--plain", "-p", "marker=" + marker});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_LT(r.seconds, ScaledSeconds(3.0)) << r.out;
  const std::string bad = "item(id=bad)";
  const std::string slow = "item(id=slow)";
  EXPECT_THAT(r.out, HasSubstr("\n  start      " + slow + "\n"));
  EXPECT_THAT(r.out,
              HasSubstr("\n  failed     " + bad + "  exit code 1: unexpected answer for bad\n"));
  EXPECT_THAT(r.out, HasSubstr("\nerror: " + bad + ": exit code 1: unexpected answer for bad\n"));
  EXPECT_THAT(r.out, HasSubstr("run 1 failed in "));
  // slow was killed, q1 and q2 (queued behind limit 2) never started.
  EXPECT_THAT(r.out, HasSubstr(SummaryRow("item", 4, 0, 0, 0, 0, 1, 3)));
  EXPECT_THAT(r.out, Not(HasSubstr("\n  done ")));

  // The sleeping sibling and its `sleep 30` are gone.
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(env_entry).empty(); }, 2s))
      << ProcessesWithEnv(env_entry).size() << " processes of the run remain, e.g. "
      << ProcessCmdline(ProcessesWithEnv(env_entry).front());
  EXPECT_FALSE(FileExists(ws_ + "/data/item/slow.txt"));
  EXPECT_EQ(Counter(), (std::map<std::string, int>{{"bad", 1}, {"slow", 1}}));
  EXPECT_THAT(RunsRow(1), HasSubstr(" failed "));

  CommandResult tasks = Ctl({"tasks", "1"});
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  std::vector<std::string> rows = TableRows(tasks.out);
  ASSERT_EQ(rows.size(), 4u) << tasks.out;
  EXPECT_THAT(rows[0], HasSubstr(" failed "));
  EXPECT_THAT(rows[0], HasSubstr(bad));
  for (size_t i = 1; i < rows.size(); ++i) EXPECT_THAT(rows[i], HasSubstr(" cancelled ")) << i;
  EXPECT_THAT(rows[1], HasSubstr(slow));
}

// A run that fails fast kills only what no other run needs: `slow` is
// shared with a run that goes on, runs once and is done for it.
TEST_F(RulesTest, FailFastSparesInstanceSharedWithAnotherRun) {
  std::string env_entry;
  const std::string marker = NewMarker(&env_entry);
  int64_t keeps = DetachRules("share", {"marker=" + marker});
  ASSERT_TRUE(WaitFor([&] { return Counter()["slow"] == 1; }, 10s))
      << ReadAll(ws_ + "/counter.txt");

  CommandResult fails =
      Ctl({"run", RulesFlow("share"), "--plain", "-p", "fail=yes", "-p", "marker=" + marker});
  EXPECT_EQ(fails.exit_code, 1) << fails.out << fails.err;
  EXPECT_THAT(fails.out, HasSubstr("\nerror: check(): exit code 1: broken\n"));

  CommandResult watch = Ctl({"watch", absl::StrCat(keeps)});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr(absl::StrCat("run ", keeps, " succeeded in ")));
  EXPECT_THAT(watch.out, HasSubstr(SummaryRow("slow", 1, 1, 0, 0, 0, 0, 0)));
  EXPECT_EQ(ReadAll(ws_ + "/data/share/slow.txt"), "slow\n");
  EXPECT_EQ(Counter(),
            (std::map<std::string, int>{{"slow", 1}, {"check-no", 1}, {"check-yes", 1}}));
}

// Bug: after fail fast (or cancel) the daemon drops a killed instance from
// its run at once, but the process lives on until it exits on SIGTERM or is
// SIGKILLed after --kill-grace. A run submitted meanwhile that needs the same
// instance joins that dying execution, inherits its "cancelled" result and
// fails with "w(): cancelled", though nothing in it failed.
TEST_F(RulesTest, RunAfterFailFastDoesNotInheritKilledInstance) {
  std::string env_entry;
  const std::string marker = NewMarker(&env_entry);
  CommandResult fails =
      Ctl({"run", RulesFlow("stubborn"), "--plain", "-p", "fail=yes", "-p", "marker=" + marker});
  EXPECT_EQ(fails.exit_code, 1) << fails.out << fails.err;
  EXPECT_THAT(fails.out, HasSubstr("\nerror: check(): exit code 1: broken\n"));

  // Submitted while `w` of the failed run still ignores its SIGTERM.
  CommandResult next = Ctl({"run", RulesFlow("stubborn"), "--plain", "-p", "marker=" + marker});
  EXPECT_EQ(next.exit_code, 0) << next.out << next.err;
  EXPECT_THAT(next.out, HasSubstr("run 2 succeeded in "));
  // The bug showed as "  failed     w()  cancelled" (the summary's header
  // itself ends with the word "cancelled").
  EXPECT_THAT(next.out, Not(HasSubstr("w()  cancelled")));
  EXPECT_THAT(next.out, HasSubstr(SummaryRow("w", 1, 1, 0, 0, 0, 0, 0)));
  std::string expected;
  for (int i = 0; i < 15; ++i) expected += absl::StrCat("line ", i, "\n");
  EXPECT_EQ(ReadAll(ws_ + "/data/stubborn/w.txt"), expected);
  EXPECT_EQ(Counter()["w"], 2) << ReadAll(ws_ + "/counter.txt");
  EXPECT_TRUE(WaitFor([&] { return ProcessesWithEnv(env_entry).empty(); }, 3s));
}

TEST_F(RulesTest, KeepGoingLetsIndependentWorkFinish) {
  CommandResult r = Ctl({"run", RulesFlow("keepgoing"), "--plain", "--keep-going"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out,
              HasSubstr("\n  failed     item(id=bad)  exit code 1: unexpected answer for bad\n"));
  EXPECT_THAT(r.out, HasSubstr("\nerror: item(id=bad): exit code 1: unexpected answer for bad\n"));
  EXPECT_THAT(r.out, HasSubstr("run 1 failed in "));
  EXPECT_THAT(r.out, HasSubstr(SummaryRow("item", 3, 2, 0, 0, 0, 1, 0)));
  EXPECT_THAT(r.out, HasSubstr(SummaryRow("other", 1, 1, 0, 0, 0, 0, 0)));
  EXPECT_THAT(r.out, HasSubstr(SummaryRow("after", 0, 0, 0, 0, 0, 0, 0)));

  EXPECT_EQ(ReadAll(ws_ + "/data/item/ok1.jsonl"), "{\"id\":\"ok1\"}\n");
  EXPECT_EQ(ReadAll(ws_ + "/data/item/ok2.jsonl"), "{\"id\":\"ok2\"}\n");
  EXPECT_EQ(ReadAll(ws_ + "/data/other/ok3.jsonl"), "{\"id\":\"ok3\"}\n");
  // `after` reads item's outputs: downstream of the failure, never expanded.
  EXPECT_FALSE(FileExists(ws_ + "/data/after"));
  EXPECT_EQ(Counter(),
            (std::map<std::string, int>{{"bad", 1}, {"ok1", 1}, {"ok2", 1}, {"ok3", 1}}));
  EXPECT_THAT(RunsRow(1), HasSubstr(" failed "));
}

TEST_F(RulesTest, CancelDuringRetryBackoffNeverStartsTheRetry) {
  // The backoff is the window in which the test sees the instance waiting
  // and cancels the run: 5 s, times ASFLOW_TEST_TIME_SCALE, since every
  // asflowctl on the way is that much slower under a sanitizer.
  const int64_t backoff_s = static_cast<int64_t>(std::ceil(ScaledSeconds(5.0)));
  std::string flow = ReadFileOrDie(RulesFlow("cancel_retry"));
  ASSERT_THAT(flow, HasSubstr("backoff: 5s,"));
  flow.replace(flow.find("backoff: 5s,"), 12, absl::StrCat("backoff: ", backoff_s, "s,"));
  WriteFileOrDie(ws_ + "/cancel_retry.flow.yaml", flow);
  int64_t run = DetachPath(ws_ + "/cancel_retry.flow.yaml");
  const std::string id = absl::StrCat(run);
  auto now = [] { return absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()); };
  // The first attempt fails at once; the retry is due backoff_s later.
  const std::string pending = absl::StrCat("    attempt 1 of 4 failed, retrying in ",
                                           absl::FormatDuration(absl::Seconds(backoff_s)),
                                           ": exit code 75: temporary failure of d1\n");
  ASSERT_TRUE(WaitFor(
      [&] {
        return absl::StrContains(Ctl({"show", id, "flaky", "id=d1"}).out, pending);
      },
      20s))
      << Ctl({"show", id, "flaky", "id=d1"}).out;
  CommandResult cancel = Ctl({"cancel", id});
  const double cancelled_by = now();
  EXPECT_EQ(cancel.exit_code, 0) << cancel.out << cancel.err;
  EXPECT_EQ(cancel.out, "run " + id + ": cancelled\n");

  CommandResult watch = Ctl({"watch", id});
  EXPECT_EQ(watch.exit_code, 1) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("run " + id + " cancelled in "));
  EXPECT_THAT(watch.out, HasSubstr(SummaryRow("flaky", 1, 0, 0, 0, 0, 0, 1)));
  EXPECT_THAT(watch.out, HasSubstr("\nerror: cancelled\n"));
  EXPECT_THAT(RunsRow(run), HasSubstr(" cancelled "));

  // Well past the time the retry was due (backoff_s after the first
  // attempt started; it ended at once), it has not started.
  std::vector<double> starts = StartTimes(ws_ + "/starts.txt");
  ASSERT_GE(starts.size(), 1u) << ReadAll(ws_ + "/starts.txt");
  const double due = starts[0] + static_cast<double>(backoff_s);
  // What the test shows holds only for a cancel answered before the retry
  // was due: a later one finds the retry begun, and that is no fault of
  // the daemon's.
  ASSERT_LT(cancelled_by, due) << "the cancel was answered " << cancelled_by - starts[0]
                               << " s after the first attempt, past the " << backoff_s
                               << " s backoff: the machine is slower than ASFLOW_TEST_TIME_SCALE allows";
  const double past_due = due + ScaledSeconds(1.5);
  WaitFor([&] { return StartTimes(ws_ + "/starts.txt").size() > 1 || now() > past_due; }, 30s);
  EXPECT_EQ(StartTimes(ws_ + "/starts.txt").size(), 1u);
  CommandResult show = Ctl({"show", id, "flaky", "id=d1"});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("  state     cancelled\n"));
  EXPECT_THAT(show.out, HasSubstr("  attempts  1\n"));
}

// Rate spacing is checked on the daemon's start times (started_ms of the
// STARTED events, exact to the millisecond) and, looser, on the times the
// commands themselves record: on a loaded machine `sh` may take a while to
// reach `date`.
TEST_F(RulesTest, RateSpacesStarts) {
  CommandResult r = Ctl({"run", RulesFlow("rate"), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::vector<int64_t> started = StartedMs(r.out);
  ASSERT_EQ(started.size(), 20u) << r.out;
  // 19 intervals of 1/5 s.
  EXPECT_GE(started.back() - started.front(), 3799);
  EXPECT_GE(MinGap(started), 199) << absl::StrJoin(started, " ");

  // The commands did run that spread out (a sanity bound: on a loaded
  // machine the first `sh` can take a few hundred ms to reach `date`).
  std::vector<double> stamps = StartTimes(ws_ + "/starts.txt");
  ASSERT_EQ(stamps.size(), 20u) << ReadAll(ws_ + "/starts.txt");
  EXPECT_GE(stamps.back() - stamps.front(), 3.0)
      << ReadAll(ws_ + "/starts.txt") << absl::StrJoin(started, " ");
  EXPECT_EQ(Lines(ReadAll(ws_ + "/data/r/r20.jsonl")),
            std::vector<std::string>{"{\"id\":\"r20\"}"});
}

TEST_F(RulesTest, RateIsSharedAcrossRuns) {
  Launch launch_a, launch_b;
  pid_t a = SpawnCtl({"run", RulesFlow("rate_batch"), "--json", "-p", "batch=a"}, &launch_a);
  pid_t b = SpawnCtl({"run", RulesFlow("rate_batch"), "--json", "-p", "batch=b"}, &launch_b);
  EXPECT_EQ(WaitChild(a, 20s), 0) << ReadAll(launch_a.stderr_path);
  EXPECT_EQ(WaitChild(b, 20s), 0) << ReadAll(launch_b.stderr_path);
  std::vector<int64_t> started = StartedMs(ReadAll(launch_a.stdout_path));
  std::vector<int64_t> started_b = StartedMs(ReadAll(launch_b.stdout_path));
  EXPECT_EQ(started.size(), 5u);
  EXPECT_EQ(started_b.size(), 5u);
  started.insert(started.end(), started_b.begin(), started_b.end());
  std::sort(started.begin(), started.end());
  ASSERT_EQ(started.size(), 10u);
  EXPECT_GE(started.back() - started.front(), 1799);
  EXPECT_GE(MinGap(started), 199) << absl::StrJoin(started, " ");
  EXPECT_EQ(StartTimes(ws_ + "/starts.txt").size(), 10u) << ReadAll(ws_ + "/starts.txt");
}

TEST_F(RulesTest, BadRulesRejectedAtSubmit) {
  for (const char *name :
       {"bad_regex", "bad_attempts", "bad_matcher", "bad_rate", "bad_retry_no_matcher"}) {
    fs::copy(RulesFlow(name), ws_);
  }
  struct Case {
    std::string file;
    std::string err;
  };
  const std::vector<Case> cases = {
      {"bad_regex.flow.yaml",
       "asflowctl: bad_regex.flow.yaml:6:12: tasks[0].skip.stderr: invalid RE2 regex "
       "'Parse(Error': missing ): Parse(Error\n"},
      {"bad_attempts.flow.yaml",
       "asflowctl: bad_attempts.flow.yaml:6:13: tasks[0].retry.attempts: must be >= 0, got -1\n"},
      {"bad_matcher.flow.yaml",
       "asflowctl: bad_matcher.flow.yaml:6:16: tasks[0].suppress.exit_code: unknown field "
       "'exit_code' (expected one of: exit_codes, signals, stderr, timeout, errors)\n"},
      {"bad_rate.flow.yaml",
       "asflowctl: bad_rate.flow.yaml:6:5: tasks[0].rate: rate must be > 0, got '0/s' "
       "(leave rate empty for no limit)\n"},
      {"bad_retry_no_matcher.flow.yaml",
       "asflowctl: bad_retry_no_matcher.flow.yaml:6:5: tasks[0].retry: retries only the "
       "failures a matcher names: add exit_codes, signals, stderr, timeout or errors\n"},
  };
  for (const Case &c : cases) {
    CommandResult r = Ctl({"run", c.file});
    EXPECT_EQ(r.exit_code, 2) << c.file;
    EXPECT_EQ(r.out, "") << c.file;
    EXPECT_EQ(r.err, c.err) << c.file;
  }
  CommandResult runs = Ctl({"runs"});
  EXPECT_EQ(runs.exit_code, 0) << runs.err;
  EXPECT_EQ(TableRows(runs.out).size(), 0u) << runs.out;
}

// Issue 15 defect 1: `reset --task` in one project reset instances of
// every workspace and deleted their .err files (permanent suppressions).
TEST_F(RulesTest, ResetByTaskTouchesOnlyTheCurrentWorkspace) {
  const std::string other = home_ + "/other";
  fs::create_directories(other);
  fs::copy(ws_ + "/scripts", other + "/scripts", fs::copy_options::recursive);
  for (const std::string &dir : {ws_, other}) {
    CommandResult r = Ctl({"run", RulesFlow("suppress"), "--plain"}, dir);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    ASSERT_TRUE(FileExists(dir + "/data/t/a1.err")) << dir;
  }

  CommandResult here = Ctl({"reset", "--task", "fetch"});
  ASSERT_EQ(here.exit_code, 0) << here.out << here.err;
  EXPECT_EQ(here.out, "reset 1 instance; the next run runs it again\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/t/a1.err"));
  EXPECT_TRUE(FileExists(other + "/data/t/a1.err"));
  CommandResult kept = Ctl({"tasks", "2", "--state", "suppressed"});
  EXPECT_EQ(TableRows(kept.out).size(), 1u) << kept.out;

  // Nothing left here; the other workspace's is named, not touched.
  CommandResult again = Ctl({"reset", "--task", "fetch"});
  ASSERT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_EQ(again.out, absl::StrCat("nothing to reset: no suppressed or failed instance matched in ", ws_,
                                    "\n(1 matched in 1 other workspace: asflowctl reset --all-workspaces ... "
                                    "lists them)\n"));
  EXPECT_TRUE(FileExists(other + "/data/t/a1.err"));

  // Suppressed here again (run 3): widened, the reset touches two runs. It
  // lists them and, with no terminal to ask on, refuses.
  CommandResult third = Ctl({"run", RulesFlow("suppress"), "--plain"});
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  CommandResult wide = Ctl({"reset", "--task", "fetch", "--all-workspaces"});
  EXPECT_EQ(wide.exit_code, 2) << wide.out << wide.err;
  EXPECT_EQ(wide.out, absl::StrFormat("this resets 2 instances in 2 runs and 2 workspaces:\n"
                                      "  run %-5d %-10s %-40s %s\n"
                                      "  run %-5d %-10s %-40s %s\n",
                                      2, "suppressed", "fetch(id=a1)", other + "/data/t/a1.jsonl.zst", 3,
                                      "suppressed", "fetch(id=a1)", ws_ + "/data/t/a1.jsonl.zst"));
  EXPECT_EQ(wide.err, "asflowctl: not resetting without a terminal to ask on: pass --yes to reset them\n");
  EXPECT_TRUE(FileExists(ws_ + "/data/t/a1.err"));
  EXPECT_TRUE(FileExists(other + "/data/t/a1.err"));

  if (HaveTmux()) {
    // On a terminal it asks; anything but y leaves everything as it was.
    std::string server = StartTmux({kCtl, "--socket", socket_, "reset", "--task", "fetch", "--all-workspaces"});
    std::string screen;
    ASSERT_TRUE(WaitForScreen(
        server, [](const std::string &s) { return absl::StrContains(s, "reset them? [y/N]"); }, 10s, &screen))
        << screen;
    SendKeys(server, {"n", "Enter"});
    EXPECT_TRUE(WaitForScreen(
        server, [](const std::string &s) { return absl::StrContains(s, "\nexited with "); }, 10s, &screen))
        << screen;
    EXPECT_THAT(screen, HasSubstr("reset them? [y/N] n\nnothing reset\nexited with 2\n"));
    EXPECT_TRUE(FileExists(ws_ + "/data/t/a1.err"));
    EXPECT_TRUE(FileExists(other + "/data/t/a1.err"));
  }

  CommandResult yes = Ctl({"reset", "--task", "fetch", "--all-workspaces", "--yes"});
  ASSERT_EQ(yes.exit_code, 0) << yes.out << yes.err;
  EXPECT_EQ(yes.out, "reset 2 instances; the next run runs them again\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/t/a1.err"));
  EXPECT_FALSE(FileExists(other + "/data/t/a1.err"));
}

// Issue 15 defect 6: the .err file's own path names the instance.
TEST_F(RulesTest, ResetByTheErrFilesPath) {
  CommandResult r = Ctl({"run", RulesFlow("suppress"), "--plain"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  CommandResult reset = Ctl({"reset", "--path", "data/t/a1.err"});
  ASSERT_EQ(reset.exit_code, 0) << reset.out << reset.err;
  EXPECT_EQ(reset.out, "reset 1 instance; the next run runs it again\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/t/a1.err"));
}

TEST_F(RulesTest, DetachOnInterruptWithoutTty) {
  Launch launch;
  pid_t ctl = SpawnCtl({"run", RulesFlow("detach"), "--plain"}, &launch);
  ASSERT_TRUE(WaitFor(
      [&] { return absl::StrContains(ReadAll(launch.stdout_path), "  start      nap(id=e2)\n"); },
      10s))
      << ReadAll(launch.stdout_path) << ReadAll(launch.stderr_path);
  ASSERT_EQ(kill(ctl, SIGINT), 0);
  EXPECT_EQ(WaitChild(ctl, 5s), 130) << ReadAll(launch.stdout_path) << ReadAll(launch.stderr_path);
  EXPECT_EQ(ReadAll(launch.stderr_path),
            "detached from run 1; it goes on. Reattach with: asflowctl watch 1\n");
  EXPECT_THAT(ReadAll(launch.stdout_path), Not(HasSubstr("\n  done ")));

  CommandResult watch = Ctl({"watch", "1"});
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("run 1 succeeded in "));
  EXPECT_THAT(watch.out, HasSubstr(SummaryRow("nap", 2, 2, 0, 0, 0, 0, 0)));
  EXPECT_EQ(ReadAll(ws_ + "/data/nap/e1.txt"), "e1\n");
  EXPECT_EQ(ReadAll(ws_ + "/data/nap/e2.txt"), "e2\n");
  EXPECT_EQ(Counter(), (std::map<std::string, int>{{"e1", 1}, {"e2", 1}}));
}

}  // namespace
}  // namespace asflow::testing
