#include "server/plan.h"

#include <set>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace asflow {
namespace {

// Drains everything startable now, in order; each item starts as the
// execution with the same id.
std::vector<ExecId> StartAll(Plan& plan, absl::Time now = absl::UnixEpoch()) {
  std::vector<ExecId> out;
  while (std::optional<PlanPick> pick = plan.NextStartable(now)) {
    plan.Bind(pick->item);
    out.push_back(pick->item);
  }
  return out;
}

TEST(PlanTest, LimitCapsRunningPerTaskDefinition) {
  Plan plan;
  plan.SetPoolSlots("local", 10);
  plan.SetTaskDef("f.extract", 2, "local");
  for (ExecId id = 1; id <= 5; ++id) plan.Enqueue(id, "f.extract", 1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1, 2}));
  EXPECT_EQ(plan.running("f.extract"), 2);
  EXPECT_EQ(plan.queued("f.extract"), 3);
  plan.Finished(1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{3}));
  plan.Finished(2);
  plan.Finished(3);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{4, 5}));
  EXPECT_EQ(plan.queued("f.extract"), 0);
}

TEST(PlanTest, PoolSlotsCapAcrossTaskDefinitions) {
  Plan plan;
  plan.SetPoolSlots("local", 3);
  plan.SetTaskDef("f.a", 10, "local");
  plan.SetTaskDef("f.b", 10, "local");
  for (ExecId id = 1; id <= 4; ++id) plan.Enqueue(id, "f.a", 1);
  for (ExecId id = 11; id <= 14; ++id) plan.Enqueue(id, "f.b", 1);
  // Round-robin across task definitions, three slots in all.
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1, 11, 2}));
  EXPECT_EQ(plan.pool_used("local"), 3);
  plan.Finished(11);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{12}));
}

TEST(PlanTest, ItemsQueuedAheadStartFirstInTheirOwnOrder) {
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.t", 100, "local");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", 1);
  plan.EnqueueAhead(-7, "f.t", 1);
  plan.EnqueueAhead(-8, "f.t", 1);
  plan.Enqueue(4, "f.t", 1);
  // A run with nothing queued gets the next turn for its one retry.
  plan.EnqueueAhead(-9, "f.t", 2);
  EXPECT_EQ(plan.queued("f.t"), 7);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{-9, -7, -8, 1, 2, 3, 4}));
}

TEST(PlanTest, RunsShareATaskDefinitionRoundRobin) {
  Plan plan;
  plan.SetPoolSlots("local", 100);
  plan.SetTaskDef("f.t", 100, "local");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", /*run_id=*/1);
  for (ExecId id = 11; id <= 13; ++id) plan.Enqueue(id, "f.t", /*run_id=*/2);
  // Within a run: submission order; across runs: alternating.
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1, 11, 2, 12, 3, 13}));
}

TEST(PlanTest, ItemsThatAreNoLongerLiveAreSkipped) {
  Plan plan;
  std::set<int64_t> dead;
  std::vector<std::pair<int64_t, int64_t>> asked;
  plan.SetLiveness([&](int64_t run_id, int64_t item) {
    asked.emplace_back(run_id, item);
    return dead.count(item) == 0;
  });
  plan.SetPoolSlots("local", 1);
  plan.SetTaskDef("f.t", 1, "local");
  for (ExecId id = 1; id <= 4; ++id) plan.Enqueue(id, "f.t", 9);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  dead = {1, 2, 3};  // 1 is running: liveness only concerns queued items
  EXPECT_EQ(plan.queued("f.t"), 3);
  plan.Finished(1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{4}));
  EXPECT_EQ(plan.queued("f.t"), 0);
  EXPECT_EQ(asked, (std::vector<std::pair<int64_t, int64_t>>{{9, 1}, {9, 2}, {9, 3}, {9, 4}}));
}

TEST(PlanTest, NoLiveItemLeavesNothingStartable) {
  Plan plan;
  bool live = false;
  plan.SetLiveness([&](int64_t, int64_t) { return live; });
  plan.SetPoolSlots("local", 4);
  plan.SetTaskDef("f.t", 4, "local");
  for (ExecId id = 1; id <= 1000; ++id) plan.Enqueue(id, "f.t", 7);
  EXPECT_EQ(StartAll(plan), std::vector<ExecId>{});
  EXPECT_EQ(plan.queued("f.t"), 0);
  EXPECT_EQ(plan.pool_used("local"), 0);
  live = true;
  plan.Enqueue(2000, "f.t", 7);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{2000}));
}

TEST(PlanTest, ReleaseGivesBackTheLimitTheSlotAndTheRateToken) {
  Plan plan;
  plan.SetPoolSlots("local", 1);
  plan.SetTaskDef("f.t", 1, "local", /*rate_per_second=*/1);
  const absl::Time t0 = absl::FromUnixSeconds(100);
  plan.Enqueue(1, "f.t", 3);
  plan.Enqueue(2, "f.t", 3);
  std::optional<PlanPick> pick = plan.NextStartable(t0);
  ASSERT_TRUE(pick.has_value());
  EXPECT_EQ(pick->run_id, 3);
  EXPECT_EQ(pick->item, 1);
  EXPECT_EQ(plan.running("f.t"), 1);
  EXPECT_EQ(plan.pool_used("local"), 1);
  plan.Release();  // e.g. it joined an execution another run started
  EXPECT_EQ(plan.running("f.t"), 0);
  EXPECT_EQ(plan.pool_used("local"), 0);
  // The token was not spent: item 2 may start at the same instant.
  EXPECT_EQ(StartAll(plan, t0), (std::vector<ExecId>{2}));
  EXPECT_EQ(plan.running("f.t"), 1);
}

TEST(PlanTest, RaisingTheLimitLetsMoreStart) {
  Plan plan;
  plan.SetPoolSlots("local", 10);
  plan.SetTaskDef("f.t", 1, "local");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", 1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  plan.SetTaskDef("f.t", 3, "local");  // a resubmitted flow with limit: 3
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{2, 3}));
}

TEST(PlanTest, PoolWithoutSlotsStartsNothing) {
  Plan plan;
  plan.SetPoolSlots("gpu", 0);
  plan.SetTaskDef("f.t", 4, "gpu");
  plan.Enqueue(1, "f.t", 1);
  EXPECT_EQ(StartAll(plan), std::vector<ExecId>{});
  plan.SetPoolSlots("gpu", 1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
}

TEST(PlanTest, FinishedOfUnknownIdIsIgnored) {
  Plan plan;
  plan.SetPoolSlots("local", 1);
  plan.SetTaskDef("f.t", 1, "local");
  plan.Finished(42);
  plan.Enqueue(1, "f.t", 1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  EXPECT_EQ(plan.pool_used("local"), 1);
}

// Regression (review): moving a task definition to another pool while one of
// its executions runs must free the old pool's slot, not the new one's.
TEST(PlanTest, MovingTaskToAnotherPoolFreesTheSlotItHeld) {
  Plan plan;
  plan.SetPoolSlots("a", 1);
  plan.SetPoolSlots("b", 1);
  plan.SetTaskDef("f.t", 10, "a");
  plan.Enqueue(1, "f.t", 1);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  plan.SetTaskDef("f.t", 10, "b");
  plan.Finished(1);
  EXPECT_EQ(plan.pool_used("a"), 0);
  EXPECT_EQ(plan.pool_used("b"), 0);
}

TEST(PlanTest, RateSpacesStartsAndReportsWakeup) {
  Plan plan;
  plan.SetPoolSlots("local", 10);
  plan.SetTaskDef("f.t", 10, "local", /*rate_per_second=*/5);
  for (ExecId id = 1; id <= 4; ++id) plan.Enqueue(id, "f.t", 1);
  absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(StartAll(plan, t0), (std::vector<ExecId>{1}));  // capacity 1: no burst
  EXPECT_EQ(plan.NextWakeup(), t0 + absl::Milliseconds(200));
  EXPECT_EQ(StartAll(plan, t0 + absl::Milliseconds(199)), std::vector<ExecId>{});
  EXPECT_EQ(StartAll(plan, t0 + absl::Milliseconds(200)), (std::vector<ExecId>{2}));
  // Late wake-up: still one start, the next token is 200 ms after it.
  EXPECT_EQ(StartAll(plan, t0 + absl::Seconds(5)), (std::vector<ExecId>{3}));
  EXPECT_EQ(plan.NextWakeup(), t0 + absl::Seconds(5) + absl::Milliseconds(200));
  EXPECT_EQ(StartAll(plan, t0 + absl::Seconds(6)), (std::vector<ExecId>{4}));
  EXPECT_EQ(plan.NextWakeup(), absl::InfiniteFuture());  // nothing queued
}

TEST(PlanTest, RateLimitedTaskDoesNotBlockOthersInPool) {
  Plan plan;
  plan.SetPoolSlots("local", 10);
  plan.SetTaskDef("f.slow", 10, "local", 1);
  plan.SetTaskDef("f.fast", 10, "local");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.slow", 1);
  for (ExecId id = 11; id <= 13; ++id) plan.Enqueue(id, "f.fast", 1);
  absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_EQ(StartAll(plan, t0), (std::vector<ExecId>{1, 11, 12, 13}));
  EXPECT_EQ(StartAll(plan, t0 + absl::Seconds(1)), (std::vector<ExecId>{2}));
}

}  // namespace
TEST(PlanTest, ASuccessorIsTheRunsNextItemTakenOffTheQueueWithoutASlot) {
  Plan plan;
  plan.SetPoolSlots("code", 10);
  plan.SetTaskDef("f.t", 1, "code");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", 7);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  EXPECT_EQ(plan.TakeSuccessor("f.t", 7, absl::UnixEpoch()), std::optional<int64_t>(2));
  EXPECT_EQ(plan.queued("f.t"), 1);
  EXPECT_EQ(plan.running("f.t"), 1);  // 2 holds no slot until the handoff
  EXPECT_EQ(plan.TakeSuccessor("f.t", 8, absl::UnixEpoch()), std::nullopt);  // another run's
}

TEST(PlanTest, NoSuccessorWhileTheLimitHasRoom) {
  Plan plan;
  plan.SetPoolSlots("code", 10);
  plan.SetTaskDef("f.t", 4, "code");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", 7);
  ASSERT_TRUE(plan.NextStartable(absl::UnixEpoch()).has_value());
  plan.Bind(1);
  EXPECT_EQ(plan.TakeSuccessor("f.t", 7, absl::UnixEpoch()), std::nullopt);  // 2 can start on its own
  EXPECT_EQ(plan.queued("f.t"), 2);
}

TEST(PlanTest, NoSuccessorWhenARateOrAnotherRunWaits) {
  Plan plan;
  plan.SetPoolSlots("code", 10);
  plan.SetTaskDef("f.rated", 1, "code", /*rate_per_second=*/100);
  plan.SetTaskDef("f.shared", 1, "code");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.rated", 7);
  plan.Enqueue(11, "f.shared", 7);
  plan.Enqueue(12, "f.shared", 7);
  plan.Enqueue(13, "f.shared", 8);  // a second run waits for the same limit
  EXPECT_EQ(plan.TakeSuccessor("f.rated", 7, absl::UnixEpoch()), std::nullopt);
  EXPECT_EQ(plan.TakeSuccessor("f.shared", 7, absl::UnixEpoch()), std::nullopt);
  EXPECT_EQ(plan.queued("f.rated"), 3);
  EXPECT_EQ(plan.queued("f.shared"), 3);
}

TEST(PlanTest, HandoffPassesTheSlotOn) {
  Plan plan;
  plan.SetPoolSlots("code", 10);
  plan.SetTaskDef("f.t", 1, "code");
  for (ExecId id = 1; id <= 3; ++id) plan.Enqueue(id, "f.t", 7);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{1}));
  ASSERT_EQ(plan.TakeSuccessor("f.t", 7, absl::UnixEpoch()), std::optional<int64_t>(2));
  EXPECT_TRUE(plan.Handoff(1, 2));
  EXPECT_FALSE(plan.Handoff(1, 2));  // 1 holds nothing now
  plan.Finished(1);                  // ignored: the slot is 2's
  EXPECT_EQ(plan.running("f.t"), 1);
  EXPECT_EQ(StartAll(plan), std::vector<ExecId>{});
  plan.Finished(2);
  EXPECT_EQ(StartAll(plan), (std::vector<ExecId>{3}));
}

}  // namespace asflow
