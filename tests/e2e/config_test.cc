// End-to-end tests of what deployments rely on: --version on every binary,
// configuration files (asflowd.conf, the worker's, the per-user file of
// the auto-started daemon) with flags winning over them, and the `health`
// subcommand over the unix socket, TCP with a token, and (mutual) TLS.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/tcp_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

inline const std::string kWorker = ASFLOW_BINARY_DIR "/worker/asflow-worker";

class ConfigTest : public TcpE2eTest {
 protected:
  CommandResult Run(std::vector<std::string> argv, std::chrono::milliseconds timeout = 30s) {
    return RunProcess(MakeLaunch(std::move(argv), tmp_.path()), timeout);
  }
};

TEST_F(ConfigTest, EveryBinaryNamesItsVersionAndCommit) {
  for (const std::string& binary : {kDaemon, kCtl, kWorker}) {
    CommandResult r = Run({binary, "--version"});
    EXPECT_EQ(r.exit_code, 0) << binary << r.err;
    std::string name = binary.substr(binary.rfind('/') + 1);
    // The commit is git's (12 hex digits, "-dirty" for a modified tree) or
    // -DASFLOW_GIT_COMMIT's.
    EXPECT_THAT(r.out, MatchesRegex(name + " 0\\.2\\.0 \\(commit ([0-9a-f]{12}(-dirty)?|[^ ]+)\\)\n")) << binary;
  }
}

TEST_F(ConfigTest, DaemonTakesEveryFlagFromItsFileAndFlagsWin) {
  std::string outside = tmp_.Join("outside");
  std::filesystem::create_directories(outside + "/scripts");
  std::filesystem::copy(kData + "/scripts", outside + "/scripts", std::filesystem::copy_options::recursive);
  WriteFileOrDie(tmp_.Join("token"), "conf-token\n");
  WriteFileOrDie(tmp_.Join("asflowd.conf"),
                 absl::StrCat("# asflowd configuration\n", "socket = \"", socket_, "\"\n", "state = \"", state_,
                              "\"\n", "allow-root = [\"", outside, "\"]\n", "listen = \"127.0.0.1:0\"\n",
                              "token-file = \"", tmp_.Join("token"), "\"\n", "pool-size = 3\n",
                              "log-level = \"debug\"\n"));
  // --log-level on the command line wins over the file's "debug".
  std::string log = tmp_.Join("daemon/asflowd.1.log");
  daemon_starts_ = 1;
  Launch launch{{kDaemon, "--config", tmp_.Join("asflowd.conf"), "--log-level", "warn"}, Env(), tmp_.path(), log, log};
  daemon_pid_ = SpawnProcess(launch);
  children_.push_back(daemon_pid_);
  ASSERT_TRUE(WaitFor([&] { return Ctl({"daemon", "status"}, tmp_.path(), 5s).exit_code == 0; }, 10s))
      << ReadAll(log);
  // The allowed root came from the file: a workspace there is accepted.
  CommandResult ok = Ctl({"run", Flow("fanout"), "--plain", "-p", "n=2"}, outside);
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  CommandResult refused = Ctl({"run", Flow("fanout"), "--plain", "-p", "n=2"}, ws_);
  EXPECT_EQ(refused.exit_code, 2) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("start asflowd with --allow-root"));
  // --log-level warn: the info lines (version, listening) are not logged.
  EXPECT_THAT(ReadAll(log), Not(HasSubstr("asflowd listening")));
}

TEST_F(ConfigTest, UnknownKeyNamesTheFileAndTheKey) {
  WriteFileOrDie(tmp_.Join("bad.conf"), "pool-size = 3\nallow-roots = [\"/srv\"]\n");
  CommandResult r = Run({kDaemon, "--config", tmp_.Join("bad.conf"), "--socket", socket_, "--state", state_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err, absl::StrCat("asflowd: config file ", tmp_.Join("bad.conf"),
                                ": unknown key 'allow-roots' (keys are the long flag names; see asflowd --help)\n"));
  EXPECT_FALSE(FileExists(socket_));
}

TEST_F(ConfigTest, MissingConfigFileIsAnError) {
  CommandResult r = Run({kDaemon, "--config", tmp_.Join("nope.conf"), "--socket", socket_, "--state", state_});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.err, absl::StrCat("asflowd: config file ", tmp_.Join("nope.conf"), " was not readable (missing?)\n"));
}

TEST_F(ConfigTest, AutoStartedDaemonReadsTheUserConfig) {
  // Its allowed root (outside HOME) comes from ~/.config/asflow/asflowd.conf.
  std::string outside = tmp_.Join("outside");
  std::filesystem::create_directories(outside + "/scripts");
  std::filesystem::copy(kData + "/scripts", outside + "/scripts", std::filesystem::copy_options::recursive);
  std::filesystem::create_directories(home_ + "/.config/asflow");
  WriteFileOrDie(home_ + "/.config/asflow/asflowd.conf", absl::StrCat("allow-root = [\"", outside, "\"]\n"));
  CommandResult r = RunProcess(MakeLaunch({kCtl, "run", Flow("fanout"), "--plain", "-p", "n=2"}, outside), 30s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << ReadAll(DefaultStateDir() + "/asflowd.log");
  EXPECT_THAT(ReadAll(DefaultStateDir() + "/asflowd.log"),
              HasSubstr(", config " + home_ + "/.config/asflow/asflowd.conf"));
}

TEST_F(ConfigTest, HealthAnswersOnTheSocketAndFailsWithoutADaemon) {
  CommandResult down = Run({kDaemon, "health", "--socket", socket_, "--timeout", "0.5"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_EQ(down.err, absl::StrCat("asflowd health: unix:", socket_, ": no answer within 500ms\n"));
  StartDaemon();
  CommandResult up = Run({kDaemon, "health", "--socket", socket_});
  EXPECT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(up.out, absl::StrCat("asflowd health: SERVING (unix:", socket_, ")\n"));
  // The socket can come from the daemon's configuration file.
  WriteFileOrDie(tmp_.Join("asflowd.conf"), absl::StrCat("socket = \"", socket_, "\"\n"));
  CommandResult conf = Run({kDaemon, "--config", tmp_.Join("asflowd.conf"), "health"});
  EXPECT_EQ(conf.exit_code, 0) << conf.err;
  CommandResult unknown = Run({kDaemon, "health", "--socket", socket_, "--service", "no.Such"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, absl::StrCat("asflowd health: unix:", socket_,
                                      ": service 'no.Such' is unknown to the server\n"));
}

TEST_F(ConfigTest, HealthOverTcpWithTokenAndTls) {
  if (!HaveOpenSsl()) GTEST_SKIP() << "openssl is not installed (apt-get install openssl)";
  MakeCertificates();
  WriteFileOrDie(tmp_.Join("token"), "health-token\n");
  StartDaemon({"--listen", "127.0.0.1:0", "--tls-cert", tmp_.Join("server.pem"), "--tls-key",
               tmp_.Join("server.key"), "--tls-client-ca", tmp_.Join("ca.pem"), "--token-file", tmp_.Join("token")});
  std::string server = absl::StrCat("localhost:", TcpPort());
  CommandResult ok = Run({kDaemon, "health", "--server", server, "--tls-ca", tmp_.Join("ca.pem"), "--tls-cert",
                          tmp_.Join("client.pem"), "--tls-key", tmp_.Join("client.key"), "--token-file",
                          tmp_.Join("token")});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, absl::StrCat("asflowd health: SERVING (", server, ")\n"));
  // Mutual TLS: without a client certificate the handshake is refused.
  CommandResult no_cert = Run({kDaemon, "health", "--server", server, "--tls-ca", tmp_.Join("ca.pem"), "--timeout", "1"});
  EXPECT_EQ(no_cert.exit_code, 1) << no_cert.out;
  EXPECT_EQ(no_cert.out, "");
  // Plaintext against the TLS port gets no answer.
  CommandResult plain = Run({kDaemon, "health", "--server", server, "--timeout", "1"});
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_EQ(plain.err, absl::StrCat("asflowd health: ", server, ": no answer within 1s\n"));
  // A worker checks the daemon it is configured for, with its credentials,
  // all from its configuration file.
  WriteFileOrDie(tmp_.Join("worker.conf"),
                 absl::StrCat("server = \"", server, "\"\npool = \"crawl\"\ntls-ca = \"", tmp_.Join("ca.pem"),
                              "\"\ntls-cert = \"", tmp_.Join("client.pem"), "\"\ntls-key = \"", tmp_.Join("client.key"),
                              "\"\ntoken-file = \"", tmp_.Join("token"), "\"\n"));
  CommandResult worker = Run({kWorker, "--config", tmp_.Join("worker.conf"), "health"});
  EXPECT_EQ(worker.exit_code, 0) << worker.err;
  EXPECT_EQ(worker.out, absl::StrCat("asflow-worker health: SERVING (", server, ")\n"));
}

TEST_F(ConfigTest, WorkerTakesItsFlagsFromItsFile) {
  WriteFileOrDie(tmp_.Join("token"), "worker-token\n");
  StartDaemon({"--listen", "127.0.0.1:0", "--token-file", tmp_.Join("token")});
  std::string server = absl::StrCat("127.0.0.1:", TcpPort());
  WriteFileOrDie(tmp_.Join("worker.conf"),
                 absl::StrCat("server = \"", server, "\"\npool = \"crawl\"\nslots = 2\nname = \"from-conf\"\n",
                              "token-file = \"", tmp_.Join("token"), "\"\nscratch = \"", tmp_.Join("scratch"),
                              "\"\n"));
  Launch launch = MakeLaunch({kWorker, "--config", tmp_.Join("worker.conf"), "--slots", "5"}, tmp_.path());
  pid_t pid = SpawnProcess(launch);
  children_.push_back(pid);
  std::string row;
  EXPECT_TRUE(WaitFor(
      [&] {
        for (const std::string& line : Lines(Ctl({"workers"}).out)) {
          if (absl::StrContains(line, " from-conf ")) row = line;
        }
        return !row.empty();
      },
      10s))
      << ReadAll(launch.stderr_path);
  // Pool from the file, slots from the flag.
  EXPECT_THAT(row, MatchesRegex("[0-9]+ +from-conf +crawl +5 .*"));
  kill(pid, SIGTERM);
  EXPECT_EQ(WaitChild(pid, 10s), 0);
}

TEST_F(ConfigTest, WorkerWithoutPoolIsAUsageError) {
  CommandResult r = Run({kWorker, "--server", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "asflow-worker: --pool is required\nRun with --help for more information.\n");
}

}  // namespace
}  // namespace asflow::testing
