#include "common/wake_batch.h"

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace asflow {
namespace {

TEST(WakeBatchTest, OutsideABatchAWakeUpRunsAtOnce) {
  int woken = 0;
  WakeBatch::Wake(&woken, [&] { ++woken; });
  EXPECT_EQ(woken, 1);
}

TEST(WakeBatchTest, InsideABatchWakeUpsRunOncePerKeyWhenItEnds) {
  int a = 0;
  int b = 0;
  std::string order;
  {
    WakeBatch batch;
    WakeBatch::Wake(&a, [&] { ++a; order += "a"; });
    WakeBatch::Wake(&b, [&] { ++b; order += "b"; });
    WakeBatch::Wake(&a, [&] { ++a; order += "A"; });  // the same writer: woken once
    EXPECT_EQ(a + b, 0);
  }
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 1);
  EXPECT_EQ(order, "ab");  // in the order first asked
}

TEST(WakeBatchTest, NestedBatchesWakeWhenTheOutermostEnds) {
  int woken = 0;
  {
    WakeBatch outer;
    {
      WakeBatch inner;
      WakeBatch::Wake(&woken, [&] { ++woken; });
    }
    EXPECT_EQ(woken, 0);
  }
  EXPECT_EQ(woken, 1);
}

TEST(WakeBatchTest, AWakeUpRunsOutsideTheBatchThatDeferredIt) {
  int inner = 0;
  {
    WakeBatch batch;
    WakeBatch::Wake(&inner, [&] {
      // A wake-up that wakes another runs it at once: no batch is open.
      WakeBatch::Wake(&inner + 1, [&] { ++inner; });
      EXPECT_EQ(inner, 1);
    });
  }
  EXPECT_EQ(inner, 1);
}

TEST(WakeBatchTest, EachThreadHasItsOwnBatch) {
  int woken = 0;
  WakeBatch batch;
  std::thread other([&] { WakeBatch::Wake(&woken, [&] { ++woken; }); });
  other.join();
  EXPECT_EQ(woken, 1);  // the other thread had no batch open
}

}  // namespace
}  // namespace asflow
