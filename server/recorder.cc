#include "server/recorder.h"

#include <optional>
#include <utility>

namespace asflow {
namespace {

// New rows per store write while a task expands: large enough that a
// write is cheap, small enough that the writer works on them while the
// expansion goes on (W2, 10,000 cached: 4,096 per write was slower than
// one write per row, 512 faster).
constexpr size_t kNewRowsPerWrite = 512;

// The first line of an error text, for one-line messages.
std::string FirstLine(absl::string_view text) { return std::string(text.substr(0, text.find('\n'))); }

}  // namespace

Recorder::Recorder(StateStore* store, EventHub* hub, LostFn on_lost, SessionSendFn send, LogHub* logs)
    : store_(store), hub_(hub), on_lost_(std::move(on_lost)), send_(std::move(send)), logs_(logs) {}

namespace {

// What a committed instance record tells the calls waiting for it.
struct CallAnswer {
  int64_t session = 0;
  absl::InlinedVector<int64_t, 1> calls;
};

CallAnswer TakeCalls(RunRt& run, int64_t seq) {
  CallAnswer answer;
  if (run.code == nullptr || !IsFinal(run.instances[seq].state)) return answer;
  auto it = run.code->calls.find(seq);
  if (it == run.code->calls.end()) return answer;
  answer.session = run.code->session;
  answer.calls = std::move(it->second);
  run.code->calls.erase(it);
  return answer;
}

}  // namespace

void Recorder::Instance(RunRt& run, int64_t seq, v1::InstanceEvent::Kind kind, int64_t bytes, int64_t lines,
                        const SelfProgress* self) {
  const InstanceRt& inst = run.instances[seq];
  InstanceRecord rec;
  rec.run_id = run.id;
  rec.seq = seq;
  rec.task = run.tasks[inst.task].spec->name();
  rec.params = inst.params;
  rec.output = inst.output;
  rec.state = inst.state;
  rec.error = inst.error.str();
  rec.attempts = inst.attempts;
  rec.started_ms = inst.started_ms;
  rec.finished_ms = inst.finished_ms;
  rec.bytes = bytes;
  rec.lines = lines;
  rec.pgid = inst.state == v1::RUNNING ? inst.pgid : 0;
  if (!run.made_by.empty()) {
    auto made_by = run.made_by.find(seq);
    if (made_by != run.made_by.end()) rec.made_by_run = made_by->second;
  }
  // The event is made from the record once it is committed: while the
  // write waits in the store's queue it holds only the counters, encoded
  // (~30 bytes; a v1::TaskCounters copy costs ~250 on the heap).
  std::string counters;
  if (kind != v1::InstanceEvent::KIND_UNSPECIFIED) counters = run.tasks[inst.task].counters.SerializeAsString();
  std::optional<SelfProgress> progress;
  if (self != nullptr) progress = *self;
  store_->PutInstance(std::move(rec), [hub = hub_, lost = on_lost_, send = send_, kind, counters = std::move(counters),
                                       answer = TakeCalls(run, seq), progress = std::move(progress)](
                                          const InstanceRecord& written, const absl::Status& status) {
    if (!status.ok()) return lost(written.run_id, status);
    if (answer.session != 0 && send != nullptr) {
      for (int64_t call : answer.calls) {
        v1::SessionEvent event;
        v1::CallState& cs = *event.mutable_call_state();
        cs.set_call_id(call);
        cs.set_state(written.state);
        cs.set_error(written.error);
        cs.set_run_id(written.run_id);
        cs.set_seq(written.seq);
        send(answer.session, std::move(event));
      }
    }
    if (kind == v1::InstanceEvent::KIND_UNSPECIFIED) return;
    v1::Event event;
    v1::InstanceEvent* ie = event.mutable_instance();
    ie->set_kind(kind);
    *ie->mutable_instance() = InstanceToProto(written);
    // Events carry the first line only (what watchers show); the full
    // text, up to a 16 KiB stderr tail, stays in SQLite for `show`.
    ie->mutable_instance()->set_error(FirstLine(written.error));
    if (progress) {
      ie->mutable_instance()->set_progress_total(progress->total);
      ie->mutable_instance()->set_progress_completed(progress->completed);
      ie->mutable_instance()->set_progress_description(progress->description);
    }
    ie->mutable_counters()->ParseFromString(counters);
    hub->Publish(std::move(event));
  });
}

void Recorder::NewInstance(RunRt& run, int64_t seq) {
  const InstanceRt& inst = run.instances[seq];
  if (run.expanding == nullptr || !inst.error.empty() || run.code != nullptr) {
    Instance(run, seq, v1::InstanceEvent::KIND_UNSPECIFIED);
    return;
  }
  NewRows& rows = run.expanding->rows;
  rows.Add(seq, inst.state, inst.finished_ms, inst.params, inst.output);
  if (rows.size() >= kNewRowsPerWrite) FlushNewInstances(run);
}

void Recorder::FlushNewInstances(RunRt& run) {
  if (run.expanding == nullptr) return;
  NewRows& rows = run.expanding->rows;
  if (rows.size() == 0) return;
  const int64_t run_id = run.id;
  store_->PutNew(std::exchange(rows, NewRows(run.id, rows.task())),
                 [lost = on_lost_, run_id](const absl::Status& status) {
                   if (!status.ok()) lost(run_id, status);
                 });
}

v1::Run Recorder::RunProto(const RunRt& run) {
  v1::Run proto;
  proto.set_id(run.id);
  proto.set_flow(run.flow);
  proto.set_workspace(run.workspace);
  proto.set_state(run.state);
  for (const auto& [k, v] : run.params) (*proto.mutable_params())[k] = v;
  proto.set_created_ms(run.created_ms);
  proto.set_finished_ms(run.finished_ms);
  proto.set_error(run.error);
  proto.set_keep_going(run.request.keep_going());
  proto.set_schedule(run.request.schedule());
  for (const TaskRt& task : run.tasks) *proto.add_tasks() = task.counters;
  return proto;
}

namespace {

// Tells a code run's session its run is over.
void SendRunClosed(const Recorder::SessionSendFn& send, int64_t session, int64_t ref, const v1::Run& run) {
  if (session == 0 || send == nullptr || run.state() == v1::RUN_RUNNING) return;
  v1::SessionEvent event;
  v1::RunClosed& rc = *event.mutable_run_closed();
  rc.set_ref(ref);
  rc.set_run_id(run.id());
  rc.set_state(run.state());
  rc.set_error(run.error());
  send(session, std::move(event));
}

}  // namespace

void Recorder::Run(const RunRt& run) {
  const int64_t session = run.code != nullptr ? run.code->session : 0;
  const int64_t ref = run.code != nullptr ? run.code->ref : 0;
  store_->PutRun(RunProto(run), [hub = hub_, lost = on_lost_, send = send_, logs = logs_, session, ref](
                                    const v1::Run& committed, const absl::Status& status) {
    if (!status.ok()) return lost(committed.id(), status);
    v1::Event event;
    *event.mutable_run()->mutable_run() = committed;
    hub->Publish(std::move(event));
    SendRunClosed(send, session, ref, committed);
    if (logs != nullptr && committed.state() != v1::RUN_RUNNING) logs->RunEnded(committed.id());
  });
}

void Recorder::Request(const RunRt& run) {
  store_->PutRunRequest(run.id, run.request.SerializeAsString(), [lost = on_lost_, id = run.id](const absl::Status& s) {
    if (!s.ok()) lost(id, s);
  });
}

void Recorder::RunLost(const RunRt& run) {
  v1::Run proto = RunProto(run);
  store_->PutRun(proto);
  // The counters as last committed (the hub's view only ever holds what
  // was): the scheduler's own include the states whose writes were lost.
  if (std::optional<v1::Run> committed = hub_->FindRun(run.id)) *proto.mutable_tasks() = committed->tasks();
  if (run.code != nullptr) SendRunClosed(send_, run.code->session, run.code->ref, proto);
  const int64_t run_id = proto.id();
  v1::Event event;
  *event.mutable_run()->mutable_run() = std::move(proto);
  hub_->Publish(std::move(event));
  if (logs_ != nullptr) logs_->RunEnded(run_id);
}

void Recorder::Row(InstanceRecord record) {
  store_->PutInstance(std::move(record), [lost = on_lost_](const InstanceRecord& r, const absl::Status& status) {
    if (!status.ok()) lost(r.run_id, status);
  });
}

}  // namespace asflow
