// Schedules on a fake clock: when --every and cron expressions fire, that
// missed fires make up one, that a fire whose previous run still goes is
// skipped and counted, that the flow file is read again at every fire, and
// that all of it survives a restart (a real Store in a temporary file).
#include "server/schedules.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/civil_time.h"
#include "tests/server/scheduler_fakes.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::FakeClock;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

using ::testing::HasSubstr;

absl::Time Utc(int y, int mo, int d, int h, int mi) {
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi), absl::UTCTimeZone());
}

absl::Time NextCron(const std::string& expr, absl::Time after) {
  absl::StatusOr<CronExpr> e = CronExpr::Parse(expr);
  EXPECT_TRUE(e.ok()) << e.status();
  return e.ok() ? e->Next(after) : absl::InfinitePast();
}

TEST(CronExprTest, StepsInHours) {
  EXPECT_EQ(NextCron("0 */6 * * *", Utc(2026, 12, 4, 5, 59)), Utc(2026, 12, 4, 6, 0));
  // Strictly after: a fire time itself is not the next one.
  EXPECT_EQ(NextCron("0 */6 * * *", Utc(2026, 12, 4, 6, 0)), Utc(2026, 12, 4, 12, 0));
  EXPECT_EQ(NextCron("0 */6 * * *", Utc(2026, 12, 4, 18, 1)), Utc(2026, 12, 5, 0, 0));
}

TEST(CronExprTest, RangesListsAndStepsFromAStart) {
  // Weekdays 9-17 at :15 and :45; 2026-12-04 is a Friday.
  EXPECT_EQ(NextCron("15,45 9-17 * * 1-5", Utc(2026, 12, 4, 17, 45)), Utc(2026, 12, 7, 9, 15));
  EXPECT_EQ(NextCron("15,45 9-17 * * mon-fri", Utc(2026, 12, 4, 9, 16)), Utc(2026, 12, 4, 9, 45));
  // 5/20: minutes 5, 25, 45.
  EXPECT_EQ(NextCron("5/20 * * * *", Utc(2026, 12, 4, 10, 26)), Utc(2026, 12, 4, 10, 45));
  EXPECT_EQ(NextCron("10-30/10 * * * *", Utc(2026, 12, 4, 10, 30)), Utc(2026, 12, 4, 11, 10));
  // Month names, Sunday as 7.
  EXPECT_EQ(NextCron("0 12 * jan,jul 7", Utc(2026, 12, 4, 0, 0)), Utc(2027, 1, 3, 12, 0));
}

TEST(CronExprTest, BothDayFieldsMatchEither) {
  // The 13th, or any Friday (Vixie cron): Friday 2026-12-04 comes first.
  EXPECT_EQ(NextCron("0 0 13 * 5", Utc(2026, 12, 1, 0, 0)), Utc(2026, 12, 4, 0, 0));
  EXPECT_EQ(NextCron("0 0 13 * 5", Utc(2026, 12, 11, 0, 0)), Utc(2026, 12, 13, 0, 0));
  // Only the day of month restricted: that day, whatever the weekday.
  EXPECT_EQ(NextCron("30 2 1 * *", Utc(2026, 12, 4, 0, 0)), Utc(2027, 1, 1, 2, 30));
  EXPECT_EQ(NextCron("@daily", Utc(2026, 12, 4, 0, 0)), Utc(2026, 12, 5, 0, 0));
  EXPECT_EQ(NextCron("0 0 29 2 *", Utc(2026, 12, 4, 0, 0)), Utc(2028, 2, 29, 0, 0));
  EXPECT_EQ(NextCron("0 0 30 2 *", Utc(2026, 12, 4, 0, 0)), absl::InfiniteFuture());
}

TEST(CronExprTest, BadExpressionsNameTheFieldAndItem) {
  EXPECT_EQ(CronExpr::Parse("61 * * * *").status().message(), "cron '61 * * * *': minute: 61 is out of range 0-59");
  EXPECT_EQ(CronExpr::Parse("0 */0 * * *").status().message(),
            "cron '0 */0 * * *': hour: step '0' is not a positive number");
  EXPECT_EQ(CronExpr::Parse("0 0 * foo *").status().message(), "cron '0 0 * foo *': month: 'foo' is not a number");
  EXPECT_EQ(CronExpr::Parse("0 0 *").status().message(),
            "cron '0 0 *': expected 5 fields (minute hour day-of-month month day-of-week), got 3");
  EXPECT_EQ(CronExpr::Parse("0 5-2 * * *").status().message(), "cron '0 5-2 * * *': hour: range 5-2 is empty");
}

TEST(ScheduleTimesTest, EveryCountsFromItsAnchor) {
  const absl::Time anchor = absl::FromUnixSeconds(1'000'000);
  absl::StatusOr<ScheduleTimes> t = ScheduleTimes::Make(absl::Hours(6), "", anchor);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->NextAfter(anchor), anchor + absl::Hours(6));
  EXPECT_EQ(t->NextAfter(anchor + absl::Hours(6)), anchor + absl::Hours(12));
  EXPECT_EQ(t->NextAfter(anchor + absl::Hours(61)), anchor + absl::Hours(66));
  EXPECT_EQ(ScheduleTimes::Make(absl::Milliseconds(500), "", anchor).status().message(), "--every 500ms: at least 1s");
  EXPECT_EQ(ScheduleTimes::Make(absl::Hours(1), "0 * * * *", anchor).status().message(),
            "a schedule needs exactly one of --every or --cron");
  EXPECT_EQ(*ParseEvery("1d"), absl::Hours(24));
  EXPECT_EQ(*ParseEvery("1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParseEvery("90m"), absl::Minutes(90));
  EXPECT_FALSE(ParseEvery("soon").ok());
}

constexpr char kFlow[] = R"(name: nightly
params:
  n: "1"
tasks:
  - name: ids
    run: [seq, "{n}"]
)";

class SchedulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ws_ = tmp_.Join("ws");
    std::filesystem::create_directories(ws_);
    WriteFileOrDie(ws_ + "/flow.yaml", kFlow);
    OpenStore();
  }

  void OpenStore() {
    auto store = Store::Open(tmp_.Join("state.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // A Schedules over the store whose Submit records the request and
  // answers with the next run id.
  std::unique_ptr<Schedules> Make() {
    ScheduleDeps deps;
    deps.store = store_.get();
    deps.clock = &clock_;
    deps.submit = [this](v1::SubmitFlowRequest request, std::function<void(absl::StatusOr<int64_t>)> done) {
      submitted_.push_back(request);
      done(static_cast<int64_t>(100 + submitted_.size()));
    };
    deps.check_workspace = [](v1::SubmitFlowRequest*) { return absl::OkStatus(); };
    deps.run_state = [this](int64_t id) -> absl::StatusOr<v1::RunState> {
      auto it = states_.find(id);
      if (it == states_.end()) return absl::NotFoundError("no run");
      return it->second;
    };
    auto s = std::make_unique<Schedules>(deps);
    EXPECT_TRUE(s->Load().ok());
    return s;
  }

  absl::StatusOr<v1::Schedule> Add(Schedules& s, const std::string& every, const std::string& cron = "",
                                   const std::string& file = "") {
    v1::AddScheduleRequest r;
    r.set_flow_file(file.empty() ? ws_ + "/flow.yaml" : file);
    r.set_workspace(ws_);
    r.set_every(every);
    r.set_cron(cron);
    (*r.mutable_params())["n"] = "3";
    absl::Notification added;
    absl::StatusOr<v1::Schedule> out;
    s.Add(r, [&](absl::StatusOr<v1::Schedule> got) {
      out = std::move(got);
      added.Notify();
    });
    added.WaitForNotification();
    return out;
  }

  v1::Schedule Only(Schedules& s) {
    std::vector<v1::Schedule> all = s.List();
    EXPECT_EQ(all.size(), 1u);
    return all.empty() ? v1::Schedule() : all[0];
  }

  TempDir tmp_;
  std::string ws_;
  FakeClock clock_{absl::FromUnixSeconds(1'796'000'000)};
  std::unique_ptr<Store> store_;
  std::vector<v1::SubmitFlowRequest> submitted_;
  std::map<int64_t, v1::RunState> states_;
};

TEST_F(SchedulesTest, EveryFiresOncePerPeriodAndNotBefore) {
  auto s = Make();
  absl::StatusOr<v1::Schedule> added = Add(*s, "6h");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->name(), "nightly");
  EXPECT_EQ(s->NextWakeup(), clock_.Now() + absl::Hours(6));
  clock_.Advance(absl::Hours(6) - absl::Milliseconds(1));
  s->Tick();
  EXPECT_TRUE(submitted_.empty());
  clock_.Advance(absl::Milliseconds(1));
  s->Tick();
  s->Tick();
  ASSERT_EQ(submitted_.size(), 1u);
  EXPECT_EQ(submitted_[0].params().at("n"), "3");
  EXPECT_EQ(submitted_[0].workspace(), ws_);
  EXPECT_EQ(submitted_[0].schedule(), "nightly");
  EXPECT_EQ(submitted_[0].spec().name(), "nightly");
  EXPECT_EQ(Only(*s).last_run_id(), 101);
  EXPECT_EQ(s->NextWakeup(), clock_.Now() + absl::Hours(6));
}

TEST_F(SchedulesTest, CronFiresAtItsMinutesInUtc) {
  clock_ = FakeClock(Utc(2026, 12, 4, 5, 10));
  auto s = Make();
  ASSERT_TRUE(Add(*s, "", "0 */6 * * *").ok());
  EXPECT_EQ(s->NextWakeup(), Utc(2026, 12, 4, 6, 0));
  clock_.Advance(absl::Minutes(50));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 1u);
  EXPECT_EQ(s->NextWakeup(), Utc(2026, 12, 4, 12, 0));
}

TEST_F(SchedulesTest, FiresMissedWhileTheDaemonWasDownRunOnceAtStart) {
  {
    auto s = Make();
    ASSERT_TRUE(Add(*s, "1h").ok());
  }
  // Down for ten periods and a bit.
  clock_.Advance(absl::Hours(10) + absl::Minutes(30));
  OpenStore();
  auto s = Make();
  s->Tick();
  s->Tick();
  EXPECT_EQ(submitted_.size(), 1u);
  // The next fire keeps the period's phase: at the 11th hour.
  EXPECT_EQ(s->NextWakeup(), clock_.Now() + absl::Minutes(30));
}

TEST_F(SchedulesTest, AFireWhilePreviousRunGoesIsSkippedCountedAndKept) {
  auto s = Make();
  ASSERT_TRUE(Add(*s, "1m").ok());
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  ASSERT_EQ(submitted_.size(), 1u);
  states_[101] = v1::RUN_RUNNING;
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 1u);
  v1::Schedule now = Only(*s);
  EXPECT_EQ(now.skips(), 2);
  EXPECT_EQ(now.last_skip_ms(), absl::ToUnixMillis(clock_.Now()));
  EXPECT_EQ(now.last_run_state(), v1::RUN_RUNNING);
  // The run ended: the next fire starts one.
  states_[101] = v1::RUN_FAILED;
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 2u);
  ASSERT_TRUE(store_->Flush().ok());
  // Skips and the last run survive a restart.
  s.reset();
  auto again = Make();
  v1::Schedule kept = Only(*again);
  EXPECT_EQ(kept.skips(), 2);
  EXPECT_EQ(kept.last_run_id(), 102);
  EXPECT_EQ(kept.runs_started(), 2);
}

TEST_F(SchedulesTest, TheFlowFileIsReadAgainAtEveryFire) {
  auto s = Make();
  ASSERT_TRUE(Add(*s, "1m").ok());
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  std::string edited = kFlow;
  edited.replace(edited.find("seq"), 3, "echo");
  WriteFileOrDie(ws_ + "/flow.yaml", edited);
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  ASSERT_EQ(submitted_.size(), 2u);
  EXPECT_EQ(submitted_[0].spec().tasks(0).run(0), "seq");
  EXPECT_EQ(submitted_[1].spec().tasks(0).run(0), "echo");
  // A broken edit starts nothing and says why; fixing it starts again.
  WriteFileOrDie(ws_ + "/flow.yaml", "name: nightly\ntasks: 3\n");
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 2u);
  EXPECT_THAT(Only(*s).last_error(), HasSubstr(ws_ + "/flow.yaml:2"));
  WriteFileOrDie(ws_ + "/flow.yaml", kFlow);
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 3u);
  EXPECT_EQ(Only(*s).last_error(), "");
}

// The daemon parses YAML itself when a schedule fires: a flow file edited
// into what hung yaml-cpp 0.7's LoadAll (a ',' outside a flow collection,
// SpecParserTest.YamlCppLoadAllHangOnACommaOutsideAFlowCollection) fails
// that fire with the file's position, and the next good edit fires again.
TEST_F(SchedulesTest, AFlowFileThatHungYamlCppFailsTheFireNotTheDaemon) {
  auto s = Make();
  ASSERT_TRUE(Add(*s, "1m").ok());
  WriteFileOrDie(ws_ + "/flow.yaml", ",\n" + std::string(kFlow));
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_TRUE(submitted_.empty());
  EXPECT_EQ(Only(*s).last_error(),
            ws_ + "/flow.yaml:1:1: invalid YAML: ',' outside a flow collection ([...] or {...})");
  WriteFileOrDie(ws_ + "/flow.yaml", kFlow);
  clock_.Advance(absl::Minutes(1));
  s->Tick();
  EXPECT_EQ(submitted_.size(), 1u);
}

TEST_F(SchedulesTest, RefusesAFlowFileOutsideTheWorkspaceAndNamesInUse) {
  auto s = Make();
  WriteFileOrDie(tmp_.Join("elsewhere.yaml"), kFlow);
  EXPECT_THAT(Add(*s, "1h", "", tmp_.Join("elsewhere.yaml")).status().message(),
              HasSubstr("is not inside the workspace"));
  ASSERT_TRUE(Add(*s, "1h").ok());
  EXPECT_EQ(Add(*s, "2h").status().message(), "a schedule named 'nightly' exists; choose another with --name");
}

TEST_F(SchedulesTest, PausedDoesNotFireAndResumeDoesNotMakeUpMissedFires) {
  auto s = Make();
  ASSERT_TRUE(Add(*s, "1h").ok());
  v1::ScheduleRef ref;
  ref.set_name("nightly");
  absl::Notification paused;
  s->SetPaused(ref, true, [&](absl::StatusOr<v1::Schedule>) { paused.Notify(); });
  paused.WaitForNotification();
  clock_.Advance(absl::Hours(5));
  s->Tick();
  EXPECT_TRUE(submitted_.empty());
  EXPECT_EQ(s->NextWakeup(), absl::InfiniteFuture());
  absl::Notification resumed;
  s->SetPaused(ref, false, [&](absl::StatusOr<v1::Schedule>) { resumed.Notify(); });
  resumed.WaitForNotification();
  s->Tick();
  EXPECT_TRUE(submitted_.empty());
  EXPECT_EQ(s->NextWakeup(), clock_.Now() + absl::Hours(1));
}

}  // namespace
}  // namespace asflow
