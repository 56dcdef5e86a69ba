// WorkerHub without gRPC: the tests play both the WorkerService handler
// (Join/Handle/Leave/NextOutgoing) and the scheduler (Start/Cancel), and
// record the hub's callbacks.
#include "server/worker_hub.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"
#include "exec/protocol.h"

namespace asflow {
namespace {

using ::asflow::testing::FileExists;
using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr absl::Duration kDeadline = absl::Seconds(10);

// Everything the hub reports, in order. Thread-safe.
class Recorder {
 public:
  RunnerEvents Events() {
    RunnerEvents c;
    c.on_done = [this](ExecResult r) {
      absl::MutexLock lock(&mu_);
      events_.push_back(absl::StrCat("done ", r.id));
      done_.push_back(std::move(r));
    };
    c.on_progress = [this](ExecId id, int64_t bytes, int64_t lines) {
      absl::MutexLock lock(&mu_);
      progress_.push_back({id, bytes, lines, absl::Now()});
    };
    c.on_pool_slots = [this](const std::string& pool, int slots) {
      absl::MutexLock lock(&mu_);
      events_.push_back(absl::StrCat("slots ", pool, "=", slots));
      slots_.emplace_back(pool, slots);
    };
    return c;
  }

  // An abort callback for Join that records `name` each time it is called.
  std::function<void()> AbortFn(std::string name) {
    return [this, name] {
      absl::MutexLock lock(&mu_);
      aborts_.push_back(name);
    };
  }

  // Blocks until pred() (evaluated under the lock) holds or kDeadline passes.
  bool Await(const std::function<bool()>& pred) {
    absl::MutexLock lock(&mu_);
    auto cond = [&pred] { return pred(); };
    return mu_.AwaitWithTimeout(absl::Condition(&cond), kDeadline);
  }
  bool AwaitAbort(const std::string& name) {
    return Await([&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return std::count(aborts_.begin(), aborts_.end(), name) > 0;
    });
  }

  std::vector<ExecResult> done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }
  // The one result reported for `id` (a failure if there is not exactly
  // one). Results of a worker's `result` message arrive from the hub's
  // commit threads, so this waits (up to kDeadline) for the first.
  ExecResult Only(ExecId id) {
    absl::MutexLock lock(&mu_);
    auto arrived = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return std::any_of(done_.begin(), done_.end(), [id](const ExecResult& r) { return r.id == id; });
    };
    mu_.AwaitWithTimeout(absl::Condition(&arrived), kDeadline);
    std::vector<ExecResult> found;
    for (const ExecResult& r : done_) {
      if (r.id == id) found.push_back(r);
    }
    EXPECT_EQ(found.size(), 1u) << "results for id " << id;
    return found.empty() ? ExecResult{} : found.front();
  }
  std::vector<std::pair<std::string, int>> slots() {
    absl::MutexLock lock(&mu_);
    return slots_;
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<std::string> aborts() {
    absl::MutexLock lock(&mu_);
    return aborts_;
  }
  struct Progress {
    ExecId id;
    int64_t bytes;
    int64_t lines;
    absl::Time at;
  };
  std::vector<Progress> progress() {
    absl::MutexLock lock(&mu_);
    return progress_;
  }
  bool has_progress() {
    absl::MutexLock lock(&mu_);
    return !progress_.empty();
  }

 private:
  absl::Mutex mu_;
  std::vector<ExecResult> done_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, int>> slots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> aborts_ ABSL_GUARDED_BY(mu_);
  std::vector<Progress> progress_ ABSL_GUARDED_BY(mu_);
};

v1::WorkerHello Hello(const std::string& pool, int slots, const std::string& name = "w1",
                      std::vector<std::string> handlers = {}) {
  v1::WorkerHello h;
  h.add_pools(pool);
  h.set_slots(slots);
  h.set_name(name);
  h.set_hostname(absl::StrCat(name, ".example"));
  h.set_version(kAsflowVersion);
  for (const std::string& handler : handlers) h.add_handlers(handler);
  return h;
}

v1::WorkerMessage Output(ExecId id, const std::string& data) {
  v1::WorkerMessage m;
  m.mutable_output()->set_id(id);
  m.mutable_output()->set_data(data);
  return m;
}

v1::WorkerMessage Result(ExecId id, int exit_code, int64_t stdout_bytes) {
  v1::WorkerMessage m;
  m.mutable_result()->set_id(id);
  m.mutable_result()->set_exit_code(exit_code);
  m.mutable_result()->set_stdout_bytes(stdout_bytes);
  return m;
}

v1::WorkerMessage HeartbeatMessage() {
  v1::WorkerMessage m;
  m.mutable_heartbeat()->set_sent_ms(absl::ToUnixMillis(absl::Now()));
  return m;
}

// Reads the whole decompressed content of `path`.
std::string Decompress(const std::string& path, Codec* codec) {
  auto decoder = Decoder::Open(path);
  EXPECT_TRUE(decoder.ok()) << decoder.status();
  if (!decoder.ok()) return "";
  *codec = (*decoder)->codec();
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = (*decoder)->Read(buf, sizeof buf);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || *n == 0) break;
    out.append(buf, *n);
  }
  return out;
}

// Names anywhere under `root` that are atomic-file temporaries.
std::vector<std::string> Temporaries(const std::string& root) {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    std::string name = entry.path().filename().string();
    if (name.find(".asflow-tmp") != std::string::npos) out.push_back(entry.path().string());
  }
  return out;
}

class WorkerHubTest : public ::testing::Test {
 protected:
  void MakeHub(WorkerHubOptions options = {}) {
    AtomicFileOptions files;
    files.sync = false;
    hub_ = std::make_unique<WorkerHub>(options, files, rec_.Events());
  }
  WorkerHub& hub() { return *hub_; }

  // Joins; the session's abort callback is recorded as `abort_name`
  // (default: the worker's name).
  std::shared_ptr<WorkerHub::Session> JoinOk(const v1::WorkerHello& hello,
                                             const std::string& abort_name = "") {
    auto session = hub_->Join(hello, "ipv4:10.0.0.1:5000",
                              rec_.AbortFn(abort_name.empty() ? hello.name() : abort_name));
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? *session : nullptr;
  }

  // A command job in `pool`, writing `output` (relative to the workspace).
  ExecJob Job(ExecId id, const std::string& pool, const std::string& output = "",
              const std::string& builtin = "") {
    ExecJob job;
    job.id = id;
    if (builtin.empty()) job.process.argv = {"/bin/echo", absl::StrCat("job", id)};
    job.builtin = builtin;
    job.workspace = ws_.path();
    job.output = output;
    job.pool = pool;
    job.params = absl::StrCat("{\"id\":", id, "}");
    job.label = absl::StrCat("t[id=", id, "]");
    return job;
  }

  // The next message for the session that is not a heartbeat. Only called
  // when one is known to be queued.
  v1::DaemonMessage Next(WorkerHub::Session& session) {
    v1::DaemonMessage m;
    for (;;) {
      if (!hub_->NextOutgoing(session, &m)) {
        ADD_FAILURE() << "the session is over";
        return {};
      }
      if (!m.has_heartbeat()) return m;
    }
  }
  // Reads the welcome and then `n` assignments; returns their ids.
  std::vector<ExecId> WelcomeAndAssignments(WorkerHub::Session& session, int n) {
    EXPECT_TRUE(Next(session).has_welcome());
    std::vector<ExecId> ids;
    for (int i = 0; i < n; ++i) {
      v1::DaemonMessage m = Next(session);
      EXPECT_TRUE(m.has_assign()) << m.DebugString();
      ids.push_back(m.assign().id());
    }
    return ids;
  }
  int Running(const std::string& name) {
    for (const v1::WorkerInfo& w : hub_->List()) {
      if (w.name() == name) return w.running();
    }
    ADD_FAILURE() << "no worker named " << name;
    return -1;
  }

  // Declaration order matters: the hub (whose Close calls the recorder's
  // abort callbacks and whose sessions may hold temporaries) goes first.
  Recorder rec_;
  TempDir ws_;
  std::unique_ptr<WorkerHub> hub_;
};

// ---------------------------------------------------------------- Join

TEST_F(WorkerHubTest, JoinRejectsMalformedHellosNamingTheField) {
  WorkerHubOptions options;
  options.max_slots = 8;
  MakeHub(options);
  auto expect_invalid = [&](const v1::WorkerHello& hello, const std::string& field) {
    auto s = hub().Join(hello, "peer", rec_.AbortFn("bad"));
    ASSERT_FALSE(s.ok()) << hello.DebugString();
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << s.status();
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(field)) << hello.DebugString();
  };
  v1::WorkerHello no_pool = Hello("gpu", 2);
  no_pool.clear_pools();
  expect_invalid(no_pool, "hello.pools");
  v1::WorkerHello two_pools = Hello("gpu", 2);
  two_pools.add_pools("cpu");
  expect_invalid(two_pools, "hello.pools");
  expect_invalid(Hello("local", 2), "hello.pools");
  expect_invalid(Hello("gpu/1", 2), "hello.pools");
  expect_invalid(Hello("gpu pool", 2), "hello.pools");
  expect_invalid(Hello("", 2), "hello.pools");
  expect_invalid(Hello("gpu", 0), "hello.slots");
  expect_invalid(Hello("gpu", -1), "hello.slots");
  expect_invalid(Hello("gpu", 9), "hello.slots");

  // Nothing of the refused hellos is visible.
  EXPECT_TRUE(hub().List().empty());
  EXPECT_TRUE(rec_.slots().empty());
  EXPECT_EQ(hub().PoolSlots("gpu"), 0);

  // The bounds themselves are accepted.
  auto at_max = JoinOk(Hello("gpu", 8, "big"));
  auto at_min = JoinOk(Hello("gpu.a-b_c", 1, "small"));
  ASSERT_NE(at_max, nullptr);
  ASSERT_NE(at_min, nullptr);
  EXPECT_EQ(hub().PoolSlots("gpu"), 8);
  EXPECT_EQ(hub().PoolSlots("gpu.a-b_c"), 1);
}

TEST_F(WorkerHubTest, JoinPastMaxSessionsIsResourceExhaustedUntilOneLeaves) {
  WorkerHubOptions options;
  options.max_sessions = 2;
  MakeHub(options);
  auto a = JoinOk(Hello("gpu", 1, "a"));
  auto b = JoinOk(Hello("gpu", 1, "b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto c = hub().Join(Hello("gpu", 1, "c"), "peer", rec_.AbortFn("c"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted) << c.status();
  EXPECT_EQ(hub().List().size(), 2u);
  EXPECT_EQ(hub().PoolSlots("gpu"), 2);

  hub().Leave(*a, "bye");
  auto again = hub().Join(Hello("gpu", 1, "c"), "peer", rec_.AbortFn("c"));
  EXPECT_TRUE(again.ok()) << again.status();
}

TEST_F(WorkerHubTest, WelcomeIsTheFirstMessageWithLeaseAndHeartbeat) {
  WorkerHubOptions options;
  options.lease = absl::Seconds(9);
  MakeHub(options);
  auto s = JoinOk(Hello("gpu", 3, "w1", {"builtin.echo"}));
  ASSERT_NE(s, nullptr);
  v1::DaemonMessage first;
  ASSERT_TRUE(hub().NextOutgoing(*s, &first));
  ASSERT_TRUE(first.has_welcome()) << first.DebugString();
  EXPECT_EQ(first.welcome().lease_ms(), 9000);
  EXPECT_EQ(first.welcome().heartbeat_ms(), 3000);
  EXPECT_EQ(first.welcome().daemon_version(), kAsflowVersion);

  std::vector<v1::WorkerInfo> list = hub().List();
  ASSERT_EQ(list.size(), 1u);
  const v1::WorkerInfo& w = list[0];
  EXPECT_EQ(w.session_id(), first.welcome().session_id());
  EXPECT_EQ(w.name(), "w1");
  EXPECT_EQ(w.hostname(), "w1.example");
  EXPECT_EQ(w.peer(), "ipv4:10.0.0.1:5000");
  EXPECT_THAT(w.pools(), ElementsAre("gpu"));
  EXPECT_EQ(w.slots(), 3);
  EXPECT_THAT(w.handlers(), ElementsAre("builtin.echo"));
  EXPECT_EQ(w.version(), kAsflowVersion);
  EXPECT_EQ(w.running(), 0);
  EXPECT_FALSE(w.draining());
}

TEST_F(WorkerHubTest, WorkerWithoutNameIsListedByHostname) {
  MakeHub();
  v1::WorkerHello hello = Hello("gpu", 1, "");
  hello.set_hostname("box7");
  auto s = JoinOk(hello, "anon");
  ASSERT_NE(s, nullptr);
  std::vector<v1::WorkerInfo> list = hub().List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name(), "box7");
}

// ---------------------------------------------------------------- pool slots

TEST_F(WorkerHubTest, PoolSlotsReportedAfterJoinDrainAndLeaveInOrder) {
  MakeHub();
  auto a = JoinOk(Hello("gpu", 2, "a"));
  auto b = JoinOk(Hello("gpu", 3, "b"));
  auto c = JoinOk(Hello("cpu", 4, "c"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  v1::WorkerMessage drain;
  drain.mutable_drain()->set_reason("maintenance");
  ASSERT_TRUE(hub().Handle(*a, drain).ok());
  EXPECT_EQ(hub().PoolSlots("gpu"), 3);
  hub().Leave(*b, "bye");
  hub().Leave(*a, "bye");
  hub().Leave(*c, "bye");
  EXPECT_THAT(rec_.slots(), ElementsAre(Pair("gpu", 2), Pair("gpu", 5), Pair("cpu", 4),
                                        Pair("gpu", 3),  // a drains: b's 3
                                        Pair("gpu", 0),  // b leaves
                                        Pair("gpu", 0),  // a (draining) leaves
                                        Pair("cpu", 0)));
  EXPECT_EQ(hub().PoolSlots("gpu"), 0);
  EXPECT_EQ(hub().PoolSlots("cpu"), 0);
}

// ---------------------------------------------------------------- placement

TEST_F(WorkerHubTest, JobsGoToTheSessionWithMostFreeSlots) {
  MakeHub();
  auto a = JoinOk(Hello("gpu", 2, "a"));
  auto b = JoinOk(Hello("gpu", 2, "b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  for (ExecId id = 1; id <= 4; ++id) hub().Start(Job(id, "gpu"));
  EXPECT_TRUE(rec_.done().empty());
  EXPECT_EQ(Running("a"), 2);
  EXPECT_EQ(Running("b"), 2);
  std::vector<ExecId> on_a = WelcomeAndAssignments(*a, 2);
  std::vector<ExecId> on_b = WelcomeAndAssignments(*b, 2);
  std::set<ExecId> all(on_a.begin(), on_a.end());
  all.insert(on_b.begin(), on_b.end());
  EXPECT_EQ(all, (std::set<ExecId>{1, 2, 3, 4}));

  // Both full: the fifth comes back at once, to be queued again.
  hub().Start(Job(5, "gpu"));
  ExecResult r = rec_.Only(5);
  EXPECT_EQ(r.infra, ExecResult::Infra::kUnplaced);
  EXPECT_EQ(r.output_status.code(), absl::StatusCode::kUnavailable) << r.output_status;
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(Running("a"), 2);
  EXPECT_EQ(Running("b"), 2);
}

TEST_F(WorkerHubTest, PlacementNeverExceedsASessionsSlotsAndAResultFreesOne) {
  MakeHub();
  auto small = JoinOk(Hello("gpu", 1, "small"));
  auto big = JoinOk(Hello("gpu", 3, "big"));
  ASSERT_NE(small, nullptr);
  ASSERT_NE(big, nullptr);
  for (ExecId id = 1; id <= 4; ++id) hub().Start(Job(id, "gpu"));
  EXPECT_EQ(Running("small"), 1);
  EXPECT_EQ(Running("big"), 3);
  hub().Start(Job(5, "gpu"));
  EXPECT_EQ(rec_.Only(5).infra, ExecResult::Infra::kUnplaced);

  std::vector<ExecId> on_big = WelcomeAndAssignments(*big, 3);
  ASSERT_TRUE(hub().Handle(*big, Result(on_big[0], 0, 0)).ok());
  EXPECT_TRUE(rec_.Only(on_big[0]).ok());
  EXPECT_EQ(Running("big"), 2);
  hub().Start(Job(6, "gpu"));  // only big has a free slot
  v1::DaemonMessage m = Next(*big);
  ASSERT_TRUE(m.has_assign()) << m.DebugString();
  EXPECT_EQ(m.assign().id(), 6);
  EXPECT_EQ(Running("small"), 1);
  EXPECT_EQ(Running("big"), 3);
}

TEST_F(WorkerHubTest, NoSessionInPoolOrOnlyDrainingOnesIsUnplaced) {
  MakeHub();
  hub().Start(Job(1, "gpu"));
  ExecResult r1 = rec_.Only(1);
  EXPECT_EQ(r1.infra, ExecResult::Infra::kUnplaced);
  EXPECT_THAT(std::string(r1.output_status.message()), HasSubstr("gpu"));

  auto cpu = JoinOk(Hello("cpu", 4, "cpu"));  // another pool does not help
  auto gpu = JoinOk(Hello("gpu", 4, "gpu"));
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  v1::WorkerMessage drain;
  drain.mutable_drain()->set_reason("upgrade");
  ASSERT_TRUE(hub().Handle(*gpu, drain).ok());
  hub().Start(Job(2, "gpu"));
  EXPECT_EQ(rec_.Only(2).infra, ExecResult::Infra::kUnplaced);
  EXPECT_EQ(Running("gpu"), 0);
  EXPECT_EQ(Running("cpu"), 0);
  ASSERT_EQ(hub().List().size(), 2u);
  EXPECT_TRUE(hub().List()[1].draining());
}

TEST_F(WorkerHubTest, DrainingSessionTakesNoNewJobsButFinishesItsOwn) {
  MakeHub();
  auto a = JoinOk(Hello("gpu", 2, "a"));
  ASSERT_NE(a, nullptr);
  hub().Start(Job(1, "gpu", "one.txt"));
  EXPECT_EQ(WelcomeAndAssignments(*a, 1), std::vector<ExecId>{1});
  v1::WorkerMessage drain;
  drain.mutable_drain()->set_reason("SIGTERM");
  ASSERT_TRUE(hub().Handle(*a, drain).ok());
  EXPECT_EQ(hub().PoolSlots("gpu"), 0);
  hub().Start(Job(2, "gpu"));
  EXPECT_EQ(rec_.Only(2).infra, ExecResult::Infra::kUnplaced);
  EXPECT_EQ(Running("a"), 1);
  ASSERT_TRUE(hub().Handle(*a, Output(1, "done\n")).ok());
  ASSERT_TRUE(hub().Handle(*a, Result(1, 0, 5)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(ReadFileOrDie(ws_.Join("one.txt")), "done\n");
  EXPECT_EQ(Running("a"), 0);
  EXPECT_THAT(rec_.slots(), ElementsAre(Pair("gpu", 2), Pair("gpu", 0)));
}

TEST_F(WorkerHubTest, HandlerJobsGoOnlyToSessionsOfferingTheHandler) {
  MakeHub();
  auto plain = JoinOk(Hello("gpu", 4, "plain"));
  auto echo = JoinOk(Hello("gpu", 1, "echo", {"builtin.echo"}));
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(echo, nullptr);

  // plain has more free slots but does not offer the handler.
  hub().Start(Job(1, "gpu", "", "builtin.echo"));
  EXPECT_EQ(Running("echo"), 1);
  EXPECT_EQ(Running("plain"), 0);
  EXPECT_TRUE(Next(*echo).has_welcome());
  v1::DaemonMessage m = Next(*echo);
  ASSERT_TRUE(m.has_assign());
  EXPECT_EQ(m.assign().id(), 1);
  EXPECT_EQ(m.assign().handler(), "builtin.echo");
  EXPECT_TRUE(m.assign().argv().empty());
  EXPECT_EQ(m.assign().params_json(), "{\"id\":1}");

  // The only session offering it is full: a transient condition.
  hub().Start(Job(2, "gpu", "", "builtin.echo"));
  EXPECT_EQ(rec_.Only(2).infra, ExecResult::Infra::kUnplaced);

  // Nothing in the pool offers this one: a failure, not a re-queue.
  hub().Start(Job(3, "gpu", "", "builtin.noop"));
  ExecResult r3 = rec_.Only(3);
  EXPECT_EQ(r3.infra, ExecResult::Infra::kNone);
  EXPECT_EQ(r3.output_status.code(), absl::StatusCode::kFailedPrecondition) << r3.output_status;
  EXPECT_THAT(std::string(r3.output_status.message()), HasSubstr("builtin.noop"));
  EXPECT_THAT(std::string(r3.output_status.message()), HasSubstr("gpu"));
  EXPECT_FALSE(r3.ok());

  // Commands run anywhere.
  hub().Start(Job(4, "gpu"));
  EXPECT_EQ(Running("plain"), 1);
}

TEST_F(WorkerHubTest, AssignmentCarriesTheJob) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 2));
  ASSERT_NE(s, nullptr);
  ExecJob job = Job(7, "gpu", "out/7.txt");
  job.process.argv = {"yt-dlp", "-j", "https://example.com/v?id=7"};
  job.process.env = {"ASFLOW_PARAM_ID=7"};
  job.process.timeout = absl::Seconds(2);
  job.process.kill_grace = absl::Milliseconds(1500);
  hub().Start(job);
  hub().Start(Job(8, "gpu"));  // no output kept, no timeout
  EXPECT_TRUE(Next(*s).has_welcome());
  v1::DaemonMessage m7 = Next(*s);
  ASSERT_TRUE(m7.has_assign());
  const v1::Assignment& a = m7.assign();
  EXPECT_EQ(a.id(), 7);
  EXPECT_THAT(a.argv(), ElementsAre("yt-dlp", "-j", "https://example.com/v?id=7"));
  EXPECT_TRUE(a.handler().empty());
  EXPECT_THAT(a.env(), ElementsAre("ASFLOW_PARAM_ID=7"));
  EXPECT_EQ(a.timeout_ms(), 2000);
  EXPECT_EQ(a.kill_grace_ms(), 1500);
  EXPECT_EQ(a.params_json(), "{\"id\":7}");
  EXPECT_EQ(a.label(), "t[id=7]");
  EXPECT_TRUE(a.wants_output());
  EXPECT_EQ(a.output(), "out/7.txt");  // an SDK handler's serializer follows its suffixes
  v1::DaemonMessage m8 = Next(*s);
  ASSERT_TRUE(m8.has_assign());
  EXPECT_EQ(m8.assign().id(), 8);
  EXPECT_EQ(m8.assign().timeout_ms(), 0);
  EXPECT_FALSE(m8.assign().wants_output());
  EXPECT_EQ(m8.assign().output(), "");
}

// A Python handler that raised: its types and traceback reach the
// scheduler (for `errors:` rules and the .err file); nothing is kept.
TEST_F(WorkerHubTest, HandlerExceptionReachesTheResultAndDiscardsTheOutput) {
  MakeHub();
  auto s = JoinOk(Hello("py", 1, "py", {"mymod.extract"}));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "py", "data/v1.jsonl.zst", "mymod.extract"));
  ASSERT_TRUE(hub().Handle(*s, Output(1, "{\"partial\": 1}\n")).ok());
  v1::WorkerMessage m;
  v1::AssignmentResult& r = *m.mutable_result();
  r.set_id(1);
  r.set_exit_code(-1);
  r.add_error_types("yt.errors.TranscriptsDisabled");
  r.add_error_types("Exception");
  r.set_error_text("Traceback (most recent call last):\n  File \"mymod.py\", line 3\nyt.errors.TranscriptsDisabled: v1\n");
  r.set_stdout_bytes(14);
  ASSERT_TRUE(hub().Handle(*s, m).ok());
  ExecResult done = rec_.Only(1);
  EXPECT_FALSE(done.ok());
  EXPECT_THAT(done.process.error_types, ElementsAre("yt.errors.TranscriptsDisabled", "Exception"));
  EXPECT_EQ(done.Describe(), "yt.errors.TranscriptsDisabled: v1");
  EXPECT_FALSE(FileExists(ws_.Join("data/v1.jsonl.zst")));
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(ws_.Join("data/v1.jsonl.zst"))));
}

// ---------------------------------------------------------------- output

TEST_F(WorkerHubTest, ChunksBecomeTheOutputFileOnlyAtTheResult) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "out/a.txt"));
  const std::string final_path = ws_.Join("out/a.txt");
  const std::string temp_path = AtomicFile::TempPathFor(final_path);
  ASSERT_TRUE(hub().Handle(*s, Output(1, "hello\n")).ok());
  ASSERT_TRUE(hub().Handle(*s, Output(1, "wor")).ok());
  ASSERT_TRUE(hub().Handle(*s, Output(1, "ld")).ok());
  EXPECT_FALSE(FileExists(final_path));
  EXPECT_TRUE(FileExists(temp_path));
  EXPECT_TRUE(rec_.done().empty());

  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, 11)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.infra, ExecResult::Infra::kNone);
  EXPECT_EQ(r.process.exit_code, 0);
  EXPECT_EQ(r.bytes, 11);
  EXPECT_EQ(r.lines, 2);  // one full line and a final partial one
  ASSERT_TRUE(FileExists(final_path));
  EXPECT_EQ(ReadFileOrDie(final_path), "hello\nworld");
  EXPECT_FALSE(FileExists(temp_path));
  EXPECT_EQ(Running("w1"), 0);
}

TEST_F(WorkerHubTest, ZstdOutputIsCompressedAndDecodesToTheChunks) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "data/rows.jsonl.zst"));
  std::string expected;
  for (int i = 0; i < 100; ++i) {
    std::string row = absl::StrCat("{\"row\":", i, "}\n");
    expected += row;
    ASSERT_TRUE(hub().Handle(*s, Output(1, row)).ok());
  }
  const std::string final_path = ws_.Join("data/rows.jsonl.zst");
  EXPECT_FALSE(FileExists(final_path));
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, static_cast<int64_t>(expected.size()))).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.bytes, static_cast<int64_t>(expected.size()));
  EXPECT_EQ(r.lines, 100);
  Codec codec = Codec::kRaw;
  EXPECT_EQ(Decompress(final_path, &codec), expected);
  EXPECT_EQ(codec, Codec::kZstd);
}

TEST_F(WorkerHubTest, EmptyOutputIsCommittedAsAnEmptyFile) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "empty.txt"));
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, 0)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.bytes, 0);
  EXPECT_EQ(r.lines, 0);
  ASSERT_TRUE(FileExists(ws_.Join("empty.txt")));
  EXPECT_EQ(ReadFileOrDie(ws_.Join("empty.txt")), "");
}

TEST_F(WorkerHubTest, FailedCommandLeavesNoFile) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "fail.txt"));
  ASSERT_TRUE(hub().Handle(*s, Output(1, "half a line")).ok());
  v1::WorkerMessage result = Result(1, 3, 11);
  result.mutable_result()->set_stderr_tail("boom\n");
  ASSERT_TRUE(hub().Handle(*s, result).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.infra, ExecResult::Infra::kNone);
  EXPECT_EQ(r.process.exit_code, 3);
  EXPECT_EQ(r.process.stderr_tail, "boom\n");
  EXPECT_TRUE(r.output_status.ok()) << r.output_status;  // the command failed, not the file
  EXPECT_THAT(r.Describe(), HasSubstr("exit code 3"));
  EXPECT_FALSE(FileExists(ws_.Join("fail.txt")));
  EXPECT_THAT(Temporaries(ws_.path()), ElementsAre());
}

TEST_F(WorkerHubTest, JobWithoutOutputCountsStdoutButWritesNothing) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu"));
  ASSERT_TRUE(hub().Handle(*s, Output(1, "a\nb\nc\n")).ok());
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, 6)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.bytes, 6);
  EXPECT_EQ(r.lines, 3);
  EXPECT_TRUE(std::filesystem::is_empty(ws_.path()));
}

// A worker whose result disagrees with the bytes it sent: DataLoss, and
// nothing under the final name (a later run would take a short file for
// the instance's cached output).
TEST_F(WorkerHubTest, ResultWithWrongByteCountIsDataLossAndKeepsNoFile) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "short.txt"));
  ASSERT_TRUE(hub().Handle(*s, Output(1, "abc")).ok());
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, 5)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.output_status.code(), absl::StatusCode::kDataLoss) << r.output_status;
  EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("w1"));
  EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("5 bytes"));
  EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("sent 3"));
  EXPECT_FALSE(FileExists(ws_.Join("short.txt"))) << "a short file was kept";
  EXPECT_THAT(Temporaries(ws_.path()), ElementsAre());
}

TEST_F(WorkerHubTest, OutputPathEscapingTheWorkspaceFailsAndCancels) {
  MakeHub();
  TempDir outside;
  ASSERT_EQ(symlink(outside.path().c_str(), ws_.Join("link").c_str()), 0);
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "link/x.txt"));
  EXPECT_EQ(WelcomeAndAssignments(*s, 1), std::vector<ExecId>{1});
  // Not a protocol error: the worker is told to stop producing.
  ASSERT_TRUE(hub().Handle(*s, Output(1, "secret\n")).ok());
  v1::DaemonMessage m = Next(*s);
  ASSERT_TRUE(m.has_cancel()) << m.DebugString();
  EXPECT_EQ(m.cancel().id(), 1);
  ASSERT_TRUE(hub().Handle(*s, Output(1, "more\n")).ok());
  v1::WorkerMessage result = Result(1, -1, 12);
  result.mutable_result()->set_cancelled(true);
  result.mutable_result()->set_term_signal(15);
  ASSERT_TRUE(hub().Handle(*s, result).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.output_status.code(), absl::StatusCode::kPermissionDenied) << r.output_status;
  EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("link/x.txt"));
  EXPECT_TRUE(std::filesystem::is_empty(outside.path()));
  EXPECT_THAT(Temporaries(ws_.path()), ElementsAre());
}

TEST_F(WorkerHubTest, OutputPathEscapingTheWorkspaceFailsEvenIfTheCommandSucceeded) {
  MakeHub();
  TempDir outside;
  ASSERT_EQ(symlink(outside.path().c_str(), ws_.Join("link").c_str()), 0);
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "link/x.txt"));
  ASSERT_TRUE(hub().Handle(*s, Output(1, "secret\n")).ok());
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, 7)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.output_status.code(), absl::StatusCode::kPermissionDenied) << r.output_status;
  EXPECT_TRUE(std::filesystem::is_empty(outside.path()));
}

TEST_F(WorkerHubTest, ProgressIsReportedWhileChunksStream) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  absl::Time started = absl::Now();
  hub().Start(Job(1, "gpu", "p.txt"));
  // A worker streams continuously; the first report comes once
  // kProgressInterval has passed since the first chunk.
  int64_t sent = 0;
  absl::Time deadline = absl::Now() + kDeadline;
  while (!rec_.has_progress() && absl::Now() < deadline) {
    ASSERT_TRUE(hub().Handle(*s, Output(1, "x\n")).ok());
    sent += 2;
  }
  std::vector<Recorder::Progress> progress = rec_.progress();
  ASSERT_EQ(progress.size(), 1u);
  EXPECT_EQ(progress[0].id, 1);
  EXPECT_EQ(progress[0].bytes, sent);  // reported by the chunk just handled
  EXPECT_EQ(progress[0].lines, sent / 2);
  EXPECT_GE(progress[0].at - started, kProgressInterval);
  ASSERT_TRUE(hub().Handle(*s, Result(1, 0, sent)).ok());
  ExecResult r = rec_.Only(1);
  EXPECT_TRUE(r.ok()) << r.Describe();
  EXPECT_EQ(r.bytes, sent);
  EXPECT_EQ(static_cast<int64_t>(std::filesystem::file_size(ws_.Join("p.txt"))), sent);
}

// ---------------------------------------------------------------- leave

TEST_F(WorkerHubTest, LeaveLosesOpenAssignmentsOnceAndRemovesPartialOutput) {
  MakeHub();
  auto other = JoinOk(Hello("cpu", 1, "other"));
  auto s = JoinOk(Hello("gpu", 3, "w1"));
  ASSERT_NE(other, nullptr);
  ASSERT_NE(s, nullptr);
  hub().Start(Job(1, "gpu", "a.txt"));  // partial output written
  hub().Start(Job(2, "gpu"));           // output counted, not kept
  hub().Start(Job(3, "gpu", "c.txt"));  // no chunk yet
  hub().Start(Job(4, "cpu", "other.txt"));
  EXPECT_EQ(WelcomeAndAssignments(*s, 3), (std::vector<ExecId>{1, 2, 3}));
  EXPECT_EQ(WelcomeAndAssignments(*other, 1), std::vector<ExecId>{4});
  ASSERT_TRUE(hub().Handle(*s, Output(1, "partial\n")).ok());
  ASSERT_TRUE(hub().Handle(*s, Output(2, "partial\n")).ok());
  ASSERT_TRUE(hub().Handle(*other, Output(4, "other\n")).ok());
  EXPECT_TRUE(FileExists(AtomicFile::TempPathFor(ws_.Join("a.txt"))));
  // Queue something more for w1 that it never reads.
  hub().Cancel(1);

  hub().Leave(*s, "connection reset by peer");
  ASSERT_EQ(rec_.done().size(), 3u);
  for (ExecId id : {1, 2, 3}) {
    ExecResult r = rec_.Only(id);
    EXPECT_EQ(r.infra, ExecResult::Infra::kLost) << id;
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.output_status.code(), absl::StatusCode::kUnavailable) << r.output_status;
    EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("w1 (w1.example)"));
    EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("connection reset by peer"));
    EXPECT_EQ(r.bytes, 0);
    EXPECT_EQ(r.lines, 0);
  }
  EXPECT_FALSE(FileExists(ws_.Join("a.txt")));
  EXPECT_FALSE(FileExists(ws_.Join("c.txt")));
  // Only the other session's temporary is left.
  EXPECT_THAT(Temporaries(ws_.path()), ElementsAre(AtomicFile::TempPathFor(ws_.Join("other.txt"))));

  // The pool's new size is reported before the lost results, so they are
  // never placed again on the session that went away.
  std::vector<std::string> events = rec_.events();
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events[events.size() - 4], "slots gpu=0");
  EXPECT_THAT(std::vector<std::string>(events.end() - 3, events.end()),
              UnorderedElementsAre("done 1", "done 2", "done 3"));
  v1::DaemonMessage m;
  EXPECT_FALSE(hub().NextOutgoing(*s, &m));  // queued messages are dropped
  std::vector<v1::WorkerInfo> list = hub().List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].name(), "other");
  EXPECT_EQ(hub().PoolSlots("gpu"), 0);

  // Whatever the gone worker still sends is not another result.
  EXPECT_EQ(hub().Handle(*s, Result(1, 0, 8)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(rec_.done().size(), 3u);
  // The other session is untouched.
  ASSERT_TRUE(hub().Handle(*other, Result(4, 0, 6)).ok());
  EXPECT_TRUE(rec_.Only(4).ok());
  EXPECT_EQ(ReadFileOrDie(ws_.Join("other.txt")), "other\n");
}

TEST_F(WorkerHubTest, LeaveWakesABlockedWriter) {
  MakeHub();
  auto s = JoinOk(Hello("gpu", 1));
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(Next(*s).has_welcome());
  bool more = true;
  std::thread writer([&] {
    v1::DaemonMessage m;
    more = hub().NextOutgoing(*s, &m);
    while (more && m.has_heartbeat()) more = hub().NextOutgoing(*s, &m);
  });
  hub().Leave(*s, "bye");
  writer.join();
  EXPECT_FALSE(more);
  EXPECT_TRUE(hub().List().empty());
}

// ---------------------------------------------------------------- cancel

TEST_F(WorkerHubTest, CancelGoesToTheSessionRunningTheJob) {
  MakeHub();
  auto a = JoinOk(Hello("a", 1, "a"));
  auto b = JoinOk(Hello("b", 2, "b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  hub().Start(Job(1, "a"));
  hub().Start(Job(2, "b"));
  EXPECT_EQ(WelcomeAndAssignments(*a, 1), std::vector<ExecId>{1});
  EXPECT_EQ(WelcomeAndAssignments(*b, 1), std::vector<ExecId>{2});

  hub().Cancel(999);  // unknown: ignored
  hub().Cancel(2);
  hub().Cancel(1);
  v1::DaemonMessage m = Next(*b);
  ASSERT_TRUE(m.has_cancel()) << m.DebugString();
  EXPECT_EQ(m.cancel().id(), 2);
  m = Next(*a);
  ASSERT_TRUE(m.has_cancel()) << m.DebugString();
  EXPECT_EQ(m.cancel().id(), 1);

  // A finished job's id is unknown too.
  ASSERT_TRUE(hub().Handle(*b, Result(2, -1, 0)).ok());
  hub().Cancel(2);
  hub().Start(Job(3, "b"));
  m = Next(*b);
  ASSERT_TRUE(m.has_assign()) << m.DebugString();
  EXPECT_EQ(m.assign().id(), 3);
  // Nothing went to a meanwhile.
  hub().Start(Job(4, "a"));
  EXPECT_EQ(rec_.Only(4).infra, ExecResult::Infra::kUnplaced);  // a is full
  ASSERT_TRUE(hub().Handle(*a, Result(1, -1, 0)).ok());
  hub().Start(Job(5, "a"));
  m = Next(*a);
  ASSERT_TRUE(m.has_assign()) << m.DebugString();
  EXPECT_EQ(m.assign().id(), 5);
}

// ---------------------------------------------------------------- protocol

TEST_F(WorkerHubTest, ProtocolViolationsAreInvalidArgument) {
  MakeHub();
  auto a = JoinOk(Hello("gpu", 1, "a"));
  auto b = JoinOk(Hello("gpu", 1, "b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  hub().Start(Job(1, "gpu", "one.txt"));
  // Which session got it?
  const bool on_a = Running("a") == 1;
  WorkerHub::Session& owner = on_a ? *a : *b;
  WorkerHub::Session& stranger = on_a ? *b : *a;

  absl::Status s = hub().Handle(owner, Output(42, "x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("42"));
  s = hub().Handle(owner, Result(42, 0, 0));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // Another session's assignment is not this session's to answer.
  s = hub().Handle(stranger, Output(1, "x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = hub().Handle(stranger, Result(1, 0, 0));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  v1::WorkerMessage hello;
  *hello.mutable_hello() = Hello("gpu", 1, "a");
  s = hub().Handle(owner, hello);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = hub().Handle(owner, v1::WorkerMessage());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;

  EXPECT_TRUE(rec_.done().empty());
  EXPECT_FALSE(FileExists(ws_.Join("one.txt")));
  EXPECT_THAT(Temporaries(ws_.path()), ElementsAre());
  // The real assignment is unaffected.
  ASSERT_TRUE(hub().Handle(owner, Output(1, "ok\n")).ok());
  ASSERT_TRUE(hub().Handle(owner, Result(1, 0, 3)).ok());
  EXPECT_TRUE(rec_.Only(1).ok());
  EXPECT_EQ(ReadFileOrDie(ws_.Join("one.txt")), "ok\n");
}

// ---------------------------------------------------------------- lease

// A connected worker that keeps its lease: its reader side sends a
// heartbeat every `every` (Handle), its writer side reads what the daemon
// sends (NextOutgoing) and keeps the daemon's heartbeats. It also measures
// the longest the hub can have gone without a message from it, so a test
// can tell a hub that expires a live session from a machine so loaded that
// this thread really was silent for a lease.
class HeartbeatingWorker {
 public:
  // `joined` is a time taken just before the session's Join.
  HeartbeatingWorker(WorkerHub& hub, WorkerHub::Session& session, absl::Duration every, absl::Time joined)
      : hub_(hub), session_(session), last_start_(joined) {
    writer_ = std::thread([this] {
      v1::DaemonMessage m;
      while (hub_.NextOutgoing(session_, &m)) {
        if (!m.has_heartbeat()) continue;
        absl::MutexLock lock(&mu_);
        daemon_heartbeats_.push_back(m.heartbeat().sent_ms());
      }
    });
    reader_ = std::thread([this, every] {
      absl::MutexLock lock(&mu_);
      auto stopped = [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; };
      do {
        absl::Time start = absl::Now();
        EXPECT_TRUE(hub_.Handle(session_, HeartbeatMessage()).ok());
        // The hub's last_recv for the previous message is at or after
        // last_start_; for this one at or before now.
        max_gap_ = std::max(max_gap_, absl::Now() - last_start_);
        last_start_ = start;
      } while (!mu_.AwaitWithTimeout(absl::Condition(&stopped), every));
    });
  }
  ~HeartbeatingWorker() { Stop(); }

  // Stops the heartbeats, ends the session (as its stream's reader would)
  // and joins both threads. Idempotent.
  void Stop() {
    if (!reader_.joinable()) return;
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    reader_.join();
    hub_.Leave(session_, "bye");
    writer_.join();
  }

  // The longest stretch so far without a message from this worker, as the
  // hub may have seen it (an upper bound).
  absl::Duration MaxGap() {
    absl::MutexLock lock(&mu_);
    return std::max(max_gap_, absl::Now() - last_start_);
  }
  bool AwaitDaemonHeartbeats(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return daemon_heartbeats_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), kDeadline);
  }
  std::vector<int64_t> daemon_heartbeats() {
    absl::MutexLock lock(&mu_);
    return daemon_heartbeats_;
  }

 private:
  WorkerHub& hub_;
  WorkerHub::Session& session_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_start_ ABSL_GUARDED_BY(mu_);
  absl::Duration max_gap_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  std::vector<int64_t> daemon_heartbeats_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
  std::thread reader_;
};

TEST_F(WorkerHubTest, SilentSessionExpiresWhileOneSendingHeartbeatsDoesNot) {
  WorkerHubOptions options;
  options.lease = absl::Milliseconds(600);
  // A run is conclusive about the heartbeating session if its thread was
  // never starved for a lease; on a loaded machine, try again.
  constexpr int kAttempts = 5;
  bool conclusive = false;
  for (int attempt = 1; attempt <= kAttempts && !conclusive; ++attempt) {
    SCOPED_TRACE(absl::StrCat("attempt ", attempt));
    MakeHub(options);
    const std::string silent_name = absl::StrCat("silent", attempt);
    const ExecId id = attempt;
    auto silent = JoinOk(Hello("a", 1, silent_name));
    absl::Time joined = absl::Now();
    auto alive = JoinOk(Hello("b", 1, "alive"));
    ASSERT_NE(silent, nullptr);
    ASSERT_NE(alive, nullptr);
    hub().Start(Job(id, "a", "lost.txt"));
    ASSERT_TRUE(hub().Handle(*silent, Output(id, "partial\n")).ok());
    HeartbeatingWorker worker(hub(), *alive, options.lease / 12, joined);

    ASSERT_TRUE(rec_.AwaitAbort(silent_name));
    EXPECT_TRUE(hub().Expired(*silent));
    // Until its reader leaves, an expired session is no capacity: its pool
    // shrinks at once and a new job is not placed on it.
    EXPECT_EQ(hub().PoolSlots("a"), 0);
    hub().Start(Job(100 + id, "a", "next.txt"));
    EXPECT_EQ(rec_.Only(100 + id).infra, ExecResult::Infra::kUnplaced);
    // More than a lease has passed since both joined.
    bool alive_expired = hub().Expired(*alive);
    absl::Duration gap = worker.MaxGap();
    // Never expired while it was not silent for a lease.
    EXPECT_TRUE(!alive_expired || gap > options.lease)
        << "expired although it sent a message at least every " << gap;
    conclusive = gap <= options.lease;
    if (conclusive) {
      EXPECT_FALSE(alive_expired);
      // The daemon heartbeats every lease/3 to a live session.
      ASSERT_TRUE(worker.AwaitDaemonHeartbeats(2));
      EXPECT_FALSE(hub().Expired(*alive));
      EXPECT_THAT(rec_.aborts(), ElementsAre(silent_name));
    }

    // The stream's reader then leaves: the assignment is lost.
    hub().Leave(*silent, "no message within its lease");
    ExecResult r = rec_.Only(id);
    EXPECT_EQ(r.infra, ExecResult::Infra::kLost);
    EXPECT_THAT(std::string(r.output_status.message()), HasSubstr("no message within its lease"));
    EXPECT_THAT(Temporaries(ws_.path()), ElementsAre());

    worker.Stop();
    if (conclusive) {
      const int64_t now_ms = absl::ToUnixMillis(absl::Now());
      for (int64_t ms : worker.daemon_heartbeats()) {
        EXPECT_GT(ms, now_ms - 60'000);
        EXPECT_LE(ms, now_ms);
      }
    }
    hub_.reset();  // before the sessions and the worker
  }
  EXPECT_TRUE(conclusive) << "the heartbeating thread was starved for a lease in all " << kAttempts
                          << " attempts";
}

TEST_F(WorkerHubTest, CloseAbortsEverySessionAndRefusesNewOnes) {
  MakeHub();
  auto a = JoinOk(Hello("gpu", 1, "a"));
  auto b = JoinOk(Hello("cpu", 1, "b"));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  hub().Close();
  EXPECT_THAT(rec_.aborts(), UnorderedElementsAre("a", "b"));
  auto c = hub().Join(Hello("gpu", 1, "c"), "peer", rec_.AbortFn("c"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable) << c.status();
  hub().Leave(*a, "shutdown");
  hub().Leave(*b, "shutdown");
  EXPECT_TRUE(hub().List().empty());
}

}  // namespace
}  // namespace asflow
