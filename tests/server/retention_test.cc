// --keep-runs: which runs the rule prunes (pure), and what a pass leaves
// in a real Store: suppressed and failed rows stay (their run hidden from
// listings, still readable), everything else goes, and a hidden run goes
// once `reset` has cleared its kept rows.
#include "server/retention.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/server/scheduler_fakes.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::FakeClock;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const absl::Time kNow = absl::FromUnixSeconds(1'796'000'000);

int64_t DaysAgo(int days) { return absl::ToUnixMillis(kNow - absl::Hours(24 * days)); }

TEST(RunsToPruneTest, CountKeepsTheNewestFinishedRunsAndNeverARunningOne) {
  std::vector<RunAge> runs = {{1, true, DaysAgo(5)}, {2, false, 0}, {3, true, DaysAgo(3)},
                              {4, true, DaysAgo(2)}, {5, true, DaysAgo(1)}};
  EXPECT_THAT(RunsToPrune(runs, KeepRuns{2, absl::ZeroDuration()}, kNow), UnorderedElementsAre(3, 1));
  EXPECT_THAT(RunsToPrune(runs, KeepRuns{10, absl::ZeroDuration()}, kNow), IsEmpty());
}

TEST(RunsToPruneTest, AgeAndCountAreBothCaps) {
  std::vector<RunAge> runs = {{1, true, DaysAgo(40)}, {2, true, DaysAgo(31)}, {3, true, DaysAgo(29)},
                              {4, false, 0},          {5, true, DaysAgo(1)}};
  EXPECT_THAT(RunsToPrune(runs, KeepRuns{0, absl::Hours(24 * 30)}, kNow), ElementsAre(2, 1));
  EXPECT_THAT(RunsToPrune(runs, KeepRuns{1, absl::Hours(24 * 30)}, kNow), ElementsAre(3, 2, 1));
  EXPECT_THAT(RunsToPrune(runs, KeepRuns{}, kNow), IsEmpty());
}

TEST(ParseKeepRunsTest, CountsAgesBothAndAll) {
  EXPECT_EQ(ParseKeepRuns("100")->count, 100);
  EXPECT_EQ(ParseKeepRuns("30d")->age, absl::Hours(720));
  EXPECT_EQ(ParseKeepRuns("12h,50")->count, 50);
  EXPECT_EQ(ParseKeepRuns("12h,50")->age, absl::Hours(12));
  EXPECT_FALSE(ParseKeepRuns("all")->enabled());
  EXPECT_EQ(FormatKeepRuns(DefaultKeepRuns()), "30d,1000");
  EXPECT_EQ(ParseKeepRuns("0").status().message(),
            "--keep-runs '0': a count must be at least 1 (expected a count like 100, an age like 30d or 12h, "
            "both as 30d,100, or all)");
  EXPECT_FALSE(ParseKeepRuns("lots").ok());
  EXPECT_FALSE(ParseKeepRuns("5,6").ok());
}

class RetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(tmp_.Join("state.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // A finished run with `n` done instances and the given extra states.
  int64_t AddRun(int n, std::vector<v1::InstanceState> extra = {}) {
    v1::Run run;
    run.set_flow("f");
    run.set_workspace("/ws");
    run.set_state(v1::RUN_RUNNING);
    auto id = store_->CreateRun(run, "request");
    EXPECT_TRUE(id.ok());
    for (int i = 0; i < n; ++i) {
      InstanceRecord r;
      r.run_id = *id;
      r.seq = i;
      r.task = "t";
      r.params = absl::StrCat("{\"i\":\"", i, "\"}");
      r.state = v1::DONE;
      store_->PutInstance(r);
    }
    int64_t seq = n;
    for (v1::InstanceState state : extra) {
      InstanceRecord r;
      r.run_id = *id;
      r.seq = seq++;
      r.task = "t";
      r.state = state;
      r.error = "TranscriptsDisabled";
      store_->PutInstance(r);
    }
    run.set_id(*id);
    run.set_state(extra.empty() ? v1::RUN_SUCCEEDED : v1::RUN_FAILED);
    run.set_finished_ms(absl::ToUnixMillis(clock_.Now()));
    store_->PutRun(run);
    EXPECT_TRUE(store_->Flush().ok());
    return *id;
  }

  std::vector<int64_t> Listed() {
    std::vector<int64_t> ids;
    // Held in a variable: a range-for over `*store_->ListRuns(...)` walks
    // a vector that died with its StatusOr (ThreadSanitizer's
    // heap-use-after-free; the temporary's life is not extended in C++17).
    absl::StatusOr<std::vector<RunRecord>> runs = store_->ListRuns(0, false);
    EXPECT_TRUE(runs.ok()) << runs.status();
    if (!runs.ok()) return ids;
    for (const RunRecord& r : *runs) ids.push_back(r.run.id());
    return ids;
  }

  TempDir tmp_;
  FakeClock clock_{kNow};
  std::unique_ptr<Store> store_;
};

TEST_F(RetentionTest, PrunesInBatchesKeepingSuppressedAndFailedRows) {
  const int64_t old_ok = AddRun(250);
  const int64_t old_bad = AddRun(250, {v1::SUPPRESSED, v1::FAILED, v1::SKIPPED});
  const int64_t newest = AddRun(10);
  // Attempt history of a pruned row (seq 0) and of a kept one (seq 250,
  // the suppressed instance).
  for (int64_t seq : {int64_t{0}, int64_t{250}}) {
    AttemptRecord a;
    a.run_id = old_bad;
    a.seq = seq;
    a.attempt = 1;
    a.state = seq == 0 ? v1::QUEUED : v1::SUPPRESSED;
    a.stderr_tail = "stderr";
    store_->PutAttempt(a);
  }
  ASSERT_TRUE(store_->Flush().ok());
  RetentionOptions options;
  options.keep = KeepRuns{1, absl::ZeroDuration()};
  options.batch_rows = 100;
  options.pause = absl::ZeroDuration();
  Retention retention(store_.get(), &clock_, options);
  absl::StatusOr<PruneStats> stats = retention.PruneOnce();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->runs_deleted, 1);
  EXPECT_EQ(stats->runs_hidden, 1);
  EXPECT_EQ(stats->instances_deleted, 250 + 251);
  EXPECT_GT(stats->pages_freed, 0);  // a new file is auto_vacuum=INCREMENTAL
  EXPECT_THAT(Listed(), ElementsAre(newest));
  EXPECT_EQ(store_->GetRun(old_ok).status().code(), absl::StatusCode::kNotFound);
  // The hidden run and its kept rows, error text and all.
  ASSERT_TRUE(store_->GetRun(old_bad).ok());
  auto kept = store_->LoadInstances(old_bad);
  ASSERT_TRUE(kept.ok());
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].state, v1::SUPPRESSED);
  EXPECT_EQ((*kept)[0].error, "TranscriptsDisabled");
  EXPECT_EQ((*kept)[1].state, v1::FAILED);
  // The pruned row's attempts went with it (counted in the file: listings
  // join the instance rows and would hide an orphan); the kept row's stay.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(tmp_.Join("state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* stmt = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT group_concat(seq) FROM attempts", -1, &stmt, nullptr), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "250");
    sqlite3_finalize(stmt);
    sqlite3_close(db);
  }
  EXPECT_EQ(store_->LoadInstances(newest)->size(), 10u);
  // Nothing more to do.
  EXPECT_EQ(retention.PruneOnce()->instances_deleted, 0);

  // `reset` marks them RESET: then they and their run go.
  for (InstanceRecord r : *kept) {
    r.state = v1::RESET;
    store_->PutInstance(r);
  }
  ASSERT_TRUE(store_->Flush().ok());
  stats = retention.PruneOnce();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->runs_deleted, 1);
  EXPECT_EQ(store_->GetRun(old_bad).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RetentionTest, AllKeepsEverything) {
  AddRun(5);
  AddRun(5);
  RetentionOptions options;
  options.keep = KeepRuns{};
  Retention retention(store_.get(), &clock_, options);
  EXPECT_EQ(retention.PruneOnce()->instances_deleted, 0);
  EXPECT_EQ(Listed().size(), 2u);
}

}  // namespace
}  // namespace asflow
