#include "server/log_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "server/run_state.h"

namespace asflow {

bool LogFilter::Matches(const LogSource& source) const {
  if (source.run_id != run_id) return false;
  if (!task.empty() && source.task != task) return false;
  for (const std::string& needle : needles) {
    if (!absl::StrContains(source.params, needle)) return false;
  }
  return true;
}

v1::LogChunk LogHub::ChunkFor(const Attempt& a, const LogSource& s, absl::string_view data) {
  v1::LogChunk chunk;
  chunk.set_run_id(s.run_id);
  chunk.set_seq(s.seq);
  chunk.set_task(s.task);
  for (auto& [k, v] : DecodeParams(s.params)) (*chunk.mutable_params())[k] = v;
  chunk.set_attempt(a.attempt);
  chunk.set_data(std::string(data));
  return chunk;
}

bool LogHub::QueueLocked(Subscription& sub, v1::LogChunk chunk, const AttemptKey& key) {
  const size_t size = chunk.data().size();
  if (sub.queued_bytes_ + size > kMaxQueuedBytes) {
    sub.dropped_[key] += static_cast<int64_t>(size);
    return false;
  }
  if (auto it = sub.dropped_.find(key); it != sub.dropped_.end()) {
    chunk.set_dropped_bytes(it->second);
    sub.dropped_.erase(it);
  }
  const bool was_empty = sub.queue_.empty();
  sub.queued_bytes_ += size;
  sub.queue_.push_back(std::move(chunk));
  return was_empty;
}

void LogHub::Begin(ExecId id, int attempt, int64_t started_ms, std::vector<LogSource> sources) {
  auto a = std::make_shared<Attempt>();
  a->attempt = attempt;
  a->started_ms = started_ms;
  a->sources = std::move(sources);
  absl::MutexLock lock(&mu_);
  auto& slot = running_[id];
  if (slot != nullptr) unstored_[{id, slot->started_ms}] = std::move(slot);
  slot = std::move(a);
}

void LogHub::Join(ExecId id, LogSource source) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(id);
  if (it != running_.end()) it->second->sources.push_back(std::move(source));
}

void LogHub::Append(ExecId id, absl::string_view data) {
  if (data.empty()) return;
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    auto it = running_.find(id);
    if (it == running_.end()) return;
    Attempt& a = *it->second;
    a.total += static_cast<int64_t>(data.size());
    if (keep_bytes_ > 0) {
      a.tail.append(data.data(), data.size());
      if (a.tail.size() > keep_bytes_) a.tail.erase(0, a.tail.size() - keep_bytes_);
    }
    for (const auto& sub : subs_) {
      for (const LogSource& s : a.sources) {
        if (!sub->filter_.Matches(s)) continue;
        if (QueueLocked(*sub, ChunkFor(a, s, data), AttemptKey{s.run_id, s.seq, a.started_ms})) {
          wake.push_back(sub->notify_);
        }
      }
    }
  }
  for (auto& fn : wake) fn();
}

void LogHub::End(ExecId id, int64_t started_ms) {
  absl::MutexLock lock(&mu_);
  auto it = running_.find(id);
  if (it != running_.end() && it->second->started_ms == started_ms) {
    running_.erase(it);
    return;
  }
  unstored_.erase({id, started_ms});
}

void LogHub::RunEnded(int64_t run_id) {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& sub : subs_) {
      if (sub->filter_.run_id != run_id || sub->run_ended_) continue;
      sub->run_ended_ = true;
      wake.push_back(sub->notify_);
    }
  }
  for (auto& fn : wake) fn();
}

std::shared_ptr<LogHub::Subscription> LogHub::Subscribe(LogFilter filter, std::function<void()> notify,
                                                        std::vector<v1::LogChunk>* snapshot,
                                                        absl::flat_hash_set<AttemptKey>* live) {
  std::shared_ptr<Subscription> sub(new Subscription(this, std::move(filter), std::move(notify)));
  absl::MutexLock lock(&mu_);
  auto add = [&](const Attempt& a) {
    for (const LogSource& s : a.sources) {
      if (!sub->filter_.Matches(s)) continue;
      v1::LogChunk chunk = ChunkFor(a, s, a.tail);
      chunk.set_dropped_bytes(a.total - static_cast<int64_t>(a.tail.size()));
      snapshot->push_back(std::move(chunk));
      live->insert(AttemptKey{s.run_id, s.seq, a.started_ms});
    }
  };
  // Those over first (they started earlier), then the running ones.
  for (const auto& [key, a] : unstored_) add(*a);
  for (const auto& [id, a] : running_) add(*a);
  std::stable_sort(snapshot->begin(), snapshot->end(), [](const v1::LogChunk& x, const v1::LogChunk& y) {
    return std::make_pair(x.seq(), x.attempt()) < std::make_pair(y.seq(), y.attempt());
  });
  subs_.push_back(sub);
  return sub;
}

void LogHub::Unsubscribe(const std::shared_ptr<Subscription>& sub) {
  absl::MutexLock lock(&mu_);
  subs_.erase(std::remove(subs_.begin(), subs_.end(), sub), subs_.end());
}

size_t LogHub::attempts() const {
  absl::MutexLock lock(&mu_);
  return running_.size() + unstored_.size();
}

std::vector<v1::LogChunk> LogHub::Subscription::Take(bool* run_ended) {
  absl::MutexLock lock(&hub_->mu_);
  std::vector<v1::LogChunk> out = std::move(queue_);
  queue_.clear();
  queued_bytes_ = 0;
  *run_ended = run_ended_;
  return out;
}

}  // namespace asflow
