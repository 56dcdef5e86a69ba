#include "server/store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Run MakeRun(const std::string& flow) {
  v1::Run run;
  run.set_flow(flow);
  run.set_workspace("/data/" + flow);
  run.set_state(v1::RUN_RUNNING);
  (*run.mutable_params())["channel"] = "@veritasium";
  run.set_created_ms(1700000000000);
  run.set_keep_going(true);
  return run;
}

InstanceRecord MakeInstance(int64_t run_id, int64_t seq, const std::string& task,
                            v1::InstanceState state = v1::QUEUED) {
  InstanceRecord r;
  r.run_id = run_id;
  r.seq = seq;
  r.task = task;
  r.params = "{\"video_id\":\"v" + std::to_string(seq) + "\"}";
  r.output = "data/" + task + "/v" + std::to_string(seq) + ".jsonl.zst";
  r.state = state;
  return r;
}

std::vector<int64_t> Seqs(const std::vector<InstanceRecord>& records) {
  std::vector<int64_t> seqs;
  for (const InstanceRecord& r : records) seqs.push_back(r.seq);
  return seqs;
}

class StoreTest : public ::testing::Test {
 protected:
  std::string DbPath() const { return dir_.Join("state/asflow.db"); }

  std::unique_ptr<Store> OpenStore(const StoreOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(DbPath(), options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }

  int64_t CreateRunOrDie(Store& store, const std::string& flow) {
    absl::StatusOr<int64_t> id = store.CreateRun(MakeRun(flow), "request-" + flow);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : -1;
  }

  testing::TempDir dir_;
};

TEST_F(StoreTest, CreateRunIdsIncrease) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  v1::Run run = MakeRun("playlist");
  run.set_id(77);  // ignored
  EXPECT_EQ(*store->CreateRun(run, "r1"), 1);
  EXPECT_EQ(*store->CreateRun(run, "r2"), 2);
  EXPECT_EQ(*store->CreateRun(MakeRun("transcripts"), ""), 3);

  absl::StatusOr<RunRecord> got = store->GetRun(2);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->run.id(), 2);
  EXPECT_EQ(got->run.flow(), "playlist");
  EXPECT_EQ(got->run.workspace(), "/data/playlist");
  EXPECT_EQ(got->run.state(), v1::RUN_RUNNING);
  EXPECT_EQ(got->run.params().at("channel"), "@veritasium");
  EXPECT_EQ(got->run.created_ms(), 1700000000000);
  EXPECT_TRUE(got->run.keep_going());
  EXPECT_EQ(got->request, "r2");
  got = store->GetRun(3);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->request, "");
}

TEST_F(StoreTest, GetRunNotFound) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<RunRecord> got = store->GetRun(42);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "run 42 not found");
}

TEST_F(StoreTest, PutThenFlushReadsBackEveryField) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "transcripts");

  InstanceRecord in;
  in.run_id = id;
  in.seq = 7;
  in.task = "extract";
  in.params = "{\"video_id\":\"F6PqxbvOCUI\"}";
  in.output = "data/transcripts/F6PqxbvOCUI.jsonl.zst";
  in.state = v1::SUPPRESSED;
  in.error = "transcripts disabled";
  in.attempts = 3;
  in.started_ms = 1700000001000;
  in.finished_ms = 1700000002500;
  in.bytes = 123456789012;
  in.lines = 4242;
  in.made_by_run = 99;
  store->PutInstance(in);

  v1::Run run = MakeRun("transcripts");
  run.set_id(id);
  run.set_state(v1::RUN_FAILED);
  run.set_finished_ms(1700000003000);
  run.set_error("extract(video_id=x): exit 1");
  v1::TaskCounters* c = run.add_tasks();
  c->set_task("extract");
  c->set_total(10);
  c->set_suppressed(1);
  c->set_failed(1);
  c->set_expanded(true);
  store->PutRun(run);
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(store->pending_writes(), 0u);

  absl::StatusOr<std::vector<InstanceRecord>> all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 1u);
  const InstanceRecord& out = (*all)[0];
  EXPECT_EQ(out.run_id, id);
  EXPECT_EQ(out.seq, 7);
  EXPECT_EQ(out.task, "extract");
  EXPECT_EQ(out.params, "{\"video_id\":\"F6PqxbvOCUI\"}");
  EXPECT_EQ(out.output, "data/transcripts/F6PqxbvOCUI.jsonl.zst");
  EXPECT_EQ(out.state, v1::SUPPRESSED);
  EXPECT_EQ(out.error, "transcripts disabled");
  EXPECT_EQ(out.attempts, 3);
  EXPECT_EQ(out.started_ms, 1700000001000);
  EXPECT_EQ(out.finished_ms, 1700000002500);
  EXPECT_EQ(out.bytes, 123456789012);
  EXPECT_EQ(out.lines, 4242);
  EXPECT_EQ(out.made_by_run, 99);

  absl::StatusOr<RunRecord> got = store->GetRun(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->run.SerializeAsString(), run.SerializeAsString());
  EXPECT_EQ(got->request, "request-transcripts");
}

TEST_F(StoreTest, PutInstanceReplacesBySeq) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  store->PutInstance(MakeInstance(id, 0, "a", v1::QUEUED));
  store->PutInstance(MakeInstance(id, 1, "a", v1::QUEUED));
  InstanceRecord running = MakeInstance(id, 0, "a", v1::RUNNING);
  running.attempts = 1;
  store->PutInstance(running);
  InstanceRecord done = MakeInstance(id, 0, "a", v1::DONE);
  done.attempts = 1;
  done.output = "";
  store->PutInstance(done);
  ASSERT_TRUE(store->Flush().ok());

  auto all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].seq, 0);
  EXPECT_EQ((*all)[0].state, v1::DONE);
  EXPECT_EQ((*all)[0].attempts, 1);
  EXPECT_EQ((*all)[0].output, "");
  EXPECT_EQ((*all)[1].seq, 1);
  EXPECT_EQ((*all)[1].state, v1::QUEUED);
}

TEST_F(StoreTest, PutNewWritesEveryRowInOrderWithOtherWrites) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  store->PutInstance(MakeInstance(id, 0, "a", v1::CACHED));
  NewRows rows(id, "b");
  rows.Add(1, v1::QUEUED, 0, R"({"i":"1"})", "data/1.txt");
  rows.Add(2, v1::QUEUED, 0, R"({"i":"a much longer value than fits inline"})", "");  // no output
  rows.Add(3, v1::QUEUED, 0, "{}", "data/3.txt");
  rows.Add(4, v1::CACHED, 1234, R"({"i":"4"})", "data/4.txt");
  EXPECT_EQ(rows.size(), 4u);
  store->PutNew(std::move(rows));
  InstanceRecord running = MakeInstance(id, 3, "b", v1::RUNNING);  // after: replaces row 3
  running.params = "{}";
  running.output = "data/3.txt";
  running.attempts = 1;
  store->PutInstance(running);
  store->PutNew(NewRows(id, "c"));  // empty: nothing to write
  ASSERT_TRUE(store->Flush().ok());

  auto all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(Seqs(*all), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ((*all)[0].state, v1::CACHED);
  EXPECT_EQ((*all)[1].task, "b");
  EXPECT_EQ((*all)[1].params, R"({"i":"1"})");
  EXPECT_EQ((*all)[1].output, "data/1.txt");
  EXPECT_EQ((*all)[1].state, v1::QUEUED);
  EXPECT_EQ((*all)[1].attempts, 0);
  EXPECT_EQ((*all)[2].params, R"({"i":"a much longer value than fits inline"})");
  EXPECT_EQ((*all)[2].output, "");
  EXPECT_EQ((*all)[2].state, v1::QUEUED);
  EXPECT_EQ((*all)[3].state, v1::RUNNING);
  EXPECT_EQ((*all)[3].attempts, 1);
  EXPECT_EQ((*all)[3].output, "data/3.txt");
  EXPECT_EQ((*all)[4].state, v1::CACHED);
  EXPECT_EQ((*all)[4].finished_ms, 1234);
  EXPECT_EQ((*all)[4].params, R"({"i":"4"})");
  EXPECT_EQ((*all)[4].output, "data/4.txt");
}

TEST_F(StoreTest, PutNewWritesRowsInStatementsOfSeveralAndOneByOne) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  // 37 rows: statements of several rows, then the rest one at a time.
  NewRows rows(id, "item");
  for (int i = 0; i < 37; ++i) {
    rows.Add(i, i % 2 == 0 ? v1::CACHED : v1::QUEUED, 1000 + i, absl::StrCat(R"({"i":")", i, R"("})"),
             absl::StrCat("data/", i, ".zst"));
  }
  store->PutNew(std::move(rows));
  ASSERT_TRUE(store->Flush().ok());
  auto all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 37u);
  for (int i = 0; i < 37; ++i) {
    const InstanceRecord& r = (*all)[i];
    EXPECT_EQ(r.seq, i);
    EXPECT_EQ(r.task, "item");
    EXPECT_EQ(r.params, absl::StrCat(R"({"i":")", i, R"("})"));
    EXPECT_EQ(r.output, absl::StrCat("data/", i, ".zst"));
    EXPECT_EQ(r.state, i % 2 == 0 ? v1::CACHED : v1::QUEUED);
    EXPECT_EQ(r.finished_ms, 1000 + i);
    EXPECT_EQ(r.attempts, 0);
    EXPECT_EQ(r.error, "");
  }
}

TEST_F(StoreTest, PutNewThatFailsNamesItsFirstRowAndOtherWritesCommit) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  NewRows orphans(98, "t");  // no run 98: every row fails its foreign key
  for (int i = 0; i < 20; ++i) orphans.Add(i, v1::QUEUED, 0, "{}", absl::StrCat(i, ".txt"));
  store->PutNew(std::move(orphans));
  NewRows good(id, "t");
  for (int i = 0; i < 20; ++i) good.Add(i, v1::QUEUED, 0, "{}", absl::StrCat(i, ".txt"));
  store->PutNew(std::move(good));
  absl::Status status = store->Flush();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("put instance 98/0 (t): FOREIGN KEY constraint failed"));
  EXPECT_TRUE(store->LoadInstances(98)->empty());
  EXPECT_EQ(store->LoadInstances(id)->size(), 20u);
}

TEST_F(StoreTest, AwaitCallbacksWaitsForTheWriteTheWriterHolds) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  absl::Notification in_callback, release;
  std::atomic<bool> done{false};
  absl::Status from_callback;
  store->PutInstance(MakeInstance(id, 0, "t"), [&](const InstanceRecord&, const absl::Status&) {
    from_callback = store->AwaitCallbacks();
    in_callback.Notify();
    release.WaitForNotification();
    done = true;
  });
  in_callback.WaitForNotification();  // committed, its callback running: taken
  std::thread releaser([&] { release.Notify(); });
  // Whether the callback is released before or after this call, it was
  // taken before it: the call returns only after the callback has run.
  ASSERT_TRUE(store->AwaitCallbacks().ok());
  EXPECT_TRUE(done);
  releaser.join();
  EXPECT_EQ(from_callback.code(), absl::StatusCode::kFailedPrecondition) << from_callback;
}

TEST_F(StoreTest, ListInstancesFiltersAndPages) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  int64_t other = CreateRunOrDie(*store, "g");
  // seq 0..9: even seqs are task "a", odd ones "b"; seq % 3 picks the state.
  const v1::InstanceState kStates[] = {v1::DONE, v1::FAILED, v1::QUEUED};
  for (int seq = 0; seq < 10; ++seq) {
    store->PutInstance(MakeInstance(id, seq, seq % 2 == 0 ? "a" : "b", kStates[seq % 3]));
  }
  store->PutInstance(MakeInstance(other, 0, "a", v1::DONE));
  ASSERT_TRUE(store->Flush().ok());

  InstanceQuery q;
  q.run_id = id;
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  q.task = "a";
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(0, 2, 4, 6, 8));
  q.states = {v1::DONE};
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(0, 6));
  q.task = "";
  q.states = {v1::FAILED, v1::QUEUED};
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(1, 2, 4, 5, 7, 8));
  q.after_seq = 4;
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(5, 7, 8));
  q.limit = 2;
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(5, 7));
  q.states = {v1::RUNNING};
  q.after_seq = -1;
  EXPECT_TRUE(store->ListInstances(q)->empty());
  q.task = "nope";
  q.states = {};
  EXPECT_TRUE(store->ListInstances(q)->empty());

  // Pagination: pages of 3 by after_seq cover every instance once.
  InstanceQuery page;
  page.run_id = id;
  page.limit = 3;
  std::vector<int64_t> seen;
  std::vector<size_t> sizes;
  for (;;) {
    auto got = store->ListInstances(page);
    ASSERT_TRUE(got.ok()) << got.status();
    sizes.push_back(got->size());
    if (got->empty()) break;
    for (const auto& r : *got) seen.push_back(r.seq);
    page.after_seq = got->back().seq;
  }
  EXPECT_THAT(seen, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
  EXPECT_THAT(sizes, ElementsAre(3, 3, 3, 1, 0));
}

TEST_F(StoreTest, ListRunsNewestFirstAndOnlyRunning) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t a = CreateRunOrDie(*store, "a");
  int64_t b = CreateRunOrDie(*store, "b");
  int64_t c = CreateRunOrDie(*store, "c");
  v1::Run done = MakeRun("b");
  done.set_id(b);
  done.set_state(v1::RUN_SUCCEEDED);
  store->PutRun(done);
  ASSERT_TRUE(store->Flush().ok());

  auto ids = [](const std::vector<RunRecord>& runs) {
    std::vector<int64_t> out;
    for (const auto& r : runs) out.push_back(r.run.id());
    return out;
  };
  EXPECT_THAT(ids(*store->ListRuns(0, false)), ElementsAre(c, b, a));
  EXPECT_THAT(ids(*store->ListRuns(2, false)), ElementsAre(c, b));
  EXPECT_THAT(ids(*store->ListRuns(10, true)), ElementsAre(c, a));
  EXPECT_EQ((*store->ListRuns(1, false))[0].request, "request-c");
  // Paging: ids below before_id; the request blob only when asked for.
  EXPECT_THAT(ids(*store->ListRuns(10, false, /*before_id=*/c)), ElementsAre(b, a));
  EXPECT_THAT(ids(*store->ListRuns(1, true, /*before_id=*/c)), ElementsAre(a));
  EXPECT_EQ((*store->ListRuns(1, false, 0, /*with_request=*/false))[0].request, "");
}

TEST_F(StoreTest, CallbacksRunInOrderAfterDataIsReadable) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");

  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open_v2(DbPath().c_str(), &raw, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> other(raw, sqlite3_close_v2);
  // The state of (id, seq) as a second connection sees it, or -1.
  auto raw_state = [&](int64_t seq) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(other.get(),
                                 "SELECT state FROM instances WHERE run_id=?1 AND seq=?2",
                                 -1, &stmt, nullptr),
              SQLITE_OK);
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, seq);
    int state = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return state;
  };

  constexpr int kWrites = 2000;
  absl::Mutex mu;
  std::vector<int> order;       // callback order
  std::vector<int> raw_seen;    // state seen by the raw connection
  std::vector<int> store_seen;  // state seen by the Store's reader
  for (int i = 0; i < kWrites; ++i) {
    store->PutInstance(MakeInstance(id, i, "t", v1::RUNNING), [&, i](const InstanceRecord& written,
                                                                      const absl::Status& status) {
      EXPECT_TRUE(status.ok()) << status;
      EXPECT_EQ(written.seq, i);
      int via_raw = raw_state(i);
      InstanceQuery q;
      q.run_id = id;
      q.after_seq = i - 1;
      q.limit = 1;
      auto got = store->ListInstances(q);
      int via_store = got.ok() && got->size() == 1 && (*got)[0].seq == i
                          ? static_cast<int>((*got)[0].state)
                          : -1;
      absl::MutexLock lock(&mu);
      order.push_back(i);
      raw_seen.push_back(via_raw);
      store_seen.push_back(via_store);
    });
  }
  ASSERT_TRUE(store->Flush().ok());

  absl::MutexLock lock(&mu);
  ASSERT_EQ(order.size(), static_cast<size_t>(kWrites));
  for (int i = 0; i < kWrites; ++i) {
    EXPECT_EQ(order[i], i);
    EXPECT_EQ(raw_seen[i], v1::RUNNING) << "seq " << i;
    EXPECT_EQ(store_seen[i], v1::RUNNING) << "seq " << i;
  }
}

TEST_F(StoreTest, ReopenKeepsState) {
  int64_t id;
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    id = CreateRunOrDie(*store, "f");
    CreateRunOrDie(*store, "g");
    for (int seq = 0; seq < 5; ++seq) {
      InstanceRecord r = MakeInstance(id, seq, "t", v1::DONE);
      r.lines = seq * 10;
      store->PutInstance(r);
    }
    v1::Run run = MakeRun("f");
    run.set_id(id);
    run.set_state(v1::RUN_SUCCEEDED);
    run.add_tasks()->set_done(5);
    store->PutRun(run);
    // No Flush: the destructor commits what is queued.
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto run = store->GetRun(id);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->run.state(), v1::RUN_SUCCEEDED);
  ASSERT_EQ(run->run.tasks_size(), 1);
  EXPECT_EQ(run->run.tasks(0).done(), 5);
  EXPECT_EQ(run->request, "request-f");
  auto all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(Seqs(*all), ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ((*all)[4].lines, 40);
  EXPECT_EQ((*all)[4].state, v1::DONE);
  // Ids keep increasing after a restart.
  EXPECT_EQ(CreateRunOrDie(*store, "h"), 3);
}

TEST_F(StoreTest, HundredThousandWritesAreGrouped) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "big");
  uint64_t before = store->transactions_committed();
  constexpr int kWrites = 100000;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kWrites; ++i) {
    store->PutInstance(MakeInstance(id, i, "extract", v1::DONE));
  }
  ASSERT_TRUE(store->Flush().ok());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t transactions = store->transactions_committed() - before;
  std::printf("100000 PutInstance + Flush: %.3f s in %llu transactions\n", seconds,
              static_cast<unsigned long long>(transactions));
  EXPECT_GE(transactions, 13u);  // max_group 8192
  EXPECT_LE(transactions, 1000u);
  InstanceQuery q;
  q.run_id = id;
  q.after_seq = kWrites - 3;
  EXPECT_THAT(Seqs(*store->ListInstances(q)), ElementsAre(kWrites - 2, kWrites - 1));
  EXPECT_EQ(store->LoadInstances(id)->size(), static_cast<size_t>(kWrites));
}

// StoreOptions::linger, with an hour: nothing but the rules below can end
// the wait within the test's time.
TEST_F(StoreTest, WritesSoonAfterACommitWaitForTheLingerAndGoInOneGroup) {
  StoreOptions options;
  options.linger = absl::Hours(1);
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");  // a waiter: committed at once
  const uint64_t before = store->transactions_committed();
  absl::Notification first;
  std::atomic<int> called{0};
  store->PutInstance(MakeInstance(id, 0, "t"), [&](const InstanceRecord&, const absl::Status& s) {
    EXPECT_TRUE(s.ok()) << s;
    ++called;
    first.Notify();
  });
  // Within the hour after the run's commit began: held back (a commit
  // takes milliseconds; without the linger it would be long done).
  EXPECT_FALSE(first.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  for (int i = 1; i < 5; ++i) {
    store->PutInstance(MakeInstance(id, i, "t"), [&](const InstanceRecord&, const absl::Status& s) {
      EXPECT_TRUE(s.ok()) << s;
      ++called;
    });
  }
  EXPECT_EQ(store->transactions_committed(), before);
  // Flush asks for them: all in one group.
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(called, 5);
  EXPECT_EQ(store->transactions_committed(), before + 1);
}

TEST_F(StoreTest, TheFirstWriteIsNotHeldBackByTheLinger) {
  StoreOptions options;
  options.linger = absl::Hours(1);
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  absl::Notification committed;
  store->PutRaw([](sqlite3*) { return absl::OkStatus(); }, [&](const absl::Status&) { committed.Notify(); });
  EXPECT_TRUE(committed.WaitForNotificationWithTimeout(absl::Seconds(60)));
}

TEST_F(StoreTest, CreateRunAndStoppingCutTheLingerShort) {
  StoreOptions options;
  options.linger = absl::Hours(1);
  int64_t second = 0;
  {
    auto store = OpenStore(options);
    ASSERT_NE(store, nullptr);
    CreateRunOrDie(*store, "first");
    second = CreateRunOrDie(*store, "second");  // within the hour: cut short
    ASSERT_GT(second, 0);
    store->PutInstance(MakeInstance(second, 7, "t", v1::DONE));
  }  // stopping: the held write is committed, not lost or waited for
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  absl::StatusOr<std::vector<InstanceRecord>> rows = store->LoadInstances(second);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].seq, 7);
}

TEST_F(StoreTest, SmallGroupsAndBoundedQueue) {
  StoreOptions options;
  options.max_group = 2;
  options.max_pending = 4;
  options.sync_commits = false;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  uint64_t before = store->transactions_committed();
  for (int i = 0; i < 1000; ++i) {
    store->PutInstance(MakeInstance(id, i, "t"));
    EXPECT_LE(store->pending_writes(), 4u + 2u);  // queued + one group in flight
  }
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_GE(store->transactions_committed() - before, 500u);
  EXPECT_EQ(store->LoadInstances(id)->size(), 1000u);
}

TEST_F(StoreTest, FailedWritesReachFlushAndLaterWritesCommit) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t id = CreateRunOrDie(*store, "f");
  // Each callback hears its own write's fate (only touched on the writer
  // thread, read after Flush).
  std::vector<absl::Status> statuses;
  v1::Run missing = MakeRun("f");
  missing.set_id(99);
  store->PutRun(missing, [&](const v1::Run&, const absl::Status& s) { statuses.push_back(s); });
  store->PutInstance(MakeInstance(98, 0, "t"),
                     [&](const InstanceRecord&, const absl::Status& s) { statuses.push_back(s); });
  store->PutInstance(MakeInstance(id, 0, "t", v1::DONE),
                     [&](const InstanceRecord&, const absl::Status& s) { statuses.push_back(s); });
  NewRows rows(97, "t");
  rows.Add(0, v1::QUEUED, 0, "{}", "");
  store->PutNew(std::move(rows), [&](const absl::Status& s) { statuses.push_back(s); });
  absl::Status status = store->Flush();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            "store " + DbPath() + ": put run 99: run 99 not found");
  ASSERT_EQ(statuses.size(), 4u);
  EXPECT_EQ(statuses[0], status);
  EXPECT_EQ(statuses[1].code(), absl::StatusCode::kFailedPrecondition) << statuses[1];
  EXPECT_TRUE(statuses[2].ok()) << statuses[2];
  EXPECT_EQ(statuses[3].code(), absl::StatusCode::kFailedPrecondition) << statuses[3];
  auto all = store->LoadInstances(id);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(Seqs(*all), ElementsAre(0));
  EXPECT_TRUE(store->LoadInstances(98)->empty());

  // The error was reported once; the foreign-key failure alone comes next.
  store->PutInstance(MakeInstance(98, 1, "t"));
  status = store->Flush();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("put instance 98/1 (t): FOREIGN KEY constraint failed"));
  EXPECT_TRUE(store->Flush().ok());
}

TEST_F(StoreTest, CreatesPrivateFileAndParentDirs) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  struct stat st;
  ASSERT_EQ(stat(DbPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(StoreTest, RefusesNewerSchema) {
  testing::WriteFileOrDie(DbPath(), "");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "PRAGMA user_version=7", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.status().message(),
            "store " + DbPath() +
                ": database schema version 7 is newer than this asflowd supports (" +
                std::to_string(Store::kSchemaVersion) + "); run a newer asflowd or use another state file");
}

// Issue 12, defect 5: PRAGMA journal_mode=WAL ran before the version check
// and rewrote the header of a file that was then refused.
TEST_F(StoreTest, RefusedStateFileIsLeftByteForByteUntouched) {
  testing::WriteFileOrDie(DbPath(), "");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "PRAGMA journal_mode=DELETE; CREATE TABLE t(x); INSERT INTO t VALUES(1);"
                         " PRAGMA user_version=99",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  const std::string before = testing::ReadFileOrDie(DbPath());

  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("database schema version 99 is newer"));
  EXPECT_EQ(testing::ReadFileOrDie(DbPath()), before);
  struct stat st;
  EXPECT_NE(stat((DbPath() + "-wal").c_str(), &st), 0);
  EXPECT_NE(stat((DbPath() + "-shm").c_str(), &st), 0);
}

TEST_F(StoreTest, GarbageStateFileIsRefusedUntouched) {
  const std::string garbage(4096, 'x');
  testing::WriteFileOrDie(DbPath(), garbage);
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(DbPath());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store.status().message(), "store " + DbPath() + ": file is not a database");
  EXPECT_EQ(testing::ReadFileOrDie(DbPath()), garbage);
}

TEST_F(StoreTest, UnwritablePathFailsWithPath) {
  // A regular file where a directory should be: fails even for root.
  testing::WriteFileOrDie(dir_.Join("blocker"), "x");
  const std::string path = dir_.Join("blocker/sub/asflow.db");
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.status().message(),
            "store " + path + ": cannot create directory " + dir_.Join("blocker/sub") +
                ": Not a directory");

  // A file that is not a database.
  testing::WriteFileOrDie(dir_.Join("junk.db"), std::string(4096, 'j'));
  store = Store::Open(dir_.Join("junk.db"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store.status().message(),
            "store " + dir_.Join("junk.db") + ": file is not a database");
}

}  // namespace
}  // namespace asflow

namespace asflow {
namespace {

TEST_F(StoreTest, ListInstancesFiltersByExactParams) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t run = CreateRunOrDie(*store, "yt");
  for (int i = 0; i < 3; ++i) {
    InstanceRecord r = MakeInstance(run, i, "extract", v1::DONE);
    r.params = absl::StrCat("{\"video_id\":\"v", i, "\"}");
    store->PutInstance(r);
  }
  ASSERT_TRUE(store->Flush().ok());
  InstanceQuery q;
  q.run_id = run;
  q.task = "extract";
  q.params = "{\"video_id\":\"v1\"}";
  auto rows = store->ListInstances(q);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].seq, 1);
}

TEST_F(StoreTest, FindInstancesAcrossRunsByFlowTaskPathAndState) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  int64_t a = CreateRunOrDie(*store, "yt");     // workspace /data/yt
  int64_t b = CreateRunOrDie(*store, "other");  // workspace /data/other
  InstanceRecord r1 = MakeInstance(a, 0, "extract", v1::SUPPRESSED);
  r1.output = "t/v1.jsonl.zst";
  InstanceRecord r2 = MakeInstance(a, 1, "extract", v1::DONE);
  r2.output = "t/v2.jsonl.zst";
  InstanceRecord r3 = MakeInstance(b, 0, "extract", v1::FAILED);
  r3.output = "t/v1.jsonl.zst";
  for (const auto& r : {r1, r2, r3}) store->PutInstance(r);
  ASSERT_TRUE(store->Flush().ok());

  InstanceFilter f;
  f.task = "extract";
  f.states = {v1::SUPPRESSED, v1::FAILED};
  auto all = store->FindInstances(f);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].record.run_id, a);
  EXPECT_EQ((*all)[0].workspace, "/data/yt");
  EXPECT_EQ((*all)[1].record.run_id, b);

  f.flow = "other";
  EXPECT_EQ(store->FindInstances(f)->size(), 1u);
  f.flow = "";
  f.path = "/data/yt/t/v1.jsonl.zst";
  auto by_path = store->FindInstances(f);
  ASSERT_EQ(by_path->size(), 1u);
  EXPECT_EQ(by_path->front().record.seq, 0);
  f.path = "";
  f.run_id = b;
  EXPECT_EQ(store->FindInstances(f)->size(), 1u);
  f.states = {v1::DONE};
  EXPECT_EQ(store->FindInstances(f)->size(), 0u);
}

}  // namespace
}  // namespace asflow

namespace asflow {
namespace {

// A state file written by the first release (schema 1) opens, migrates to
// the current schema and keeps its rows.
TEST_F(StoreTest, MigratesVersionOneDatabase) {
  std::filesystem::create_directories(dir_.Join("state"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
  const char* v1_schema = R"sql(
CREATE TABLE runs (id INTEGER PRIMARY KEY AUTOINCREMENT, flow TEXT NOT NULL, workspace TEXT NOT NULL,
  state INTEGER NOT NULL, created_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, error TEXT NOT NULL,
  run BLOB NOT NULL, request BLOB NOT NULL);
CREATE INDEX runs_by_state ON runs(state, id);
CREATE TABLE instances (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
  task TEXT NOT NULL, params TEXT NOT NULL, output TEXT NOT NULL, state INTEGER NOT NULL, error TEXT NOT NULL,
  attempts INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL, bytes INTEGER NOT NULL,
  lines INTEGER NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
CREATE INDEX instances_by_state ON instances(run_id, state);
CREATE INDEX instances_by_task ON instances(run_id, task);
INSERT INTO runs VALUES (1, 'yt', '/w', 1, 5, 0, '', x'', x'');
INSERT INTO instances VALUES (1, 0, 'extract', '{}', 'a.txt', 2, '', 1, 7, 0, 0, 0);
PRAGMA user_version=1;
)sql";
  ASSERT_EQ(sqlite3_exec(db, v1_schema, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto rows = store->LoadInstances(1);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].state, v1::RUNNING);
  EXPECT_EQ((*rows)[0].started_ms, 7);
  EXPECT_EQ((*rows)[0].pgid, 0);
  store.reset();

  // Version 3 dropped the instance indexes no query used.
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT (SELECT count(*) FROM sqlite_master WHERE type='index'"
                               " AND tbl_name='instances' AND sql IS NOT NULL),"
                               " (SELECT user_version FROM pragma_user_version)",
                               -1, &stmt, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 0);
  EXPECT_EQ(sqlite3_column_int(stmt, 1), Store::kSchemaVersion);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StoreTest, PgidAndMetaRoundTrip) {
  {
    auto store = OpenStore();
    ASSERT_NE(store, nullptr);
    int64_t run = CreateRunOrDie(*store, "yt");
    InstanceRecord r = MakeInstance(run, 0, "extract", v1::RUNNING);
    r.pgid = 4242;
    store->PutInstance(r);
    ASSERT_TRUE(store->Flush().ok());
    EXPECT_EQ(*store->GetMeta("boot_id"), "");
    ASSERT_TRUE(store->SetMeta("boot_id", "abc").ok());
    ASSERT_TRUE(store->SetMeta("boot_id", "def").ok());
  }
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->GetMeta("boot_id"), "def");
  EXPECT_EQ(store->LoadInstances(1)->at(0).pgid, 4242);
}

TEST_F(StoreTest, AttemptsAreKeptPerInstanceInOrderWithTheirTaskAndParams) {
  std::unique_ptr<Store> store = OpenStore();
  ASSERT_NE(store, nullptr);
  const int64_t run = CreateRunOrDie(*store, "transcripts");
  store->PutInstance(MakeInstance(run, 0, "extract"));
  store->PutInstance(MakeInstance(run, 1, "extract"));
  auto attempt = [&](int64_t seq, int n, v1::InstanceState state, std::string err) {
    AttemptRecord a;
    a.run_id = run;
    a.seq = seq;
    a.attempt = n;
    a.started_ms = 1000 * n;
    a.finished_ms = 1000 * n + 500;
    a.exit_code = state == v1::DONE ? 0 : 75;
    a.state = state;
    a.error = state == v1::DONE ? "" : "exit code 75";
    a.stderr_tail = std::move(err);
    return a;
  };
  store->PutAttempt(attempt(1, 1, v1::QUEUED, std::string("busy\n\xff\0bytes", 12)));
  store->PutAttempt(attempt(0, 1, v1::DONE, "fine\n"));
  store->PutAttempt(attempt(1, 2, v1::DONE, "ok\n"));
  ASSERT_TRUE(store->Flush().ok());

  auto all = store->ListAttempts(run);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].record.seq, 0);
  EXPECT_EQ((*all)[1].record.seq, 1);
  EXPECT_EQ((*all)[1].record.attempt, 1);
  EXPECT_EQ((*all)[1].record.state, v1::QUEUED);
  EXPECT_EQ((*all)[1].record.exit_code, 75);
  EXPECT_EQ((*all)[1].record.error, "exit code 75");
  EXPECT_EQ((*all)[1].record.stderr_tail, std::string("busy\n\xff\0bytes", 12));  // bytes as they came
  EXPECT_EQ((*all)[1].record.started_ms, 1000);
  EXPECT_EQ((*all)[1].record.finished_ms, 1500);
  EXPECT_EQ((*all)[1].task, "extract");
  EXPECT_EQ((*all)[1].params, "{\"video_id\":\"v1\"}");
  EXPECT_EQ((*all)[2].record.attempt, 2);

  auto one = store->ListAttempts(run, 0);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->front().record.stderr_tail, "fine\n");
}

}  // namespace
}  // namespace asflow
