#include "server/event_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"

namespace asflow {
namespace {

// One hub batch at most per message in the plain stream (as Watch does).
constexpr size_t kBatchEvents = 2048;
constexpr size_t kBatchBytes = 512 * 1024;

constexpr char kEnd[] = "event: end\ndata: {}\n\n";

}  // namespace

absl::StatusOr<std::unique_ptr<EventStream>> EventStream::Open(EventHub* hub, Store* store,
                                                               const EventStreamOptions& options) {
  std::unique_ptr<EventStream> stream(new EventStream(hub, options));
  if (options.run_id != 0 && !hub->FindRun(options.run_id)) {
    auto rec = store->GetRun(options.run_id);
    if (!rec.ok()) return rec.status();
    // Only a finished run is served from the store; a running one is just
    // being submitted (its first event is on its way): subscribe as usual.
    if (rec->run.state() != v1::RUN_RUNNING) {
      v1::Event event;
      event.set_seq(hub->last_seq());
      event.set_time_ms(absl::ToUnixMillis(absl::Now()));
      *event.mutable_snapshot()->add_runs() = rec->run;
      stream->final_snapshot_ = std::move(event);
      return stream;
    }
  }
  if (options.summary) {
    EventCoalescerOptions co;
    co.run_id = options.run_id;
    co.instances = options.run_id != 0;
    stream->coalescer_.emplace(co);
  }
  std::weak_ptr<Signal> weak = stream->signal_;
  stream->sub_ = hub->Subscribe(
      options.run_id, options.summary ? 0 : options.from_seq,
      [weak] {
        if (std::shared_ptr<Signal> signal = weak.lock()) {
          absl::MutexLock lock(&signal->mu);
          signal->ready = true;
        }
      },
      /*paced=*/true, options.interval);
  return stream;
}

EventStream::EventStream(EventHub* hub, const EventStreamOptions& options)
    : hub_(hub), options_(options), last_write_(absl::Now()) {}

EventStream::~EventStream() {
  if (sub_ != nullptr) hub_->Unsubscribe(sub_);
}

void EventStream::Close() {
  absl::MutexLock lock(&signal_->mu);
  signal_->closed = true;
}

bool EventStream::RunEndedBefore() {
  // Called when nothing arrived for a while. The hub's view shows a run
  // final only once its final event is in the ring: if this stream has not
  // taken it by now (the next PopBatch would), it resumed after it.
  if (options_.run_id == 0) return false;
  std::optional<v1::Run> run = hub_->FindRun(options_.run_id);
  ended_before_ = run.has_value() && run->state() != v1::RUN_RUNNING;
  return ended_before_;
}

void EventStream::AppendMessage(const std::vector<v1::Event>& events, int64_t seq, std::string* out) {
  absl::StrAppend(out, "id: ", seq, "\ndata: [");
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;  // as the JSON API's answers
  for (size_t i = 0; i < events.size(); ++i) {
    json.clear();
    // Cannot fail for a message without Any fields.
    (void)google::protobuf::util::MessageToJsonString(events[i], &json, options);
    if (i > 0) out->push_back(',');
    out->append(json);
  }
  out->append("]\n\n");
}

bool EventStream::Next(absl::Duration wait, std::string* out) {
  if (ended_) return false;
  if (!started_) {
    // How long an EventSource waits before it reconnects after a break.
    out->append("retry: 2000\n\n");
    started_ = true;
  }
  size_t start = out->size();
  if (final_snapshot_) {
    AppendMessage({*final_snapshot_}, final_snapshot_->seq(), out);
    out->append(kEnd);
    ended_ = true;
    return false;
  }
  {
    absl::MutexLock lock(&signal_->mu);
    auto woken = [](Signal* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->ready || s->closed; };
    signal_->mu.AwaitWithTimeout(absl::Condition(+woken, signal_.get()), wait);
    if (signal_->closed) {
      // The daemon is stopping: no "end" event, so a browser's EventSource
      // reconnects (and resumes) once the daemon is back.
      ended_ = true;
      return false;
    }
    if (!signal_->ready && !RunEndedBefore()) {
      if (absl::Now() - last_write_ >= options_.keepalive) {
        out->append(": keepalive\n\n");
        last_write_ = absl::Now();
      }
      return true;
    }
    signal_->ready = false;
  }
  std::vector<EncodedEventPtr> taken;
  std::vector<v1::Event> events;
  int64_t last_seq = 0;
  bool final = false;
  v1::Event event;
  while (!final && hub_->PopBatch(sub_.get(), kBatchEvents, kBatchBytes, &taken)) {
    for (const EncodedEventPtr& e : taken) {
      if (!event.ParseFromString(e->bytes)) continue;
      last_seq = e->seq;
      if (options_.run_id != 0 && e->run_final && e->run_id == options_.run_id) final = true;
      if (coalescer_) {
        coalescer_->Add(event);
      } else {
        events.push_back(std::move(event));
        event.Clear();
      }
    }
    taken.clear();
    if (!coalescer_) {
      // One batch per message; the next call takes the rest at once.
      absl::MutexLock lock(&signal_->mu);
      signal_->ready = true;
      break;
    }
  }
  bool truncated = false;
  if (coalescer_) {
    EventCoalescer::Flushed flushed = coalescer_->Flush();
    events = std::move(flushed.events);
    truncated = flushed.truncated;
  }
  if (!events.empty()) AppendMessage(events, last_seq, out);
  if (truncated) out->append("event: truncated\ndata: {}\n\n");
  if (!final && ended_before_) {
    // The run's final event came before this stream's first (it resumed
    // after it): nothing more will come.
    final = true;
  }
  if (final) {
    out->append(kEnd);
    ended_ = true;
  }
  if (out->size() > start) last_write_ = absl::Now();
  return !final;
}

}  // namespace asflow
