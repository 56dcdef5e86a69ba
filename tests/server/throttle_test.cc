#include "server/throttle.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"
#include "server/plan.h"

namespace asflow {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

KeyConfig Key(int limit, double rate = 0, std::string text = "") {
  KeyConfig c;
  c.limit = limit;
  c.rate_per_second = rate;
  c.rate = text;
  return c;
}

// Drains everything startable at `now`; each item starts as the execution
// with the same id.
std::vector<ExecId> StartAll(Plan& plan, absl::Time now) {
  std::vector<ExecId> out;
  while (std::optional<PlanPick> pick = plan.NextStartable(now)) {
    plan.Bind(pick->item);
    out.push_back(pick->item);
  }
  return out;
}

TEST(ThrottleTest, KeyLimitHoldsAcrossTwoTasksAndTwoRuns) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("youtube", Key(3), "a").ok());
  ASSERT_TRUE(throttle.Define("youtube", Key(3), "b").ok());
  Gate* yt = throttle.FindKey("youtube");
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("a.extract", 10, "local");
  plan.SetTaskDef("b.comments", 10, "local");
  plan.SetTaskGates("a.extract", {throttle.TaskGate("a.extract"), yt});
  plan.SetTaskGates("b.comments", {throttle.TaskGate("b.comments"), yt});
  for (ExecId id = 1; id <= 4; ++id) plan.Enqueue(id, "a.extract", /*run_id=*/1);
  for (ExecId id = 11; id <= 14; ++id) plan.Enqueue(id, "b.comments", /*run_id=*/2);
  // Three in flight through the key, whichever task and run they belong to.
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{1, 11, 2}));
  EXPECT_EQ(yt->in_flight, 3);
  EXPECT_EQ(plan.QueuedThrough(yt), 5);
  EXPECT_EQ(plan.NextWakeup(), absl::InfiniteFuture());  // waits on a finish, not on time
  plan.Finished(11);
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{12}));
  plan.Finished(1);
  plan.Finished(2);
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{3, 13}));
  EXPECT_EQ(yt->in_flight, 3);
  EXPECT_EQ(plan.QueuedThrough(yt), 2);
}

TEST(ThrottleTest, KeyRateSpacesStartsOfEveryTaskUsingIt) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("api", Key(0, 2, "2/s"), "f").ok());
  Gate* api = throttle.FindKey("api");
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskDef("f.b", 10, "local");
  plan.SetTaskGates("f.a", {api});
  plan.SetTaskGates("f.b", {api});
  plan.Enqueue(1, "f.a", 1);
  plan.Enqueue(2, "f.b", 1);
  plan.Enqueue(3, "f.a", 1);
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{1}));
  EXPECT_EQ(plan.NextWakeup(), kT0 + absl::Milliseconds(500));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(499)), (std::vector<ExecId>{}));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(500)), (std::vector<ExecId>{2}));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(1000)), (std::vector<ExecId>{3}));
}

TEST(ThrottleTest, ReleaseOfAPickGivesTheKeyBack) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("api", Key(1, 1, "1/s"), "f").ok());
  Gate* api = throttle.FindKey("api");
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskGates("f.a", {api});
  plan.Enqueue(1, "f.a", 1);
  plan.Enqueue(2, "f.a", 1);
  ASSERT_TRUE(plan.NextStartable(kT0).has_value());
  plan.Release();  // e.g. found cached when picked
  EXPECT_EQ(api->in_flight, 0);
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{2}));
}

TEST(ThrottleTest, ConflictingDefinitionNamesWhoDefinedIt) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("youtube", Key(4, 2, "2/s"), "").ok());  // the daemon's
  absl::Status s = throttle.Define("youtube", Key(2), "transcripts");
  EXPECT_EQ(s.message(),
            "throttle key 'youtube' is already defined by asflowd (--throttle) as {limit: 4, rate: 2/s}, not "
            "{limit: 2}: define it the same way, drop it here to use that one, or use another name");
  // The same definition merely shares it.
  EXPECT_TRUE(throttle.Define("youtube", Key(4, 2, "2/s"), "transcripts").ok());
  EXPECT_EQ(throttle.FindKey("youtube")->owner, "");

  ASSERT_TRUE(throttle.Define("api", Key(2), "a").ok());
  EXPECT_EQ(throttle.Define("api", Key(3), "b").code(), absl::StatusCode::kAlreadyExists);
  // Its owner may change it (a flow resubmitted with another limit).
  EXPECT_TRUE(throttle.Define("api", Key(3), "a").ok());
  EXPECT_EQ(throttle.FindKey("api")->config.limit, 3);
  // Once no run of its owner holds it, another flow may define it anew.
  throttle.Unref("api");
  throttle.Unref("api");
  EXPECT_TRUE(throttle.Define("api", Key(5), "b").ok());
  EXPECT_EQ(throttle.FindKey("api")->owner, "b");
}

TEST(ThrottleTest, CooldownHoldsTheKeyUntilItsEnd) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("youtube", Key(4), "f").ok());
  Gate* yt = throttle.FindKey("youtube");
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskGates("f.a", {yt});
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.a", 1);
  EXPECT_TRUE(throttle.Cooldown(*yt, kT0 + absl::Seconds(2), "429 from a(id=1)", kT0));
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{}));
  EXPECT_EQ(plan.NextWakeup(), kT0 + absl::Seconds(2));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(1999)), (std::vector<ExecId>{}));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Seconds(2)), (std::vector<ExecId>{1, 2, 3}));
}

TEST(ThrottleTest, CooldownExtendsToTheLaterEndAndNeverStacks) {
  Throttle throttle;
  Gate* g = throttle.TaskGate("f.a");
  EXPECT_TRUE(throttle.Cooldown(*g, kT0 + absl::Seconds(60), "first", kT0));
  // Errors during the cooldown extend it to the later end...
  EXPECT_FALSE(throttle.Cooldown(*g, kT0 + absl::Seconds(70), "second", kT0 + absl::Seconds(10)));
  EXPECT_EQ(g->cooldown_until, kT0 + absl::Seconds(70));
  EXPECT_EQ(g->cooldown_reason, "second");
  // ...never shorten it, and count as one cooldown, not three.
  EXPECT_FALSE(throttle.Cooldown(*g, kT0 + absl::Seconds(30), "third", kT0 + absl::Seconds(20)));
  EXPECT_EQ(g->cooldown_until, kT0 + absl::Seconds(70));
  EXPECT_EQ(g->cooldown_reason, "second");
  EXPECT_EQ(g->consecutive_cooldowns, 1);
  // After it ends, the next matching error begins a new one.
  EXPECT_TRUE(throttle.Cooldown(*g, kT0 + absl::Seconds(100), "fourth", kT0 + absl::Seconds(70)));
  EXPECT_EQ(g->consecutive_cooldowns, 2);
  throttle.Succeeded(*g);
  EXPECT_EQ(g->consecutive_cooldowns, 0);
}

TEST(ThrottleTest, ExpireEndsCooldownsAndTimedPauses) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("youtube", Key(4), "f").ok());
  Gate* yt = throttle.FindKey("youtube");
  Gate* task = throttle.TaskGate("f.a");
  throttle.Cooldown(*yt, kT0 + absl::Seconds(5), "429 from a(id=1)", kT0);
  throttle.Pause(*task, kT0 + absl::Seconds(8));
  EXPECT_EQ(throttle.NextExpiry(), kT0 + absl::Seconds(5));
  const absl::TimeZone utc = absl::UTCTimeZone();
  EXPECT_EQ(Throttle::Describe(*yt, kT0, utc), "youtube cooling down until 22:13:25 (429 from a(id=1))");
  EXPECT_EQ(Throttle::Describe(*task, kT0, utc), "task f.a paused until 22:13:28 (asflowctl resume f.a)");
  EXPECT_FALSE(throttle.Expire(kT0 + absl::Seconds(4)));
  EXPECT_TRUE(throttle.Expire(kT0 + absl::Seconds(5)));
  EXPECT_EQ(Throttle::Describe(*yt, kT0 + absl::Seconds(5), utc), "");
  EXPECT_EQ(throttle.NextExpiry(), kT0 + absl::Seconds(8));
  EXPECT_TRUE(throttle.Expire(kT0 + absl::Seconds(8)));
  EXPECT_FALSE(task->paused);
  EXPECT_EQ(throttle.NextExpiry(), absl::InfiniteFuture());
}

TEST(ThrottleTest, OpenEndedPauseHoldsUntilResume) {
  Throttle throttle;
  Gate* g = throttle.TaskGate("f.a");
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskGates("f.a", {g});
  plan.Enqueue(1, "f.a", 1);
  throttle.Pause(*g, absl::InfiniteFuture());
  EXPECT_EQ(StartAll(plan, kT0 + absl::Hours(1000)), (std::vector<ExecId>{}));
  EXPECT_EQ(plan.NextWakeup(), absl::InfiniteFuture());
  EXPECT_EQ(Throttle::Describe(*g, kT0, absl::UTCTimeZone()), "task f.a paused (asflowctl resume f.a)");
  EXPECT_EQ(throttle.Pauses().size(), 1u);
  EXPECT_TRUE(throttle.Resume(*g));
  EXPECT_FALSE(throttle.Resume(*g));
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{1}));
}

KeyConfig Auto(double max, double min) {
  KeyConfig c;
  c.rate = "auto";
  c.adaptive = true;
  c.max_rate = max;
  c.min_rate = min;
  return c;
}

TEST(ThrottleTest, AdaptiveRateStartsAtItsMaxHalvesPerCooldownAndEasesBack) {
  Throttle throttle;
  ASSERT_TRUE(throttle.Define("api", Auto(4, 0.5), "f").ok());
  Gate* g = throttle.FindKey("api");
  EXPECT_EQ(g->current_rate, 4);
  EXPECT_EQ(g->interval, absl::Milliseconds(250));
  // Each new cooldown halves it (the interval doubles)...
  throttle.Cooldown(*g, kT0 + absl::Seconds(1), "429", kT0);
  EXPECT_EQ(g->current_rate, 2);
  // ...not an error that only extends one under way...
  throttle.Cooldown(*g, kT0 + absl::Seconds(2), "429", kT0 + absl::Milliseconds(500));
  EXPECT_EQ(g->current_rate, 2);
  EXPECT_EQ(g->interval, absl::Milliseconds(500));
  throttle.Cooldown(*g, kT0 + absl::Seconds(3), "429", kT0 + absl::Seconds(2));
  throttle.Cooldown(*g, kT0 + absl::Seconds(4), "429", kT0 + absl::Seconds(3));
  // ...down to the min.
  EXPECT_EQ(g->current_rate, 0.5);
  EXPECT_EQ(g->interval, absl::Seconds(2));
  EXPECT_EQ(Throttle::Describe(*g, kT0 + absl::Seconds(4), absl::UTCTimeZone()),
            "api paced at 0.5/s (rate auto, up to 4/s)");
  // Every 10 successes in a row add a tenth of the max back.
  for (int i = 0; i < 9; ++i) throttle.Succeeded(*g);
  EXPECT_EQ(g->current_rate, 0.5);
  throttle.Succeeded(*g);
  EXPECT_DOUBLE_EQ(g->current_rate, 0.9);
  for (int i = 0; i < 100; ++i) throttle.Succeeded(*g);
  EXPECT_EQ(g->current_rate, 4);  // never past the max
  EXPECT_EQ(Throttle::Describe(*g, kT0 + absl::Seconds(4), absl::UTCTimeZone()), "");
}

TEST(ThrottleTest, AdaptiveRateSpacesStartsByItsCurrentPace) {
  Throttle throttle;
  Gate* g = throttle.TaskGate("f.a");
  throttle.SetTaskRate(*g, Auto(2, 0.1));
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskGates("f.a", {g});
  for (ExecId id = 1; id <= 4; ++id) plan.Enqueue(id, "f.a", 1);
  EXPECT_EQ(StartAll(plan, kT0), (std::vector<ExecId>{1}));
  EXPECT_EQ(plan.NextWakeup(), kT0 + absl::Milliseconds(500));
  throttle.Cooldown(*g, kT0 + absl::Milliseconds(100), "429", kT0);  // 1/s from now on
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(500)), (std::vector<ExecId>{2}));
  EXPECT_EQ(plan.NextWakeup(), kT0 + absl::Milliseconds(1500));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(1499)), (std::vector<ExecId>{}));
  EXPECT_EQ(StartAll(plan, kT0 + absl::Milliseconds(1500)), (std::vector<ExecId>{3}));
}

TEST(ThrottleTest, RetryAfterInSeconds) {
  EXPECT_EQ(ParseRetryAfter("120", kT0), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter(" 2 ", kT0), absl::Seconds(2));
  EXPECT_EQ(ParseRetryAfter("1.5", kT0), absl::Milliseconds(1500));
  EXPECT_EQ(ParseRetryAfter("99999999999", kT0), kMaxCooldown);
  EXPECT_EQ(ParseRetryAfter("soon", kT0), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-3", kT0), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("", kT0), std::nullopt);
}

TEST(ThrottleTest, RetryAfterAsAnHttpDate) {
  // kT0 is Tue, 14 Nov 2023 22:13:20 GMT.
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:15:20 GMT", kT0), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("Tuesday, 14-Nov-23 22:13:50 GMT", kT0), absl::Seconds(30));
  EXPECT_EQ(ParseRetryAfter("Tue Nov 14 22:13:21 2023", kT0), absl::Seconds(1));
  // A date already past is no wait at all.
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", kT0), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 25:00:00 GMT", kT0), std::nullopt);
}

}  // namespace
}  // namespace asflow
