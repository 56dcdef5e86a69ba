// End-to-end tests of live progress: `asflowctl watch` and `run` against the
// real asflowd, with the flows in tests/testdata/watch. What every watcher
// sees is checked against the store (`asflowctl tasks`), across a restarted
// watcher (--from-seq), a watcher too slow to keep up (a gap snapshot), and
// on a real terminal (tmux). Every test kills every process it started.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "asflow/v1/service.grpc.pb.h"
#include "asflow/v1/service.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

inline const std::string kWatchData = ASFLOW_TEST_DATA_DIR "/watch";

std::string WatchFlow(const std::string &name) { return kWatchData + "/" + name + ".flow.yaml"; }

// The events of a `--json` stream: one per complete line (a trailing partial
// line, from a killed writer, is ignored). Fails the test on a line that is
// not an Event.
std::vector<v1::Event> ParseEvents(const std::string &text) {
  std::vector<v1::Event> events;
  size_t end = text.rfind('\n');
  if (end == std::string::npos) return events;
  for (const std::string &line : Lines(text.substr(0, end + 1))) {
    v1::Event event;
    auto status = google::protobuf::util::JsonStringToMessage(line, &event);
    EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
    events.push_back(std::move(event));
  }
  return events;
}

// How many instances of the stream finished (FINISHED events), or ran.
int CountKind(const std::vector<v1::Event> &events, v1::InstanceEvent::Kind kind) {
  return std::count_if(events.begin(), events.end(), [&](const v1::Event &e) {
    return e.has_instance() && e.instance().kind() == kind;
  });
}

void ExpectSeqsIncrease(const std::vector<v1::Event> &events, const std::string &stream) {
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[i].seq(), events[i - 1].seq()) << stream << " event " << i;
  }
}

// The run as the stream last showed it: from its last run event or
// snapshot. An empty Run if there was none.
v1::Run FinalRun(const std::vector<v1::Event> &events, int64_t run_id) {
  v1::Run run;
  for (const v1::Event &e : events) {
    if (e.has_run() && e.run().run().id() == run_id) run = e.run().run();
    if (e.has_snapshot()) {
      for (const v1::Run &r : e.snapshot().runs()) {
        if (r.id() == run_id) run = r;
      }
    }
  }
  return run;
}

// Per-task counters of a run, keyed by task name.
// The counts of each task (what `asflowctl tasks` tables show): the
// descriptive fields that no table has (gate, uses) are left out.
std::map<std::string, v1::TaskCounters> CountersByTask(const v1::Run &run) {
  std::map<std::string, v1::TaskCounters> out;
  for (const v1::TaskCounters &t : run.tasks()) {
    v1::TaskCounters &c = out[t.task()] = t;
    c.clear_gate();
    c.clear_uses();
  }
  return out;
}

std::string Describe(const std::map<std::string, v1::TaskCounters> &counters) {
  std::string out;
  for (const auto &[task, c] : counters) absl::StrAppend(&out, c.ShortDebugString(), "\n");
  return out;
}

// Per task, the counts by state of an `asflowctl tasks RUN` table, as
// TaskCounters (total = every row).
std::map<std::string, v1::TaskCounters> CountersFromTable(const std::string &table) {
  std::map<std::string, v1::TaskCounters> out;
  std::vector<std::string> rows = Lines(table);
  if (!rows.empty()) rows.erase(rows.begin());  // the header
  for (const std::string &row : rows) {
    std::vector<std::string> cells = absl::StrSplit(row, ' ', absl::SkipEmpty());
    if (cells.size() < 6) {
      ADD_FAILURE() << "short row: " << row;
      continue;
    }
    std::string task = cells[5].substr(0, cells[5].find('('));
    v1::TaskCounters &c = out[task];
    c.set_task(task);
    c.set_total(c.total() + 1);
    c.set_expanded(true);
    const std::string &state = cells[1];
    if (state == "queued") c.set_queued(c.queued() + 1);
    else if (state == "running") c.set_running(c.running() + 1);
    else if (state == "done") c.set_done(c.done() + 1);
    else if (state == "cached") c.set_cached(c.cached() + 1);
    else if (state == "skipped") c.set_skipped(c.skipped() + 1);
    else if (state == "suppressed") c.set_suppressed(c.suppressed() + 1);
    else if (state == "failed") c.set_failed(c.failed() + 1);
    else if (state == "cancelled") c.set_cancelled(c.cancelled() + 1);
    else ADD_FAILURE() << "unknown state in: " << row;
  }
  return out;
}

bool SameCounters(const std::map<std::string, v1::TaskCounters> &a,
                  const std::map<std::string, v1::TaskCounters> &b) {
  if (a.size() != b.size()) return false;
  for (const auto &[task, c] : a) {
    auto it = b.find(task);
    if (it == b.end() || !google::protobuf::util::MessageDifferencer::Equals(c, it->second)) return false;
  }
  return true;
}

// VmHWM (peak resident set) of `pid` in kB, or -1.
int64_t PeakRssKb(pid_t pid) {
  std::string line = LineStartingWith(ReadAll(absl::StrCat("/proc/", pid, "/status")), "VmHWM:");
  int64_t kb = -1;
  std::vector<std::string> cells = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (cells.size() >= 2 && !absl::SimpleAtoi(cells[1], &kb)) kb = -1;
  return kb;
}

class WatchTest : public E2eTest {
 protected:
  void TearDown() override {
    for (int fd : pipes_) close(fd);
    E2eTest::TearDown();
  }

  // Submits a watch flow with --detach; returns its run id.
  int64_t DetachWatchFlow(const std::string &flow, std::vector<std::string> params = {}) {
    return DetachPath(WatchFlow(flow), std::move(params));
  }

  // Starts asflowctl --socket socket_ ARGS with stdout on a pipe that is not
  // read until the caller does; returns the pid and the read end in *fd.
  pid_t SpawnCtlToPipe(std::vector<std::string> args, int *fd) {
    args.insert(args.begin(), {kCtl, "--socket", socket_});
    Launch launch = MakeLaunch(args, ws_);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -1;
    std::vector<char *> argv;
    for (const std::string &a : launch.argv) argv.push_back(const_cast<char *>(a.c_str()));
    argv.push_back(nullptr);
    std::vector<char *> env;
    for (const std::string &e : launch.env) env.push_back(const_cast<char *>(e.c_str()));
    env.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      int in_fd = open("/dev/null", O_RDONLY);
      int err_fd = open(launch.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in_fd < 0 || err_fd < 0) _exit(126);
      dup2(in_fd, 0);
      dup2(fds[1], 1);
      dup2(err_fd, 2);
      if (chdir(launch.cwd.c_str()) != 0) _exit(126);
      execve(argv[0], argv.data(), env.data());
      _exit(127);
    }
    close(fds[1]);
    children_.push_back(pid);
    pipes_.push_back(fds[0]);
    *fd = fds[0];
    return pid;
  }

  // Reads `fd` until EOF or `timeout` (Scaled); false on timeout.
  static bool Drain(int fd, std::string *out, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + Scaled(timeout);
    char buf[65536];
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n == 0) return true;
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      out->append(buf, n);
    }
  }

  std::vector<int> pipes_;
};

TEST_F(WatchTest, WatchersAndLateJoinerAgreeWithStore) {
  StartDaemon();
  const int64_t run = DetachWatchFlow("items", {"n=200", "sleep=0.05"});
  const std::string id = absl::StrCat(run);
  Launch first, second, late;
  pid_t first_pid = SpawnCtl({"watch", id, "--json"}, &first);
  pid_t second_pid = SpawnCtl({"watch", id, "--json"}, &second);
  // The late joiner comes in once about half of the items are done.
  ASSERT_TRUE(WaitFor([&] { return CountKind(ParseEvents(ReadAll(first.stdout_path)), v1::InstanceEvent::FINISHED) >= 100; },
                      30s));
  pid_t late_pid = SpawnCtl({"watch", id, "--json"}, &late);
  EXPECT_EQ(WaitChild(first_pid, 30s), 0) << ReadAll(first.stderr_path);
  EXPECT_EQ(WaitChild(second_pid, 30s), 0) << ReadAll(second.stderr_path);
  EXPECT_EQ(WaitChild(late_pid, 30s), 0) << ReadAll(late.stderr_path);

  std::vector<v1::Event> streams[] = {ParseEvents(ReadAll(first.stdout_path)),
                                      ParseEvents(ReadAll(second.stdout_path)),
                                      ParseEvents(ReadAll(late.stdout_path))};
  // The late joiner started mid-run: a snapshot, then fewer than all items.
  ASSERT_FALSE(streams[2].empty());
  EXPECT_TRUE(streams[2].front().has_snapshot());
  EXPECT_LT(CountKind(streams[2], v1::InstanceEvent::FINISHED), 200);

  CommandResult tasks = Ctl({"tasks", id});
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  std::map<std::string, v1::TaskCounters> store = CountersFromTable(tasks.out);
  ASSERT_EQ(store["item"].total(), 200) << tasks.out;
  EXPECT_EQ(store["item"].done(), 200) << tasks.out;
  EXPECT_EQ(store["playlist"].done(), 1) << tasks.out;
  const char *names[] = {"first", "second", "late"};
  for (int i = 0; i < 3; ++i) {
    ExpectSeqsIncrease(streams[i], names[i]);
    v1::Run final_run = FinalRun(streams[i], run);
    EXPECT_EQ(final_run.state(), v1::RUN_SUCCEEDED) << names[i];
    std::map<std::string, v1::TaskCounters> seen = CountersByTask(final_run);
    EXPECT_TRUE(SameCounters(seen, store)) << names[i] << " saw:\n" << Describe(seen) << "store:\n" << Describe(store);
  }
}

TEST_F(WatchTest, WatcherRestartedWithFromSeqMissesNothing) {
  StartDaemon();
  // `run --json` follows the run from its first event; killing it leaves
  // the run going in the daemon.
  const int64_t run = 1;
  const std::string id = "1";
  Launch first;
  pid_t first_pid = SpawnCtl({"run", WatchFlow("items"), "--json", "-p", "n=200", "-p", "sleep=0.05"}, &first);
  ASSERT_TRUE(WaitFor([&] { return CountKind(ParseEvents(ReadAll(first.stdout_path)), v1::InstanceEvent::FINISHED) >= 60; },
                      30s));
  ASSERT_EQ(kill(first_pid, SIGKILL), 0);
  ASSERT_EQ(WaitChild(first_pid, 5s), 128 + SIGKILL);
  std::vector<v1::Event> before = ParseEvents(ReadAll(first.stdout_path));
  ASSERT_FALSE(before.empty());
  const int64_t last = before.back().seq();
  ASSERT_NE(FinalRun(before, run).state(), v1::RUN_SUCCEEDED) << "the run ended before the watcher was killed";

  Launch second;
  pid_t second_pid = SpawnCtl({"watch", id, "--json", "--from-seq", absl::StrCat(last)}, &second);
  EXPECT_EQ(WaitChild(second_pid, 30s), 0) << ReadAll(second.stderr_path);
  std::vector<v1::Event> after = ParseEvents(ReadAll(second.stdout_path));
  ASSERT_FALSE(after.empty());
  EXPECT_EQ(after.front().seq(), last + 1);
  EXPECT_FALSE(after.front().has_snapshot()) << after.front().ShortDebugString();
  ExpectSeqsIncrease(before, "before");
  ExpectSeqsIncrease(after, "after");
  EXPECT_EQ(FinalRun(after, run).state(), v1::RUN_SUCCEEDED);

  // Every instance (the playlist, seq 0, and 200 items) finished exactly
  // once across both streams.
  std::map<int64_t, int> finished;
  for (const auto *events : {&before, &after}) {
    for (const v1::Event &e : *events) {
      if (e.has_instance() && e.instance().kind() == v1::InstanceEvent::FINISHED) {
        ++finished[e.instance().instance().seq()];
      }
    }
  }
  std::vector<std::string> wrong;
  for (int64_t seq = 0; seq <= 200; ++seq) {
    if (finished[seq] != 1) wrong.push_back(absl::StrCat(seq, ":", finished[seq]));
  }
  EXPECT_THAT(wrong, ::testing::IsEmpty()) << "instance seq:times FINISHED was seen";
  EXPECT_EQ(finished.size(), 201u);
}

TEST_F(WatchTest, SlowConsumerGetsSnapshotNotBacklog) {
  // 20,000 no-op instances publish about 40,000 events in a few seconds:
  // more than the 16,384 a subscriber may have queued once the pipe and
  // gRPC's flow-control windows are full. The daemon's log tells when a
  // run is over (no other watcher competes for the two cores).
  StartDaemon();
  const std::string n = "n=20000";
  const std::string log = tmp_.Join("daemon/asflowd.1.log");
  auto finished = [&](int64_t run) {
    return absl::StrContains(ReadAll(log), absl::StrCat("run ", run, " (many) finished: RUN_SUCCEEDED"));
  };
  ASSERT_EQ(DetachWatchFlow("many", {n, "round=1"}), 1);
  ASSERT_TRUE(WaitFor([&] { return finished(1); }, 30s));
  v1::Run base_run = FinalRun(ParseEvents(Ctl({"watch", "1", "--json"}).out), 1);
  ASSERT_EQ(base_run.state(), v1::RUN_SUCCEEDED);
  const int64_t base_ms = base_run.finished_ms() - base_run.created_ms();

  const int64_t run = DetachWatchFlow("many", {n, "round=2"});
  int fd = -1;
  pid_t slow_pid = SpawnCtlToPipe({"watch", absl::StrCat(run), "--json"}, &fd);
  ASSERT_GT(slow_pid, 0);
  // Nobody reads the watcher's output until the run is over.
  ASSERT_TRUE(WaitFor([&] { return finished(run); }, 30s));
  v1::Run slow_run = FinalRun(ParseEvents(Ctl({"watch", absl::StrCat(run), "--json"}).out), run);
  ASSERT_EQ(slow_run.state(), v1::RUN_SUCCEEDED);
  const int64_t slow_ms = slow_run.finished_ms() - slow_run.created_ms();

  std::string drained;
  ASSERT_TRUE(Drain(fd, &drained, 30s)) << "the slow watcher did not finish";
  EXPECT_EQ(WaitChild(slow_pid, 10s), 0);
  std::vector<v1::Event> events = ParseEvents(drained);
  ExpectSeqsIncrease(events, "slow");
  int gaps = std::count_if(events.begin(), events.end(),
                           [](const v1::Event &e) { return e.has_snapshot() && e.snapshot().gap(); });
  EXPECT_GE(gaps, 1) << events.size() << " events drained";
  EXPECT_THAT(drained, HasSubstr("\"gap\":true"));
  EXPECT_LT(events.size(), 40000u);
  v1::Run seen = FinalRun(events, run);
  EXPECT_EQ(seen.state(), v1::RUN_SUCCEEDED);
  EXPECT_TRUE(SameCounters(CountersByTask(seen), CountersByTask(slow_run)))
      << Describe(CountersByTask(seen)) << "vs\n" << Describe(CountersByTask(slow_run));

  const int64_t rss_kb = PeakRssKb(daemon_pid_);
  std::printf("run of 20000 no-ops: %lld ms alone, %lld ms with a slow watcher (%zu events drained, %d gap "
              "snapshots); asflowd VmHWM %lld kB\n",
              static_cast<long long>(base_ms), static_cast<long long>(slow_ms), events.size(), gaps,
              static_cast<long long>(rss_kb));
  // Only catches a stalled publisher; bench/watch_bench.sh measures.
  EXPECT_LE(slow_ms, 3 * base_ms + static_cast<int64_t>(ScaledSeconds(5.0) * 1000));
  EXPECT_GT(rss_kb, 0);
  EXPECT_LT(rss_kb, 1024 * 1024);
}

// A watcher that asks for batches (asflowctl) and one that does not (an
// older client) see the same events: the old one one per message, the new
// one several per message, as the bytes the daemon encoded once.
TEST_F(WatchTest, BatchedAndUnbatchedWatchersSeeTheSameEvents) {
  StartDaemon();
  const int64_t run = DetachWatchFlow("items", {"n=200", "sleep=0.01"});
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  auto stub = v1::FlowService::NewStub(channel);

  grpc::ClientContext batched_ctx;
  v1::WatchRequest request;
  request.set_run_id(run);
  request.set_batch(true);
  auto batched = stub->Watch(&batched_ctx, request);
  v1::Event message;
  ASSERT_TRUE(batched->Read(&message));
  std::vector<v1::Event> batched_events;
  auto add_batched = [&](const v1::Event &m) {
    if (m.batch_size() == 0) {
      batched_events.push_back(m);
      return;
    }
    for (const std::string &bytes : m.batch()) {
      v1::Event e;
      EXPECT_TRUE(e.ParseFromString(bytes));
      batched_events.push_back(std::move(e));
    }
  };
  add_batched(message);
  ASSERT_TRUE(batched_events.front().has_snapshot());
  const int64_t snapshot_seq = batched_events.front().seq();

  // The old-style watcher resumes right after the batched one's snapshot.
  grpc::ClientContext single_ctx;
  request.set_batch(false);
  request.set_from_seq(snapshot_seq);
  auto single = stub->Watch(&single_ctx, request);

  int batched_messages = 1;
  while (batched->Read(&message)) {
    ++batched_messages;
    add_batched(message);
  }
  ASSERT_TRUE(batched->Finish().ok());
  std::vector<v1::Event> single_events;
  while (single->Read(&message)) {
    EXPECT_EQ(message.batch_size(), 0);
    single_events.push_back(message);
  }
  ASSERT_TRUE(single->Finish().ok());

  ExpectSeqsIncrease(batched_events, "batched");
  ExpectSeqsIncrease(single_events, "single");
  EXPECT_EQ(FinalRun(batched_events, run).state(), v1::RUN_SUCCEEDED);
  ASSERT_EQ(batched_events.size(), single_events.size() + 1);  // + the snapshot
  for (size_t i = 0; i < single_events.size(); ++i) {
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(batched_events[i + 1], single_events[i]))
        << i << ": " << batched_events[i + 1].ShortDebugString() << " vs " << single_events[i].ShortDebugString();
  }
  EXPECT_EQ(single_events.front().seq(), snapshot_seq + 1);
  std::map<std::string, v1::TaskCounters> counters = CountersByTask(FinalRun(batched_events, run));
  EXPECT_EQ(counters["item"].done(), 200) << Describe(counters);
  // Items starting and finishing for about a second: batched.
  EXPECT_GE(CountKind(batched_events, v1::InstanceEvent::FINISHED), 50);
  EXPECT_LT(batched_messages, static_cast<int>(batched_events.size()) / 2)
      << batched_messages << " messages for " << batched_events.size() << " events";
}

TEST_F(WatchTest, TtyViewUnderTmux) {
  if (RunProcess(MakeLaunch({"/usr/bin/env", "tmux", "-V"}, tmp_.path()), 10s).exit_code != 0) {
    GTEST_SKIP() << "tmux is not installed";
  }
  StartDaemon();
  std::string env;
  std::string marker = NewMarker(&env);
  std::string server = StartTmux({kCtl, "--socket", socket_, "run", WatchFlow("tty"), "-p", "marker=" + marker});
  std::string screen;
  const std::string label = absl::StrCat("nap(id=n");
  bool live = WaitForScreen(
      server,
      [&](const std::string &s) {
        bool flow = false, bar = false, running = false;
        for (const std::string &line : Lines(s)) {
          flow = flow || absl::StartsWith(line, "tty  run 1  running  ");
          bar = bar || (absl::StartsWith(line, "  nap  ") && absl::StrContains(line, "%") &&
                        absl::StrContains(line, "/20") && absl::StrContains(line, "ETA "));
          running = running || absl::StartsWith(line, "    " + label);
        }
        return flow && bar && running;
      },
      20s, &screen);
  EXPECT_TRUE(live) << screen;
  EXPECT_TRUE(WaitForScreen(
      server, [](const std::string &s) { return absl::StrContains(s, "\nexited with "); }, 30s, &screen))
      << screen;
  EXPECT_THAT(screen, HasSubstr("\nrun 1 succeeded in "));
  EXPECT_THAT(screen, HasSubstr(absl::StrCat("(flow tty)\n",
                                            "  task  total  done  cached  skipped  suppressed  failed  cancelled\n",
                                            absl::StrFormat("  %-4s  %5d  %4d  %6d  %7d  %10d  %6d  %9d\n", "nap",
                                                            20, 20, 0, 0, 0, 0, 0))));
  EXPECT_THAT(screen, HasSubstr("\nexited with 0\n"));
  EXPECT_THAT(screen, HasSubstr("tty  run 1  succeeded  "));

  // Ctrl-C in a second run: the prompt, then [c]ancel.
  std::string marker2 = NewMarker(&env);
  std::string server2 = StartTmux({kCtl, "--socket", socket_, "run", WatchFlow("tty"), "-p", "marker=" + marker2});
  ASSERT_TRUE(WaitForScreen(
      server2, [](const std::string &s) { return absl::StrContains(s, "tty  run 2  running  "); }, 20s, &screen))
      << screen;
  SendKeys(server2, {"C-c"});
  EXPECT_TRUE(WaitForScreen(
      server2,
      [](const std::string &s) { return absl::StrContains(s, "run 2: [c]ancel it, or [d]etach and let it go on? [d]"); },
      10s, &screen))
      << screen;
  SendKeys(server2, {"c"});  // one key, no Enter
  EXPECT_TRUE(WaitForScreen(
      server2, [](const std::string &s) { return absl::StrContains(s, "\nexited with "); }, 20s, &screen))
      << screen;
  EXPECT_THAT(screen, HasSubstr("[c]ancel it, or [d]etach and let it go on? [d] c\ncancelling run 2...\n"));
  EXPECT_THAT(screen, Not(HasSubstr("^C")));
  EXPECT_THAT(screen, HasSubstr("\nrun 2 cancelled in "));
  EXPECT_THAT(screen, HasSubstr("\nexited with 1\n"));
  CommandResult runs = Ctl({"runs"});
  EXPECT_THAT(runs.out, ::testing::ContainsRegex("\n2 +cancelled +tty "));
}

TEST_F(WatchTest, PlainOutputHasNoEscapeCodes) {
  StartDaemon();
  CommandResult plain = Ctl({"run", WatchFlow("items"), "--plain", "-p", "n=20", "-p", "sleep=0"});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(plain.out, HasSubstr("\n  start      item(id=v20)\n"));
  EXPECT_THAT(plain.out, HasSubstr("\n  done       item(id=v20)  "));
  EXPECT_THAT(plain.out, HasSubstr("\nrun 1 succeeded in "));
  EXPECT_EQ(plain.out.find('\x1b'), std::string::npos) << plain.out;
  EXPECT_EQ(plain.err.find('\x1b'), std::string::npos) << plain.err;

  // No flag, stdout a file: plain lines too.
  CommandResult auto_mode = Ctl({"run", WatchFlow("items"), "-p", "n=40", "-p", "sleep=0"});
  ASSERT_EQ(auto_mode.exit_code, 0) << auto_mode.err;
  EXPECT_THAT(auto_mode.out, HasSubstr("\n  done       item(id=v40)  "));
  EXPECT_THAT(auto_mode.out, HasSubstr("\nrun 2 succeeded in "));
  EXPECT_EQ(auto_mode.out.find('\x1b'), std::string::npos) << auto_mode.out;
  EXPECT_EQ(auto_mode.err.find('\x1b'), std::string::npos) << auto_mode.err;
}

// Watch is served raw (the daemon parses the request itself): a request
// that is not a WatchRequest is refused, and the daemon goes on serving.
TEST_F(WatchTest, MalformedWatchRequestIsRefused) {
  StartDaemon();
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto call = generic.PrepareCall(&ctx, "/asflow.v1.FlowService/Watch", &cq);
  void* tag;
  bool ok;
  auto next = [&](intptr_t want) {
    ASSERT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), want);
  };
  call->StartCall(reinterpret_cast<void*>(1));
  next(1);
  const char garbage[] = "\x0a\xff\xff";  // field 1 as bytes, truncated length
  grpc::Slice slice(garbage, sizeof(garbage) - 1);
  grpc::ByteBuffer request(&slice, 1);
  call->WriteLast(request, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  next(2);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  next(3);
  EXPECT_FALSE(ok);  // no message
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  next(4);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }

  CommandResult run = Ctl({"run", WatchFlow("items"), "-p", "n=3", "-p", "sleep=0"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
}

// Watchers cancelled while the daemon is writing to them (a busy run, one
// event per message): each stream ends CANCELLED and its reactor is
// finished and freed — its watcher slot (--max-watchers) comes back — so
// round after round of them can open again, and the daemon keeps serving.
// This is the path where gRPC calls OnCancel while a write is in flight
// (WatchReactor calls Finish from OnCancel; the write's OnWriteDone comes
// after it); under TSan it is where the reports of docs/testing.md came from.
TEST_F(WatchTest, WatchersCancelledWhileWritingAreFinishedAndFreed) {
  constexpr int kWatchers = 6;
  StartDaemon({"--max-watchers", std::to_string(kWatchers)});
  // ~100,000 events from no-op instances: the daemon is writing to every
  // watcher throughout (cancelled at the end).
  const int64_t run = DetachWatchFlow("many", {"n=50000", "round=cancel"});
  auto stub = v1::FlowService::NewStub(grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials()));
  int cancelled = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<std::unique_ptr<grpc::ClientReader<v1::Event>>> streams;
    for (int i = 0; i < kWatchers; ++i) {
      // The slots of the round before come back once their OnDone ran.
      bool opened = WaitFor([&] {
        auto ctx = std::make_unique<grpc::ClientContext>();
        ctx->set_deadline(std::chrono::system_clock::now() + 60s);  // no Read hangs the test
        v1::WatchRequest request;  // every run, one event per message
        auto stream = stub->Watch(ctx.get(), request);
        v1::Event first;
        if (stream->Read(&first)) {
          contexts.push_back(std::move(ctx));
          streams.push_back(std::move(stream));
          return true;
        }
        grpc::Status refused = stream->Finish();
        EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << refused.error_message();
        return false;
      }, 20s);
      ASSERT_TRUE(opened) << "round " << round << ", watcher " << i << ": its slot never came back";
    }
    // Take a few more events each (the daemon is writing the next ones),
    // then cancel them all at once.
    v1::Event event;
    for (auto &stream : streams) {
      for (int k = 0; k < 1 + round; ++k) ASSERT_TRUE(stream->Read(&event));
    }
    for (auto &ctx : contexts) ctx->TryCancel();
    for (auto &stream : streams) {
      while (stream->Read(&event)) {
      }
      grpc::Status status = stream->Finish();
      EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
      cancelled += status.error_code() == grpc::StatusCode::CANCELLED;
    }
  }
  EXPECT_EQ(cancelled, 5 * kWatchers);
  // The run was busy throughout, and the daemon still answers.
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run)});
  EXPECT_EQ(tasks.exit_code, 0) << tasks.err;
  CommandResult stop = Ctl({"cancel", absl::StrCat(run)});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
}

TEST_F(WatchTest, WatchOfFinishedRunShowsSummary) {
  StartDaemon();
  CommandResult ok = Ctl({"run", WatchFlow("items"), "-p", "n=5", "-p", "sleep=0"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  CommandResult failed = Ctl({"run", WatchFlow("fail")});
  ASSERT_EQ(failed.exit_code, 1) << failed.out << failed.err;
  const std::string ok_summary = ok.out.substr(ok.out.find("\nrun 1 succeeded in ") + 1);
  const std::string failed_summary = failed.out.substr(failed.out.find("\nrun 2 failed in ") + 1);

  // Served from the daemon's view of recent runs.
  CommandResult watch_ok = Ctl({"watch", "1"});
  EXPECT_EQ(watch_ok.exit_code, 0) << watch_ok.err;
  EXPECT_THAT(watch_ok.out, HasSubstr("\nrun 1 succeeded in "));
  EXPECT_THAT(watch_ok.out, ::testing::EndsWith(ok_summary.substr(0, ok_summary.find("  outputs of "))));
  CommandResult watch_failed = Ctl({"watch", "2"});
  EXPECT_EQ(watch_failed.exit_code, 1) << watch_failed.err;
  EXPECT_THAT(watch_failed.out, ::testing::EndsWith(failed_summary));
  EXPECT_THAT(watch_failed.out,
              HasSubstr("\n  boom                        1        0        0        0          0        1         0\n"));

  // After a restart, from the store: the same output.
  KillDaemon();
  StartDaemon();
  CommandResult again_ok = Ctl({"watch", "1"});
  EXPECT_EQ(again_ok.exit_code, 0) << again_ok.err;
  EXPECT_EQ(again_ok.out, watch_ok.out);
  CommandResult again_failed = Ctl({"watch", "2"});
  EXPECT_EQ(again_failed.exit_code, 1) << again_failed.err;
  EXPECT_EQ(again_failed.out, watch_failed.out);
  CommandResult json = Ctl({"watch", "2", "--json"});
  EXPECT_EQ(json.exit_code, 1) << json.err;
  std::vector<v1::Event> events = ParseEvents(json.out);
  ASSERT_EQ(events.size(), 1u) << json.out;
  EXPECT_TRUE(events[0].has_snapshot());
  EXPECT_EQ(FinalRun(events, 2).state(), v1::RUN_FAILED);
}

}  // namespace
}  // namespace asflow::testing
