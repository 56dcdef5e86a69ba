// End-to-end tests of remote worker pools: the real asflowd with a TCP
// listener and real asflow-worker processes on loopback (and across network
// namespaces where permitted). Limits hold across workers, outputs are
// written once and whole by the daemon, lost workers' instances move on,
// tokens and TLS keep strangers out, drains finish what runs.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "asflow/v1/worker.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "tests/e2e/tcp_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

inline const std::string kWorker = ASFLOW_BINARY_DIR "/worker/asflow-worker";

class WorkerTest : public TcpE2eTest {
 protected:
  // Starts asflowd listening on 127.0.0.1 (port picked by the kernel),
  // with a token every StartWorker then sends, unless `extra` names one.
  void StartListeningDaemon(std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--listen", "127.0.0.1:0"});
    if (std::find(extra.begin(), extra.end(), "--token-file") == extra.end()) {
      default_token_ = tmp_.Join("token");
      WriteFileOrDie(default_token_, "worker-test-token\n");
      extra.insert(extra.end(), {"--token-file", default_token_});
    }
    StartDaemon(extra);
    server_ = absl::StrCat("127.0.0.1:", TcpPort());
  }

  // Starts asflow-worker NAME for pool "remote"; its log is
  // tmp/worker.NAME.log. `prefix` runs it under another command (ip netns).
  pid_t StartWorker(const std::string& name, int slots, std::vector<std::string> extra = {},
                    std::vector<std::string> prefix = {}) {
    std::vector<std::string> argv = prefix;
    argv.insert(argv.end(), {kWorker, "--server", server_, "--pool", "remote", "--slots",
                             absl::StrCat(slots), "--name", name, "--scratch",
                             tmp_.Join("scratch-" + name)});
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!default_token_.empty() && std::find(extra.begin(), extra.end(), "--token-file") == extra.end()) {
      argv.insert(argv.end(), {"--token-file", default_token_});
    }
    Launch launch = MakeLaunch(argv, tmp_.path());
    launch.stdout_path = launch.stderr_path = WorkerLog(name);
    pid_t pid = SpawnProcess(launch);
    EXPECT_GT(pid, 0);
    children_.push_back(pid);
    return pid;
  }
  std::string WorkerLog(const std::string& name) { return tmp_.Join("worker." + name + ".log"); }

  // `asflowctl workers` rows (header skipped).
  std::vector<std::string> Workers() {
    CommandResult r = Ctl({"workers"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> rows = Lines(r.out);
    if (!rows.empty() && absl::StartsWith(rows[0], "SESSION")) rows.erase(rows.begin());
    if (!rows.empty() && absl::StartsWith(rows[0], "no workers")) rows.clear();
    return rows;
  }
  bool WaitWorkers(size_t n) {
    return WaitFor([&] { return Workers().size() == n; }, 10s);
  }

  // Submits remote.flow.yaml with --detach and `params` (dir= is added).
  int64_t SubmitRemote(std::vector<std::string> params) {
    params.push_back("dir=" + ws_);
    return DetachPath(Flow("remote"), params);
  }

  // The whole, expected content of instance ID's output.
  static std::string Expected(int id, int lines, const std::string& worker) {
    std::string text;
    for (int k = 1; k <= lines; ++k) absl::StrAppend(&text, id, " line ", k, "\n");
    return absl::StrCat(text, id, " ran on ", worker, "\n");
  }

  // Checks data/1.txt .. data/N.txt are whole and returns which worker
  // wrote each.
  std::map<std::string, int> CheckOutputs(int n, int lines) {
    std::map<std::string, int> per_worker;
    for (int i = 1; i <= n; ++i) {
      std::string path = absl::StrCat(ws_, "/data/", i, ".txt");
      std::string text = ReadAll(path);
      std::string last = Lines(text).empty() ? "" : Lines(text).back();
      std::string worker = last.substr(last.rfind(' ') + 1);
      EXPECT_EQ(text, Expected(i, lines, worker)) << path;
      ++per_worker[worker];
    }
    return per_worker;
  }

  // Temporaries left in data/ (there must be none after a run).
  std::vector<std::string> Temporaries() {
    std::vector<std::string> found;
    if (!std::filesystem::exists(ws_ + "/data")) return found;  // nothing was ever written
    for (const auto& entry : std::filesystem::directory_iterator(ws_ + "/data")) {
      if (absl::StrContains(entry.path().filename().string(), "asflow-tmp")) found.push_back(entry.path());
    }
    return found;
  }

  std::string DaemonLog() { return ReadAll(tmp_.Join(absl::StrCat("daemon/asflowd.", daemon_starts_, ".log"))); }

  std::string server_;
  // The token StartListeningDaemon made, sent by StartWorker; empty when
  // the test chose its own.
  std::string default_token_;
};

TEST_F(WorkerTest, TwoWorkersShareAFanOutAndTheLimitHoldsAcrossThem) {
  StartListeningDaemon();
  StartWorker("w1", 2);
  ASSERT_TRUE(WaitWorkers(1));  // so that w1 is session 1
  StartWorker("w2", 2);
  ASSERT_TRUE(WaitWorkers(2));
  std::vector<std::string> rows = Workers();
  EXPECT_THAT(rows[0], ::testing::MatchesRegex("1 +w1 +remote +2 +0 +0 .* ready +.*127\\.0\\.0\\.1.*"));
  EXPECT_THAT(rows[1], ::testing::MatchesRegex("2 +w2 +remote +2 +0 +0 .* ready +.*"));

  int64_t run = SubmitRemote({"n=200", "lines=20", "pause=0.05"});
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 120s);
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("item: 200 instances"));

  std::map<std::string, int> per_worker = CheckOutputs(200, 20);
  EXPECT_EQ(per_worker.size(), 2u) << "all on one worker";
  EXPECT_GT(per_worker["w1"], 20);
  EXPECT_GT(per_worker["w2"], 20);
  EXPECT_EQ(per_worker["w1"] + per_worker["w2"], 200);
  // Four slots between them, but the task's limit is 3: measured by the
  // commands themselves under a lock.
  std::vector<std::string> held = Lines(ReadAll(ws_ + "/slots.log"));
  ASSERT_EQ(held.size(), 200u);
  EXPECT_EQ(MaxHeld(held), 3) << ReadAll(ws_ + "/slots.log");
  EXPECT_EQ(ReadAll(ws_ + "/slots.count"), "0\n");
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
  // Each instance ran exactly once.
  EXPECT_EQ(Lines(ReadAll(ws_ + "/starts.log")).size(), 200u);
  rows = Workers();
  ASSERT_EQ(rows.size(), 2u);
  std::vector<std::string> cols = absl::StrSplit(rows[0], ' ', absl::SkipEmpty());
  EXPECT_EQ(cols[4], "0");  // nothing running any more
  EXPECT_EQ(cols[5], absl::StrCat(per_worker["w1"]));  // assigned this session
}

TEST_F(WorkerTest, KilledWorkersInstancesRunElsewhere) {
  StartListeningDaemon();
  pid_t w1 = StartWorker("w1", 2);
  ASSERT_TRUE(WaitWorkers(1));
  std::string marker_env;
  std::string marker = NewMarker(&marker_env);
  int64_t run = SubmitRemote({"n=30", "lines=200", "pause=0.4", "marker=" + marker});
  // w1 alone takes the first instances; once it is busy, a second worker
  // joins, then w1 dies mid-instance.
  ASSERT_TRUE(WaitFor([&] { return Lines(ReadAll(ws_ + "/starts.log")).size() >= 3; }, 20s));
  StartWorker("w2", 2);
  ASSERT_TRUE(WaitWorkers(2));
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<std::string> rows = Workers();
        return !rows.empty() && absl::StrContains(rows[0], "w1") &&
               std::regex_search(rows[0], std::regex("remote +2 +[12] "));
      },
      10s));
  ASSERT_EQ(kill(w1, SIGKILL), 0);
  EXPECT_EQ(WaitChild(w1, 5s), 128 + SIGKILL);

  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 120s);
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr(absl::StrCat("run ", run, " succeeded")));
  std::map<std::string, int> per_worker = CheckOutputs(30, 200);
  EXPECT_GT(per_worker["w2"], 0);
  EXPECT_EQ(per_worker["w1"] + per_worker["w2"], 30);
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
  EXPECT_THAT(DaemonLog(), ::testing::ContainsRegex("worker w1 \\(session 1\\) lost with [12] assignments open"));
  // A loss is not an attempt: every instance reports one.
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run), "--task", "item"});
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  std::vector<std::string> rows = Lines(tasks.out);
  ASSERT_EQ(rows.size(), 31u) << tasks.out;
  for (size_t i = 1; i < rows.size(); ++i) {
    std::vector<std::string> cols = absl::StrSplit(rows[i], ' ', absl::SkipEmpty());
    EXPECT_EQ(cols[1], "done") << rows[i];
    EXPECT_EQ(cols[4], "1") << rows[i];
  }
  EXPECT_THAT(Workers(), ::testing::ElementsAre(HasSubstr("w2")));
}

TEST_F(WorkerTest, ErrorRulesJudgeRemoteResultsAsLocalOnes) {
  StartListeningDaemon();
  StartWorker("w1", 4);
  ASSERT_TRUE(WaitWorkers(1));
  CommandResult run = Ctl({"run", kData + "/remote_rules.flow.yaml", "--plain", "-p", "dir=" + ws_}, "", 60s);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_EQ(Ctl({"cat", "data/ok1.jsonl.zst"}).out, "{\"id\":\"ok1\",\"worker\":\"w1\"}\n");
  EXPECT_EQ(Ctl({"cat", "data/flaky.jsonl.zst"}).out, "{\"id\":\"flaky\",\"worker\":\"w1\"}\n");
  EXPECT_EQ(ReadAll(ws_ + "/flaky.count"), "2\n");
  EXPECT_THAT(run.out, ::testing::ContainsRegex("retry +fetch\\(.*id=flaky\\) +attempt 1 of 3 failed, retrying in .*: exit code 75: HTTP 503"));
  // Suppressed by the stderr rule and by the timeout rule: .err files, no
  // outputs.
  EXPECT_FALSE(FileExists(ws_ + "/data/gone.jsonl.zst"));
  EXPECT_THAT(ReadAll(ws_ + "/data/gone.err"), HasSubstr("exit code 3: TranscriptsDisabled: gone"));
  EXPECT_FALSE(FileExists(ws_ + "/data/slow.jsonl.zst"));
  EXPECT_THAT(ReadAll(ws_ + "/data/slow.err"), HasSubstr("timeout after 1s"));
  EXPECT_THAT(run.out, HasSubstr("fetch                       4        2        0        0          2        0"));
}

// A remote instance's stderr reaches `asflowctl logs -f` as the command
// writes it (the worker sends it in output chunks), over TCP with a token
// as from another host, and its tail is stored as a local one's.
TEST_F(WorkerTest, RemoteInstancesStderrIsFollowedLiveAndKept) {
  StartListeningDaemon();
  StartWorker("w1", 4);
  ASSERT_TRUE(WaitWorkers(1));
  const int64_t run = DetachPath(kData + "/remote_noisy.flow.yaml", {"dir=" + ws_});
  Launch follow;
  follow = MakeLaunch({kCtl, "--server", server_, "--token-file", default_token_, "logs", absl::StrCat(run), "-f"}, ws_);
  const pid_t pid = SpawnProcess(follow);
  children_.push_back(pid);
  std::string out;
  ASSERT_TRUE(WaitFor(
      [&] {
        out = ReadAll(follow.stdout_path);
        return absl::StrContains(out, "talk(i=1) | 1: waiting\n") && absl::StrContains(out, "talk(i=2) | 2: waiting\n");
      },
      20s))
      << out << ReadAll(follow.stderr_path);
  EXPECT_THAT(out, Not(HasSubstr("done"))) << "both still wait: these lines came live";
  WriteFileOrDie(ws_ + "/go.1", "");
  WriteFileOrDie(ws_ + "/go.2", "");
  EXPECT_EQ(WaitChild(pid, 20s), 0) << ReadAll(follow.stderr_path);
  EXPECT_THAT(ReadAll(follow.stdout_path), HasSubstr("talk(i=2) | 2: done\n"));
  CommandResult logs = Ctl({"logs", absl::StrCat(run), "talk", "i=1"});
  ASSERT_EQ(logs.exit_code, 0) << logs.err;
  EXPECT_EQ(logs.out, "1: waiting\n1: done\n");
}

TEST_F(WorkerTest, InstanceLostThreeTimesFails) {
  StartListeningDaemon();
  std::string marker_env;
  std::string marker = NewMarker(&marker_env);
  int64_t run = SubmitRemote({"n=1", "pause=60", "marker=" + marker});
  for (int loss = 1; loss <= 3; ++loss) {
    std::string name = absl::StrCat("w", loss);
    pid_t pid = StartWorker(name, 1);
    ASSERT_TRUE(WaitFor([&] { return Lines(ReadAll(ws_ + "/starts.log")).size() == static_cast<size_t>(loss); }, 20s))
        << "instance not started on " << name;
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    EXPECT_EQ(WaitChild(pid, 5s), 128 + SIGKILL);
  }
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 30s);
  EXPECT_EQ(watch.exit_code, 1) << watch.out << watch.err;
  EXPECT_THAT(watch.out, ::testing::ContainsRegex(
                             "error: item\\(.*\\): lost 3 times, last: worker w3 \\([^)]*\\) lost: its stream broke"));
  CommandResult tasks = Ctl({"tasks", absl::StrCat(run), "--task", "item"});
  EXPECT_THAT(tasks.out, ::testing::ContainsRegex("\n1 +failed .* lost 3 times, last: worker w3 "));
  EXPECT_FALSE(FileExists(ws_ + "/data/1.txt"));
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
}

TEST_F(WorkerTest, StalledWorkerLosesItsLeaseAndItsInstancesMoveOn) {
  StartListeningDaemon({"--worker-lease", "1.5"});
  pid_t w1 = StartWorker("w1", 2);
  ASSERT_TRUE(WaitWorkers(1));
  // Each instance takes long enough (scaled: under TSan the test is slower
  // to see the starts and stop w1) that w1 finishes none before it stalls.
  int64_t run = SubmitRemote({"n=6", "lines=3", absl::StrCat("pause=", ScaledSeconds(0.5))});
  ASSERT_TRUE(WaitFor([&] { return Lines(ReadAll(ws_ + "/starts.log")).size() >= 2; }, 20s));
  // The network of w1 "stalls": the process stops answering, its TCP
  // connection stays up.
  ASSERT_EQ(kill(w1, SIGSTOP), 0);
  StartWorker("w2", 2);
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  std::string log = DaemonLog();
  EXPECT_THAT(log, ::testing::ContainsRegex("worker w1 \\(session 1\\): nothing received for 1\\.[5-9]"));
  EXPECT_THAT(log, ::testing::ContainsRegex("worker w1 \\(session 1\\) lost with 2 assignments open"));
  std::map<std::string, int> per_worker = CheckOutputs(6, 3);
  EXPECT_EQ(per_worker["w2"], 6) << "w1's instances must have been run again by w2";
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());

  // Woken up, w1 finds its session gone and joins again as a new one.
  ASSERT_EQ(kill(w1, SIGCONT), 0);
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<std::string> rows = Workers();
        return rows.size() == 2 && std::regex_search(rows[1], std::regex("^3 +w1 "));
      },
      15s))
      << ReadAll(WorkerLog("w1"));
  EXPECT_THAT(ReadAll(WorkerLog("w1")), HasSubstr("session ended"));
}

// Issue 12, defect 6: the documented 256 KiB limit on a worker's output
// chunk was not enforced (a 15 MB chunk was written). A worker speaking the
// protocol by hand sends one: its instance fails naming the worker, the
// instance and the limit, nothing is written, the daemon cancels the
// assignment, and the session and the daemon go on serving.
TEST_F(WorkerTest, OversizedOutputChunkFailsItsInstanceAndTheDaemonKeepsServing) {
  // This worker sends no heartbeat: the lease (10 s by default) must outlast
  // the 15 MB message's transfer, which takes seconds under TSan.
  StartListeningDaemon({"--worker-lease", absl::StrCat(ScaledSeconds(10))});
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(32 << 20);
  auto channel = grpc::CreateCustomChannel(server_, grpc::InsecureChannelCredentials(), args);
  auto stub = v1::WorkerService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer worker-test-token");
  auto stream = stub->Connect(&ctx);
  v1::WorkerMessage hello;
  hello.mutable_hello()->add_pools("remote");
  hello.mutable_hello()->set_slots(1);
  hello.mutable_hello()->set_name("big");
  ASSERT_TRUE(stream->Write(hello));
  v1::DaemonMessage in;
  ASSERT_TRUE(stream->Read(&in));
  ASSERT_TRUE(in.has_welcome());
  int64_t run = SubmitRemote({"n=1"});
  do {
    ASSERT_TRUE(stream->Read(&in));
  } while (!in.has_assign());
  const int64_t id = in.assign().id();
  v1::WorkerMessage chunk;
  chunk.mutable_output()->set_id(id);
  chunk.mutable_output()->set_data(std::string(15 << 20, 'x'));
  ASSERT_TRUE(stream->Write(chunk));
  do {
    ASSERT_TRUE(stream->Read(&in));
  } while (!in.has_cancel());
  EXPECT_EQ(in.cancel().id(), id);
  v1::WorkerMessage result;
  result.mutable_result()->set_id(id);
  result.mutable_result()->set_cancelled(true);
  result.mutable_result()->set_exit_code(-1);
  result.mutable_result()->set_term_signal(SIGTERM);
  result.mutable_result()->set_stdout_bytes(15 << 20);
  ASSERT_TRUE(stream->Write(result));

  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 30s);
  EXPECT_EQ(watch.exit_code, 1) << watch.out << watch.err;
  const std::string label = "item(i=1)";  // a label is the instance's bindings
  EXPECT_THAT(watch.out, HasSubstr(absl::StrCat("error: ", label, ": worker big sent an output chunk of 15728640 "
                                                "bytes for ", label, "; at most 262144 are allowed")));
  EXPECT_FALSE(FileExists(ws_ + "/data/1.txt"));
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
  // Still connected, and the daemon still serves.
  std::vector<std::string> rows = Workers();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0], ::testing::ContainsRegex("^1 +big "));
  EXPECT_EQ(Ctl({"daemon", "status"}).exit_code, 0);
  stream->WritesDone();
  ctx.TryCancel();
  (void)stream->Finish();
}

TEST_F(WorkerTest, WrongOrMissingWorkerTokenIsRefused) {
  WriteFileOrDie(tmp_.Join("client-token"), "client-secret\n");
  WriteFileOrDie(tmp_.Join("worker-token"), "worker-secret\n");
  StartListeningDaemon({"--token-file", tmp_.Join("client-token"), "--worker-token-file",
                        tmp_.Join("worker-token")});
  for (const std::vector<std::string>& auth :
       {std::vector<std::string>{"--token-file", tmp_.Join("client-token")}, std::vector<std::string>{}}) {
    std::string name = auth.empty() ? "none" : "client";
    pid_t pid = StartWorker(name, 1, auth);
    EXPECT_EQ(WaitChild(pid, 10s), 2) << ReadAll(WorkerLog(name));
    EXPECT_EQ(ReadAll(WorkerLog(name)),
              absl::StrCat("asflow-worker: asflowd at ", server_,
                           " refused this worker: missing or wrong token (--token-file)\n"));
  }
  EXPECT_THAT(Workers(), ::testing::IsEmpty());
  StartWorker("good", 1, {"--token-file", tmp_.Join("worker-token")});
  EXPECT_TRUE(WaitWorkers(1));
  int64_t run = SubmitRemote({"n=3"});
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_EQ(CheckOutputs(3, 5)["good"], 3);
}

TEST_F(WorkerTest, TlsWorkerJoinsAndPlaintextWorkerCannot) {
  if (!HaveOpenSsl()) GTEST_SKIP() << "openssl is not installed (apt-get install openssl)";
  MakeCertificates();
  StartDaemon({"--listen", "127.0.0.1:0", "--tls-cert", tmp_.Join("server.pem"), "--tls-key",
               tmp_.Join("server.key"), "--tls-client-ca", tmp_.Join("ca.pem")});
  server_ = absl::StrCat("localhost:", TcpPort());
  StartWorker("plain", 1);
  StartWorker("nocert", 1, {"--tls-ca", tmp_.Join("ca.pem")});
  StartWorker("tls", 2, {"--tls-ca", tmp_.Join("ca.pem"), "--tls-cert", tmp_.Join("client.pem"), "--tls-key",
                         tmp_.Join("client.key")});
  ASSERT_TRUE(WaitWorkers(1));
  int64_t run = SubmitRemote({"n=4", "ext=txt"});
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_EQ(CheckOutputs(4, 5)["tls"], 4);
  // The others never got in; they keep trying and say why.
  std::vector<std::string> rows = Workers();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_THAT(rows[0], HasSubstr(" tls "));
  EXPECT_THAT(ReadAll(WorkerLog("plain")), HasSubstr("cannot join " + server_));
  EXPECT_THAT(ReadAll(WorkerLog("nocert")), HasSubstr("cannot join " + server_));
}

TEST_F(WorkerTest, DrainFinishesRunningInstancesAndTheRestWait) {
  StartListeningDaemon();
  pid_t w1 = StartWorker("w1", 2);
  ASSERT_TRUE(WaitWorkers(1));
  Launch watch_launch;
  int64_t run = SubmitRemote({"n=5", "lines=2", "pause=1"});
  pid_t watcher = SpawnCtl({"watch", absl::StrCat(run), "--plain"}, &watch_launch);
  ASSERT_TRUE(WaitFor([&] { return Lines(ReadAll(ws_ + "/starts.log")).size() >= 2; }, 20s));
  ASSERT_EQ(kill(w1, SIGTERM), 0);
  // It finishes the two it runs (about a second), then leaves cleanly.
  EXPECT_EQ(WaitChild(w1, 10s), 0) << ReadAll(WorkerLog("w1"));
  EXPECT_THAT(DaemonLog(), HasSubstr("worker w1 (session 1) is draining"));
  EXPECT_THAT(DaemonLog(), HasSubstr("worker w1 (session 1) left: the worker closed its stream"));
  EXPECT_THAT(DaemonLog(), Not(HasSubstr("lost")));
  EXPECT_EQ(Lines(ReadAll(ws_ + "/starts.log")).size(), 2u);
  EXPECT_EQ(CountLines(ws_ + "/slots.log").size() > 0, true);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(watch_launch.stdout_path).find("waiting    item: no worker connected to pool 'remote'") != std::string::npos; }, 5s))
      << ReadAll(watch_launch.stdout_path);
  StartWorker("w2", 2);
  EXPECT_EQ(WaitChild(watcher, 30s), 0) << ReadAll(watch_launch.stdout_path);
  std::map<std::string, int> per_worker = CheckOutputs(5, 2);
  EXPECT_EQ(per_worker["w1"], 2);
  EXPECT_EQ(per_worker["w2"], 3);
}

TEST_F(WorkerTest, LiveViewSaysWhenNoWorkerServesThePool) {
  if (!HaveTmux()) GTEST_SKIP() << "tmux is not installed";
  StartListeningDaemon();
  std::string tmux = StartTmux({kCtl, "--socket", socket_, "run", Flow("remote"), "-p", "n=3", "-p", "dir=" + ws_});
  std::string screen;
  ASSERT_TRUE(WaitForScreen(
      tmux, [](const std::string& s) { return absl::StrContains(s, "item: 3 queued, none running: no worker connected to pool 'remote'"); },
      10s, &screen))
      << screen;
  StartWorker("w1", 2);
  ASSERT_TRUE(WaitForScreen(tmux, [](const std::string& s) { return absl::StrContains(s, "exited with"); }, 30s, &screen))
      << screen;
  EXPECT_THAT(screen, HasSubstr("run 1 succeeded"));
  EXPECT_THAT(screen, HasSubstr("exited with 0"));
  EXPECT_THAT(screen, Not(HasSubstr("no worker connected")));
}

TEST_F(WorkerTest, LargeOutputStreamsFromTheWorkerIntoZstd) {
  StartListeningDaemon();
  StartWorker("w1", 1);
  ASSERT_TRUE(WaitWorkers(1));
  // 300,000 lines (about 5 MB) per instance, into .zst on the daemon side.
  // Followed from the submission (an attached run watches from the run's
  // first event): a `watch` started after a detached submit may come after
  // the instances finished (under TSan it did) and see only the summary.
  CommandResult watch = Ctl({"run", Flow("remote"), "-p", "n=2", "-p", "lines=300000", "-p", "pause=0", "-p",
                             "ext=txt.zst", "-p", "dir=" + ws_, "--plain"},
                            "", 120s);
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  for (int i = 1; i <= 2; ++i) {
    std::string path = absl::StrCat(ws_, "/data/", i, ".txt.zst");
    CommandResult cat = Ctl({"cat", path}, "", 60s);
    ASSERT_EQ(cat.exit_code, 0) << cat.err;
    EXPECT_EQ(cat.out.size(), Expected(i, 300000, "w1").size());
    EXPECT_TRUE(cat.out == Expected(i, 300000, "w1")) << "content differs for " << path;
  }
  EXPECT_THAT(watch.out, ::testing::ContainsRegex("done +item\\(i=1\\) +[0-9.]+s +300001 lines"));
}

// The daemon and a worker on different addresses: the worker in its own
// network namespace, joined to the daemon's by a veth pair.
TEST_F(WorkerTest, WorkerInAnotherNetworkNamespace) {
  std::string ns = absl::StrCat("asflow-t", getpid());
  std::string host_if = absl::StrCat("afh", getpid() % 100000);
  std::string ns_if = absl::StrCat("afn", getpid() % 100000);
  auto ip = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/env");
    args.insert(args.begin() + 1, "ip");
    return RunProcess(MakeLaunch(args, tmp_.path()), 10s);
  };
  CommandResult added = ip({"netns", "add", ns});
  if (added.exit_code != 0) {
    GTEST_SKIP() << "cannot create a network namespace here (needs root and iproute2): " << added.err;
  }
  struct Cleanup {
    std::function<void()> fn;
    ~Cleanup() { fn(); }
  } cleanup{[&] {
    ip({"link", "del", host_if});
    ip({"netns", "del", ns});
  }};
  for (const std::vector<std::string>& cmd : std::vector<std::vector<std::string>>{
           {"link", "add", host_if, "type", "veth", "peer", "name", ns_if},
           {"link", "set", ns_if, "netns", ns},
           {"addr", "add", "10.213.7.1/24", "dev", host_if},
           {"link", "set", host_if, "up"},
           {"-n", ns, "addr", "add", "10.213.7.2/24", "dev", ns_if},
           {"-n", ns, "link", "set", ns_if, "up"},
           {"-n", ns, "link", "set", "lo", "up"}}) {
    CommandResult r = ip(cmd);
    if (r.exit_code != 0) GTEST_SKIP() << "cannot set up a veth pair here: ip " << absl::StrJoin(cmd, " ") << ": " << r.err;
  }
  StartDaemon({"--listen", "10.213.7.1:0", "--insecure"});
  server_ = absl::StrCat("10.213.7.1:", TcpPort());
  StartWorker("far", 2, {}, {"/usr/bin/env", "ip", "netns", "exec", ns});
  ASSERT_TRUE(WaitWorkers(1)) << ReadAll(WorkerLog("far"));
  EXPECT_THAT(Workers()[0], HasSubstr("10.213.7.2"));  // the peer address the daemon saw
  int64_t run = SubmitRemote({"n=6"});
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, "", 60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  EXPECT_EQ(CheckOutputs(6, 5)["far"], 6);
}

}  // namespace
}  // namespace asflow::testing
