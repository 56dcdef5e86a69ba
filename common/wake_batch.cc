#include "common/wake_batch.h"

#include <algorithm>

namespace asflow {
namespace {

thread_local WakeBatch* t_batch = nullptr;

}  // namespace

WakeBatch::WakeBatch() : outermost_(t_batch == nullptr) {
  if (outermost_) t_batch = this;
}

WakeBatch::~WakeBatch() {
  if (!outermost_) return;
  // A wake-up may open a batch of its own (it runs outside this one).
  t_batch = nullptr;
  for (auto& [key, wake] : wakes_) wake();
}

void WakeBatch::Wake(const void* key, std::function<void()> wake) {
  WakeBatch* batch = t_batch;
  if (batch == nullptr) return wake();
  auto& wakes = batch->wakes_;
  if (std::any_of(wakes.begin(), wakes.end(), [key](const auto& w) { return w.first == key; })) return;
  wakes.emplace_back(key, std::move(wake));
}

}  // namespace asflow
