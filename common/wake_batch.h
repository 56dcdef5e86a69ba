// WakeBatch: wake-ups deferred to the end of a batch of work on one thread.
//
// A thread that queues many events for one stream in one go (the
// scheduler's turn, the store writer's committed group) would otherwise
// wake the stream's writer at the first event: the writer sends that one
// alone and the rest in a second message, and each message costs both
// ends a thread switch. Inside a WakeBatch a wake-up is kept until the
// batch ends and then runs once per key, so what the batch queued goes out
// together.
//
//   {
//     WakeBatch batch;                       // this thread's batch opens
//     ... WakeBatch::Wake(session, notify);  // deferred
//     ... WakeBatch::Wake(session, notify);  // same key: dropped
//   }                                        // notify runs once here
//
// Outside a batch Wake runs at once. Batches nest (the outermost one runs
// them). A thread must not wait, inside a batch, for a writer it woke.
// Thread-compatible: each thread has its own batch.
#ifndef ASFLOW_COMMON_WAKE_BATCH_H_
#define ASFLOW_COMMON_WAKE_BATCH_H_

#include <functional>
#include <utility>
#include <vector>

namespace asflow {

class WakeBatch {
 public:
  WakeBatch();
  ~WakeBatch();
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;

  // Runs `wake` now, or once when the calling thread's batch ends (the
  // first wake-up queued under `key` is the one kept).
  static void Wake(const void* key, std::function<void()> wake);

 private:
  bool outermost_;
  std::vector<std::pair<const void*, std::function<void()>>> wakes_;
};

}  // namespace asflow

#endif  // ASFLOW_COMMON_WAKE_BATCH_H_
