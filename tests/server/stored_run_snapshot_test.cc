#include "server/stored_run_snapshot.h"

#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/event_hub.h"
#include "server/store.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

class StoredRunSnapshotTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = Store::Open(dir_.Join("state/asflow.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  int64_t CreateRun() {
    v1::Run run;
    run.set_flow("f");
    run.set_workspace("/data/f");
    run.set_state(v1::RUN_RUNNING);
    auto id = store_->CreateRun(run, "request");
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : -1;
  }

  static v1::Run Failed(int64_t id) {
    v1::Run run;
    run.set_id(id);
    run.set_flow("f");
    run.set_workspace("/data/f");
    run.set_state(v1::RUN_FAILED);
    run.set_error("write(id=x): output path has a '..' component");
    return run;
  }

  // What the daemon's recorder does with a committed run: publish it.
  void Publish(const v1::Run& committed) {
    v1::Event event;
    *event.mutable_run()->mutable_run() = committed;
    hub_.Publish(std::move(event));
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
  EventHub hub_;
};

TEST_F(StoredRunSnapshotTest, UnknownRunIsNotFound) {
  auto snapshot = StoredRunSnapshot(hub_, *store_, 42);
  EXPECT_EQ(snapshot.status().code(), absl::StatusCode::kNotFound) << snapshot.status();
}

TEST_F(StoredRunSnapshotTest, RunningRunTheHubHasNotHeardOfYetIsWatchedOnTheHub) {
  const int64_t id = CreateRun();
  auto snapshot = StoredRunSnapshot(hub_, *store_, id);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(*snapshot, nullptr);
}

TEST_F(StoredRunSnapshotTest, RunTheHubHoldsIsWatchedOnTheHub) {
  const int64_t id = CreateRun();
  store_->PutRun(Failed(id), [this](const v1::Run& committed, const absl::Status& s) { Publish(committed); });
  ASSERT_TRUE(store_->Flush().ok());
  auto snapshot = StoredRunSnapshot(hub_, *store_, id);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(*snapshot, nullptr);
}

TEST_F(StoredRunSnapshotTest, FinishedRunTheHubDoesNotHoldIsServedFromTheStore) {
  const int64_t id = CreateRun();
  store_->PutRun(Failed(id));  // finished before this hub (e.g. before a restart)
  ASSERT_TRUE(store_->Flush().ok());
  auto snapshot = StoredRunSnapshot(hub_, *store_, id);
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_NE(*snapshot, nullptr);
  ASSERT_EQ((*snapshot)->snapshot().runs_size(), 1);
  EXPECT_EQ((*snapshot)->snapshot().runs(0).id(), id);
  EXPECT_EQ((*snapshot)->snapshot().runs(0).state(), v1::RUN_FAILED);
  EXPECT_EQ((*snapshot)->seq(), hub_.last_seq());
}

// Bug (seen under ASan and load): a run that failed at submission was
// committed as failed while the writer thread had not yet published it;
// a Watch arriving in between was answered from the store, so `asflowctl
// run` printed the failure only in the summary, never the failed
// instance's line. The commit's callback is held here until the call has
// had every chance to answer from the store.
TEST_F(StoredRunSnapshotTest, RunCommittedAsFinishedButNotYetPublishedIsWatchedOnTheHub) {
  const int64_t id = CreateRun();
  absl::Notification committed, release;
  store_->PutRun(Failed(id), [&](const v1::Run& run, const absl::Status& s) {
    committed.Notify();
    release.WaitForNotification();
    Publish(run);
  });
  committed.WaitForNotification();
  ASSERT_EQ(store_->GetRun(id)->run.state(), v1::RUN_FAILED);  // readers see the commit already
  ASSERT_FALSE(hub_.FindRun(id).has_value());

  absl::StatusOr<std::unique_ptr<v1::Event>> snapshot;
  absl::Notification returned;
  std::thread watch([&] {
    snapshot = StoredRunSnapshot(hub_, *store_, id);
    returned.Notify();
  });
  // It must not answer while the commit's events are unpublished. (A bound
  // on how long to give it the chance to answer wrongly: with the fix it
  // cannot return before `release`, however loaded the machine.)
  EXPECT_FALSE(returned.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  release.Notify();
  watch.join();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  EXPECT_EQ(*snapshot, nullptr) << "answered from the store: the instance events would be missed";
  EXPECT_EQ(hub_.FindRun(id)->state(), v1::RUN_FAILED);
}

}  // namespace
}  // namespace asflow
