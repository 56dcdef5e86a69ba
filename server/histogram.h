// Histogram: counts of observed durations in fixed buckets, for /metrics
// (Prometheus' cumulative "le" buckets are made when it is read). Lock-free:
// Observe is a few relaxed atomic adds, so a hot path (the store's writer)
// can call it on every transaction. Thread-safe.
#ifndef ASFLOW_SERVER_HISTOGRAM_H_
#define ASFLOW_SERVER_HISTOGRAM_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace asflow {

class Histogram {
 public:
  // Upper bounds in seconds, ascending; one more bucket (+Inf) follows.
  static constexpr std::array<double, 14> kLatencyBounds = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

  void Observe(absl::Duration d) {
    double seconds = absl::ToDoubleSeconds(d);
    size_t i = std::lower_bound(kLatencyBounds.begin(), kLatencyBounds.end(), seconds) - kLatencyBounds.begin();
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_relaxed);
  }

  struct Snapshot {
    std::vector<uint64_t> counts;  // per bucket (not cumulative); last: +Inf
    double sum_seconds = 0;
  };
  Snapshot Read() const {
    Snapshot s;
    for (const auto& c : counts_) s.counts.push_back(c.load(std::memory_order_relaxed));
    s.sum_seconds = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
    return s;
  }

 private:
  std::array<std::atomic<uint64_t>, kLatencyBounds.size() + 1> counts_{};
  std::atomic<int64_t> sum_ns_{0};
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_HISTOGRAM_H_
