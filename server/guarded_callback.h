// GuardedCallback: a function a stream's reactor hands to a hub (wake my
// writer, end my stream) that other threads may call until the reactor
// forgets it, because it refers to the reactor. Thread-safe.
#ifndef ASFLOW_SERVER_GUARDED_CALLBACK_H_
#define ASFLOW_SERVER_GUARDED_CALLBACK_H_

#include <functional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace asflow {

class GuardedCallback {
 public:
  void Set(std::function<void()> fn) {
    absl::MutexLock lock(&mu_);
    fn_ = std::move(fn);
  }
  // Calls it, unless it was never set or was cleared.
  void Call() {
    absl::MutexLock lock(&mu_);
    if (fn_ != nullptr) fn_();
  }
  void Clear() { Set(nullptr); }

 private:
  absl::Mutex mu_;
  std::function<void()> fn_ ABSL_GUARDED_BY(mu_);
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_GUARDED_CALLBACK_H_
