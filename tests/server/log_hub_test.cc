#include "server/log_hub.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/run_state.h"

namespace asflow {
namespace {

LogSource Source(int64_t run, int64_t seq, const std::string& task, const std::string& id) {
  return LogSource{run, seq, task, CanonicalParams({{"video_id", id}})};
}

std::string Data(const std::vector<v1::LogChunk>& chunks) {
  std::string out;
  for (const v1::LogChunk& c : chunks) out += c.data();
  return out;
}

class LogHubTest : public ::testing::Test {
 protected:
  std::shared_ptr<LogHub::Subscription> Subscribe(LogFilter filter) {
    return hub_.Subscribe(std::move(filter), [this] { ++wakes_; }, &snapshot_, &live_);
  }
  LogHub hub_{8};  // keeps the last 8 bytes of a running attempt
  int wakes_ = 0;
  std::vector<v1::LogChunk> snapshot_;
  absl::flat_hash_set<AttemptKey> live_;
};

TEST_F(LogHubTest, LateReaderGetsTheKeptTailAndHowMuchItMissed) {
  hub_.Begin(7, 1, 1000, {Source(1, 0, "extract", "a")});
  hub_.Append(7, "first line\nsecond\n");
  auto sub = Subscribe(LogFilter{1, "", {}});
  ASSERT_EQ(snapshot_.size(), 1u);
  EXPECT_EQ(snapshot_[0].data(), "\nsecond\n");
  EXPECT_EQ(snapshot_[0].dropped_bytes(), 10);
  EXPECT_EQ(snapshot_[0].task(), "extract");
  EXPECT_EQ(snapshot_[0].params().at("video_id"), "a");
  EXPECT_EQ(snapshot_[0].attempt(), 1);
  EXPECT_TRUE(live_.contains(AttemptKey{1, 0, 1000}));
}

TEST_F(LogHubTest, ChunksGoToMatchingReadersOnlyAndWakeThemOnce) {
  hub_.Begin(1, 1, 10, {Source(1, 0, "extract", "abc")});
  hub_.Begin(2, 1, 10, {Source(1, 1, "extract", "xyz")});
  hub_.Begin(3, 1, 10, {Source(2, 0, "extract", "abc")});
  auto run1 = Subscribe(LogFilter{1, "", {}});
  auto abc = Subscribe(LogFilter{1, "extract", {ParamNeedle("video_id", "ab")}});
  auto other_task = Subscribe(LogFilter{1, "playlist", {}});
  hub_.Append(1, "a1 ");
  hub_.Append(2, "x1 ");
  hub_.Append(3, "run 2 ");
  hub_.Append(1, "a2");
  bool ended = false;
  EXPECT_EQ(Data(run1->Take(&ended)), "a1 x1 a2");
  EXPECT_EQ(Data(abc->Take(&ended)), "a1 a2");
  EXPECT_EQ(Data(other_task->Take(&ended)), "");
  EXPECT_FALSE(ended);
  EXPECT_EQ(wakes_, 2) << "a reader is woken when its queue stops being empty";
}

TEST_F(LogHubTest, AttemptStaysUntilStoredEvenAfterTheNextOneBegins) {
  hub_.Begin(1, 1, 100, {Source(1, 0, "t", "a")});
  hub_.Append(1, "try 1");
  hub_.Begin(1, 2, 200, {Source(1, 0, "t", "a")});  // a retry, before try 1's row is committed
  hub_.Append(1, "try 2");
  EXPECT_EQ(hub_.attempts(), 2u);
  auto sub = Subscribe(LogFilter{1, "", {}});
  ASSERT_EQ(snapshot_.size(), 2u);
  EXPECT_EQ(snapshot_[0].attempt(), 1);
  EXPECT_EQ(snapshot_[0].data(), "try 1");
  EXPECT_EQ(snapshot_[1].data(), "try 2");
  hub_.End(1, 100);
  EXPECT_EQ(hub_.attempts(), 1u);
  hub_.End(1, 200);
  EXPECT_EQ(hub_.attempts(), 0u);
  hub_.Append(1, "after the end");  // ignored
  bool ended = false;
  EXPECT_THAT(sub->Take(&ended), ::testing::IsEmpty());
}

TEST_F(LogHubTest, ARunJoiningASharedAttemptGetsItsChunks) {
  hub_.Begin(1, 1, 100, {Source(1, 0, "t", "a")});
  auto run2 = Subscribe(LogFilter{2, "", {}});
  hub_.Join(1, Source(2, 5, "t", "a"));
  hub_.Append(1, "shared");
  bool ended = false;
  std::vector<v1::LogChunk> got = run2->Take(&ended);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].run_id(), 2);
  EXPECT_EQ(got[0].seq(), 5);
}

TEST_F(LogHubTest, RunEndedWakesItsReadersAfterTheirChunks) {
  hub_.Begin(1, 1, 100, {Source(1, 0, "t", "a")});
  auto sub = Subscribe(LogFilter{1, "", {}});
  hub_.Append(1, "last words");
  hub_.RunEnded(2);  // another run
  bool ended = false;
  EXPECT_EQ(Data(sub->Take(&ended)), "last words");
  EXPECT_FALSE(ended);
  hub_.RunEnded(1);
  EXPECT_THAT(sub->Take(&ended), ::testing::IsEmpty());
  EXPECT_TRUE(ended);
}

TEST_F(LogHubTest, SlowReaderLosesChunksPastItsBoundAndIsToldHowMany) {
  hub_.Begin(1, 1, 100, {Source(1, 0, "t", "a")});
  auto sub = Subscribe(LogFilter{1, "", {}});
  const std::string big(LogHub::kMaxQueuedBytes, 'x');
  hub_.Append(1, big);
  hub_.Append(1, "dropped");  // 7 bytes over the bound
  bool ended = false;
  std::vector<v1::LogChunk> got = sub->Take(&ended);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data().size(), big.size());
  hub_.Append(1, "next");
  got = sub->Take(&ended);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data(), "next");
  EXPECT_EQ(got[0].dropped_bytes(), 7);
}

TEST_F(LogHubTest, UnsubscribedReaderGetsNothingMore) {
  hub_.Begin(1, 1, 100, {Source(1, 0, "t", "a")});
  auto sub = Subscribe(LogFilter{1, "", {}});
  hub_.Unsubscribe(sub);
  hub_.Append(1, "unheard");
  bool ended = false;
  EXPECT_THAT(sub->Take(&ended), ::testing::IsEmpty());
  EXPECT_EQ(wakes_, 0);
}

}  // namespace
}  // namespace asflow
