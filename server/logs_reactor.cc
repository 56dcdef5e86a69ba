#include "server/logs_reactor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/run_state.h"

namespace asflow {

absl::StatusOr<LogFilter> LogsReactor::FilterOf(const v1::LogsRequest& request) {
  LogFilter filter;
  filter.run_id = request.run_id();
  filter.task = request.task();
  if (request.match_size() > 0 && (request.task().empty() || request.match_size() > kMaxParamNeedles)) {
    return absl::InvalidArgumentError(
        absl::StrCat("a match filter needs a task and has at most ", kMaxParamNeedles, " terms"));
  }
  for (const std::string& m : request.match()) {
    const size_t eq = m.find('=');
    filter.needles.push_back(eq == std::string::npos ? ParamNeedle("", m)
                                                     : ParamNeedle(m.substr(0, eq), m.substr(eq + 1)));
  }
  return filter;
}

LogsReactor::LogsReactor(LogHub* logs, Store* store, const RunReader* reader, const v1::LogsRequest& request,
                         LogFilter filter)
    : logs_(logs), follow_(request.follow()) {
  // Subscribe before reading the store: an attempt stays in the hub until
  // its row is committed, so each one is found in one place or both (and
  // then taken from the hub).
  std::vector<v1::LogChunk> live;
  absl::flat_hash_set<AttemptKey> live_keys;
  sub_ = logs_->Subscribe(filter, [wake = wake_] { wake->Call(); }, &live, &live_keys);
  absl::Status status;
  std::deque<v1::LogChunk> queue;
  if (auto stored = store->ListAttempts(request.run_id()); !stored.ok()) {
    status = stored.status();
  } else {
    for (Store::StoredAttempt& a : *stored) {
      const AttemptRecord& r = a.record;
      if (r.stderr_tail.empty() || live_keys.contains(AttemptKey{r.run_id, r.seq, r.started_ms})) continue;
      if (!filter.Matches(LogSource{r.run_id, r.seq, a.task, a.params})) continue;
      v1::LogChunk chunk;
      chunk.set_run_id(r.run_id);
      chunk.set_seq(r.seq);
      chunk.set_task(a.task);
      for (auto& [k, v] : DecodeParams(a.params)) (*chunk.mutable_params())[k] = v;
      chunk.set_attempt(r.attempt);
      chunk.set_data(std::move(a.record.stderr_tail));
      chunk.set_stored(true);
      queue.push_back(std::move(chunk));
    }
  }
  for (v1::LogChunk& c : live) {
    if (!c.data().empty() || c.dropped_bytes() > 0) queue.push_back(std::move(c));
  }
  // The committed state, read after subscribing: a run that ends later
  // ends this stream through the hub.
  bool over = !follow_;
  if (status.ok() && !over) {
    auto run = reader->GetRun(request.run_id());
    if (!run.ok()) status = run.status();
    else over = run->state() != v1::RUN_RUNNING;
  }
  {
    absl::MutexLock lock(&mu_);
    queue_ = std::move(queue);
    ended_ = over;
    if (!status.ok()) {
      FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, std::string(status.message())));
      return;
    }
  }
  // Only now: a chunk taken before would come ahead of the history.
  wake_->Set([this] { MaybeWrite(); });
  MaybeWrite();
}

void LogsReactor::FinishLocked(grpc::Status status) {
  if (finished_) return;
  finished_ = true;
  Finish(std::move(status));
}

void LogsReactor::MaybeWrite() {
  absl::MutexLock lock(&mu_);
  if (writing_ || finished_) return;
  if (queue_.empty() && !ended_ && sub_ != nullptr) {
    bool run_ended = false;
    for (v1::LogChunk& c : sub_->Take(&run_ended)) queue_.push_back(std::move(c));
    if (run_ended) ended_ = true;
  }
  if (queue_.empty()) {
    if (ended_) FinishLocked(grpc::Status::OK);
    return;  // the hub wakes us
  }
  writing_chunk_ = std::move(queue_.front());
  queue_.pop_front();
  writing_ = true;
  StartWrite(&writing_chunk_);
}

void LogsReactor::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "logs stream broken"));
      return;
    }
  }
  MaybeWrite();
}

void LogsReactor::OnCancel() {
  absl::MutexLock lock(&mu_);
  FinishLocked(grpc::Status::CANCELLED);
}

void LogsReactor::OnDone() {
  wake_->Clear();
  if (sub_ != nullptr) logs_->Unsubscribe(sub_);
  delete this;  // gRPC's contract for callback reactors: freed in OnDone
}

}  // namespace asflow
