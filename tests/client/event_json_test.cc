#include "client/event_json.h"

#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "asflow/v1/service.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace asflow {
namespace {

std::string ProtobufJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &json, options).ok());
  return json;
}

// The fast path's line for `event`; fails the test if it declined.
std::string FastJson(const v1::Event& event) {
  std::string json = "prefix";
  EXPECT_TRUE(AppendWireAsJson(v1::Event::descriptor(), event.SerializeAsString(), &json))
      << event.ShortDebugString();
  return json.substr(6);
}

v1::Instance SomeInstance(int64_t seq) {
  v1::Instance inst;
  inst.set_run_id(7);
  inst.set_seq(seq);
  inst.set_task("item");
  (*inst.mutable_params())["i"] = std::to_string(seq);
  inst.set_output("data/" + std::to_string(seq) + ".jsonl.zst");
  inst.set_state(v1::DONE);
  inst.set_attempts(1);
  inst.set_started_ms(1795573827739);
  inst.set_finished_ms(1795573827840);
  inst.set_bytes(5000);
  inst.set_lines(100);
  return inst;
}

v1::TaskCounters SomeCounters() {
  v1::TaskCounters c;
  c.set_task("item");
  c.set_total(10000);
  c.set_queued(9000);
  c.set_running(4);
  c.set_done(996);
  c.set_expanded(true);
  return c;
}

v1::Run SomeRun(v1::RunState state) {
  v1::Run run;
  run.set_id(7);
  run.set_flow("bench_w1");
  run.set_workspace("/dev/shm/ws");
  run.set_state(state);
  (*run.mutable_params())["n"] = "10000";
  run.set_created_ms(1795573827739);
  if (state != v1::RUN_RUNNING) run.set_finished_ms(1795573837739);
  *run.add_tasks() = SomeCounters();
  v1::TaskCounters* ids = run.add_tasks();
  ids->set_task("ids");
  ids->set_total(1);
  ids->set_done(1);
  ids->set_expanded(true);
  return run;
}

TEST(EventJsonTest, InstanceEventMatchesProtobuf) {
  for (auto kind : {v1::InstanceEvent::QUEUED, v1::InstanceEvent::STARTED, v1::InstanceEvent::PROGRESS,
                    v1::InstanceEvent::FINISHED}) {
    v1::Event e;
    e.set_seq(1795573827379006);
    e.set_time_ms(1795573845878);
    e.mutable_instance()->set_kind(kind);
    *e.mutable_instance()->mutable_instance() = SomeInstance(42);
    *e.mutable_instance()->mutable_counters() = SomeCounters();
    EXPECT_EQ(FastJson(e), ProtobufJson(e));
  }
}

TEST(EventJsonTest, RunEventAndSnapshotMatchProtobuf) {
  v1::Event run_event;
  run_event.set_seq(12);
  *run_event.mutable_run()->mutable_run() = SomeRun(v1::RUN_SUCCEEDED);
  EXPECT_EQ(FastJson(run_event), ProtobufJson(run_event));

  v1::Event snap;
  snap.set_seq(13);
  snap.set_time_ms(14);
  *snap.mutable_snapshot()->add_runs() = SomeRun(v1::RUN_RUNNING);
  *snap.mutable_snapshot()->add_runs() = SomeRun(v1::RUN_FAILED);
  for (int i = 0; i < 4; ++i) *snap.mutable_snapshot()->add_running() = SomeInstance(i);
  snap.mutable_snapshot()->set_gap(true);
  EXPECT_EQ(FastJson(snap), ProtobufJson(snap));
}

TEST(EventJsonTest, EmptyAndDefaultValues) {
  v1::Event empty;
  EXPECT_EQ(FastJson(empty), "{}");
  EXPECT_EQ(FastJson(empty), ProtobufJson(empty));
  v1::Event empty_body;  // a oneof message set but empty
  empty_body.mutable_snapshot();
  EXPECT_EQ(FastJson(empty_body), ProtobufJson(empty_body));
  v1::Event empty_entry;  // a map entry with empty key and value
  (*empty_entry.mutable_instance()->mutable_instance()->mutable_params())[""] = "";
  EXPECT_EQ(FastJson(empty_entry), ProtobufJson(empty_entry));
}

TEST(EventJsonTest, NegativeNumbersAndUnknownEnumValues) {
  v1::Event e;
  e.set_seq(-5);
  e.set_time_ms(INT64_MIN);
  v1::Instance* inst = e.mutable_instance()->mutable_instance();
  inst->set_attempts(-3);
  inst->set_lines(INT64_MAX);
  EXPECT_EQ(FastJson(e), ProtobufJson(e));

  // An enum value this client does not know: protobuf's converter decides.
  inst->set_state(static_cast<v1::InstanceState>(99));
  std::string json;
  EXPECT_FALSE(AppendWireAsJson(v1::Event::descriptor(), e.SerializeAsString(), &json));
  EXPECT_TRUE(WireToJson(v1::Event::descriptor(), e.SerializeAsString(), &json));
  EXPECT_EQ(json, ProtobufJson(e));
}

TEST(EventJsonTest, NumbersOfEveryLengthMatchProtobuf) {
  // Every digit count from 1 to 19 (20 for uint64 as int64 bits), each at
  // its powers of ten and their neighbours, both signs: the 64-bit writer
  // has branches at 8 and 16 digits.
  std::vector<int64_t> values = {0, INT64_MAX, INT64_MIN, INT64_MIN + 1};
  int64_t p = 1;
  for (int digits = 1; digits <= 18; ++digits) {
    p *= 10;
    for (int64_t v : {p - 1, p, p + 1, 2 * p - 1, 9 * p + 9}) {
      values.push_back(v);
      values.push_back(-v);
    }
  }
  for (int64_t v : values) {
    v1::Event e;
    e.set_seq(v);
    e.set_time_ms(v / 7);
    e.mutable_instance()->mutable_instance()->set_lines(v);
    e.mutable_instance()->mutable_instance()->set_attempts(static_cast<int32_t>(v));
    EXPECT_EQ(FastJson(e), ProtobufJson(e)) << v;
  }
}

TEST(EventJsonTest, EveryAsciiCharacterIsEscapedLikeProtobuf) {
  std::string all;
  for (int c = 1; c < 128; ++c) all.push_back(static_cast<char>(c));
  v1::Event e;
  v1::Instance* inst = e.mutable_instance()->mutable_instance();
  inst->set_error(all);
  inst->set_task("say \"hi\" <b>\\</b>\n");
  (*inst->mutable_params())[all] = all;
  EXPECT_EQ(FastJson(e), ProtobufJson(e));
}

TEST(EventJsonTest, NonAsciiFallsBackToProtobuf) {
  v1::Event e;
  e.mutable_instance()->mutable_instance()->set_error("caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80");
  std::string wire = e.SerializeAsString();
  std::string json;
  EXPECT_FALSE(AppendWireAsJson(v1::Event::descriptor(), wire, &json));
  EXPECT_TRUE(json.empty());
  EXPECT_TRUE(WireToJson(v1::Event::descriptor(), wire, &json));
  EXPECT_EQ(json, ProtobufJson(e));
}

// The closing bracket of a map or a repeated field, and of the object
// after it, land on every offset around the end of a fresh thread's
// scratch buffer (1,025 bytes after its first growth): a write without
// room before it overran the buffer, which JsonOut::Finish now stops on.
TEST(EventJsonTest, ClosingBracketsAtTheEndOfTheScratchBuffer) {
  // Key lengths shift where a value ends by one byte at a time (a value of
  // n '<' fills exactly the 6n+2 bytes it reserves); workspace lengths move
  // the end of a run object across the buffer's end.
  for (int m = 1; m <= 6; ++m) {
    for (int n = 150; n < 180; ++n) {
      std::thread([m, n] {
        v1::Event event;
        event.set_seq(1);
        v1::Instance* inst = event.mutable_instance()->mutable_instance();
        (*inst->mutable_params())[std::string(m, 'k')] = std::string(n, '<');  // \u003c each
        EXPECT_EQ(FastJson(event), ProtobufJson(event)) << m << " " << n;
      }).join();
    }
  }
  for (int n = 700; n < 1100; ++n) {
    std::thread([n] {
      v1::Event snapshot;
      snapshot.set_seq(2);
      v1::Run run = SomeRun(v1::RUN_RUNNING);
      run.set_workspace(std::string(n, 'w'));
      *snapshot.mutable_snapshot()->add_runs() = run;
      EXPECT_EQ(FastJson(snapshot), ProtobufJson(snapshot)) << n;
    }).join();
  }
}

// The first event of a thread grows its empty scratch buffer, whose data
// is null: JsonOut::Grow passed that null to memcpy (0 bytes, still
// undefined; the sanitizer pass's UBSan failed every test here on it).
TEST(EventJsonTest, FirstEventOfAThreadGrowsItsEmptyScratchBuffer) {
  std::thread([] {
    v1::Event event;
    event.set_seq(1);
    *event.mutable_instance()->mutable_instance() = SomeInstance(1);
    EXPECT_EQ(FastJson(event), ProtobufJson(event));
  }).join();
}

TEST(EventJsonTest, UnknownOrReorderedFieldsFallBackToProtobuf) {
  v1::Event e;
  e.set_seq(3);
  *e.mutable_run()->mutable_run() = SomeRun(v1::RUN_RUNNING);
  // A field this client does not know (as from a newer daemon), at the end.
  std::string unknown = e.SerializeAsString() + std::string("\xf8\x06\x01", 3);  // field 111, varint 1
  std::string json;
  EXPECT_FALSE(AppendWireAsJson(v1::Event::descriptor(), unknown, &json));
  EXPECT_TRUE(WireToJson(v1::Event::descriptor(), unknown, &json));
  EXPECT_EQ(json, ProtobufJson(e));
  // time_ms (2) after the body (4): valid wire format, not protobuf's order.
  v1::Event time_only;
  time_only.set_time_ms(99);
  std::string reordered = e.SerializeAsString() + time_only.SerializeAsString();
  json.clear();
  EXPECT_FALSE(AppendWireAsJson(v1::Event::descriptor(), reordered, &json));
  EXPECT_TRUE(WireToJson(v1::Event::descriptor(), reordered, &json));
  e.set_time_ms(99);
  EXPECT_EQ(json, ProtobufJson(e));
}

TEST(EventJsonTest, TruncatedOrGarbageWireIsRejected) {
  v1::Event e;
  *e.mutable_instance()->mutable_instance() = SomeInstance(1);
  std::string wire = e.SerializeAsString();
  for (size_t cut = 1; cut < wire.size(); ++cut) {
    std::string json;
    v1::Event parsed;
    bool parses = parsed.ParseFromString(wire.substr(0, cut));
    bool converted = WireToJson(v1::Event::descriptor(), wire.substr(0, cut), &json);
    // Whatever a cut leaves, the JSON (if any) is what protobuf makes of it.
    EXPECT_EQ(converted, parses) << cut;
    if (parses && converted) {
      EXPECT_EQ(json, ProtobufJson(parsed)) << cut;
    }
  }
  std::string json;
  EXPECT_FALSE(WireToJson(v1::Event::descriptor(), std::string("\xff\xff\xff", 3), &json));
}

TEST(EventJsonTest, PeekEventFindsSeqAndBody) {
  v1::Event e;
  int64_t seq = -1;
  int body = -1;
  EXPECT_TRUE(PeekEvent(e.SerializeAsString(), &seq, &body));
  EXPECT_EQ(seq, 0);
  EXPECT_EQ(body, 0);
  e.set_seq(1795573827379006);
  e.set_time_ms(1795573845878);
  *e.mutable_instance()->mutable_instance() = SomeInstance(3);
  ASSERT_TRUE(PeekEvent(e.SerializeAsString(), &seq, &body));
  EXPECT_EQ(seq, 1795573827379006);
  EXPECT_EQ(body, v1::Event::kInstanceFieldNumber);
  *e.mutable_run()->mutable_run() = SomeRun(v1::RUN_RUNNING);
  ASSERT_TRUE(PeekEvent(e.SerializeAsString(), &seq, &body));
  EXPECT_EQ(body, v1::Event::kRunFieldNumber);
  e.mutable_snapshot()->set_gap(true);
  ASSERT_TRUE(PeekEvent(e.SerializeAsString(), &seq, &body));
  EXPECT_EQ(body, v1::Event::kSnapshotFieldNumber);
  std::string wire = e.SerializeAsString();
  EXPECT_FALSE(PeekEvent(wire.substr(0, wire.size() - 1), &seq, &body));
}

// Random events: the fast path must agree with protobuf byte for byte.
TEST(EventJsonTest, SplitBatchGivesTheBatchesEventsAsViews) {
  v1::Event batch;
  v1::Event one;
  one.set_seq(7);
  *one.mutable_instance()->mutable_instance() = SomeInstance(1);
  batch.add_batch(one.SerializeAsString());
  batch.add_batch("");  // an empty event is still an event
  one.mutable_instance()->mutable_instance()->set_error(std::string(300, 'e'));  // a 2-byte length
  batch.add_batch(one.SerializeAsString());
  const std::string wire = batch.SerializeAsString();
  std::vector<absl::string_view> events;
  ASSERT_TRUE(SplitBatch(wire, &events));
  ASSERT_EQ(events.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(events[i], batch.batch(i));
    EXPECT_GE(events[i].data(), wire.data());  // views into the message, not copies
    EXPECT_LE(events[i].data() + events[i].size(), wire.data() + wire.size());
  }

  // A single event: well-formed, no batch.
  events.clear();
  ASSERT_TRUE(SplitBatch(one.SerializeAsString(), &events));
  EXPECT_TRUE(events.empty());
  ASSERT_TRUE(SplitBatch("", &events));
  EXPECT_TRUE(events.empty());

  // Truncated: refused.
  EXPECT_FALSE(SplitBatch(absl::string_view(wire).substr(0, wire.size() - 1), &events));
  EXPECT_FALSE(SplitBatch("\x32\x05" "ab", &events));  // 5 bytes announced, 2 there
}

TEST(EventJsonTest, RandomEventsMatchProtobuf) {
  std::mt19937_64 rng(20261125);
  auto pick = [&](int n) { return static_cast<int>(rng() % n); };
  auto text = [&] {
    std::string s;
    int len = pick(12);
    for (int i = 0; i < len; ++i) s.push_back(static_cast<char>(1 + pick(127)));
    return s;
  };
  auto number = [&]() -> int64_t {
    switch (pick(4)) {
      case 0: return 0;
      case 1: return pick(1000);
      case 2: return -static_cast<int64_t>(rng() >> pick(64));
      default: return static_cast<int64_t>(rng());
    }
  };
  auto instance = [&] {
    v1::Instance inst;
    inst.set_run_id(number());
    inst.set_seq(number());
    inst.set_task(text());
    if (pick(2)) (*inst.mutable_params())[text()] = text();
    inst.set_output(text());
    inst.set_state(static_cast<v1::InstanceState>(pick(v1::InstanceState_ARRAYSIZE)));
    inst.set_error(text());
    inst.set_attempts(static_cast<int32_t>(number()));
    inst.set_started_ms(number());
    inst.set_finished_ms(number());
    inst.set_bytes(number());
    inst.set_lines(number());
    return inst;
  };
  auto counters = [&] {
    v1::TaskCounters c;
    c.set_task(text());
    c.set_total(number());
    c.set_done(number());
    c.set_failed(number());
    c.set_expanded(pick(2));
    c.set_retrying(number());
    return c;
  };
  auto run = [&] {
    v1::Run r;
    r.set_id(number());
    r.set_flow(text());
    r.set_state(static_cast<v1::RunState>(pick(v1::RunState_ARRAYSIZE)));
    if (pick(2)) (*r.mutable_params())[text()] = text();
    r.set_error(text());
    for (int i = pick(3); i > 0; --i) *r.add_tasks() = counters();
    r.set_keep_going(pick(2));
    return r;
  };
  for (int i = 0; i < 2000; ++i) {
    v1::Event e;
    e.set_seq(number());
    e.set_time_ms(number());
    switch (pick(4)) {
      case 0:
        for (int j = pick(3); j > 0; --j) *e.mutable_snapshot()->add_runs() = run();
        for (int j = pick(4); j > 0; --j) *e.mutable_snapshot()->add_running() = instance();
        e.mutable_snapshot()->set_gap(pick(2));
        break;
      case 1:
        *e.mutable_run()->mutable_run() = run();
        break;
      case 2:
        e.mutable_instance()->set_kind(static_cast<v1::InstanceEvent::Kind>(pick(v1::InstanceEvent::Kind_ARRAYSIZE)));
        *e.mutable_instance()->mutable_instance() = instance();
        if (pick(2)) *e.mutable_instance()->mutable_counters() = counters();
        break;
      default:
        break;
    }
    ASSERT_EQ(FastJson(e), ProtobufJson(e)) << e.ShortDebugString();
  }
}

}  // namespace
}  // namespace asflow
