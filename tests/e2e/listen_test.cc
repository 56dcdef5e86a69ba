// End-to-end tests of asflowd's TCP listener: who may be served how
// (loopback or TLS or --insecure), bearer tokens, TLS and mutual TLS with
// certificates made by openssl in the test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/tcp_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;

using ListenTest = TcpE2eTest;

TEST_F(ListenTest, NonLoopbackWithoutTlsIsRefused) {
  CommandResult r = RunProcess(MakeLaunch({kDaemon, "--socket", socket_, "--state", state_, "--allow-root",
                                           home_, "--listen", "0.0.0.0:0"},
                                          tmp_.path()),
                               10s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "asflowd: --listen 0.0.0.0:0 is not a loopback address: anyone on the network could submit "
            "commands. Give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or --insecure "
            "to serve plaintext anyway\n");
  EXPECT_FALSE(FileExists(socket_));
}

// Issue 12, defect 1: a loopback listener without a token let any local
// user run commands as the daemon's user.
TEST_F(ListenTest, LoopbackListenerWithoutTokenOrClientCertificateIsRefused) {
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{}, std::vector<std::string>{"--worker-token-file", tmp_.Join("wt")}}) {
    WriteFileOrDie(tmp_.Join("wt"), "worker-only\n");
    std::vector<std::string> argv = {kDaemon, "--socket", socket_, "--state", state_, "--allow-root",
                                     home_,   "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    CommandResult r = RunProcess(MakeLaunch(argv, tmp_.path()), 10s);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err,
              "asflowd: --listen 127.0.0.1:0: TCP callers must prove who they are, even on loopback (any "
              "local user can connect to a loopback port). Give --token-file (and optionally "
              "--worker-token-file) or mutual TLS (--tls-cert, --tls-key, --tls-client-ca), or --insecure "
              "to let anyone who can connect run commands as this user\n");
    EXPECT_FALSE(FileExists(socket_));
  }
}

TEST_F(ListenTest, InsecureLoopbackListenerServesAndWarnsLoudly) {
  StartDaemon({"--listen", "127.0.0.1:0", "--insecure"});
  std::string server = absl::StrCat("127.0.0.1:", TcpPort());
  CommandResult r = Remote({"--server", server, "runs"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(ReadAll(tmp_.Join(absl::StrCat("daemon/asflowd.", daemon_starts_, ".log"))),
              HasSubstr("[warning] INSECURE: --listen 127.0.0.1:0 accepts clients and workers without a token "
                        "or client certificate (--insecure): anyone who can connect can run commands as "
                        "this user"));
}

TEST_F(ListenTest, TokenIsRequiredOnTcpButNotOnTheSocket) {
  WriteFileOrDie(tmp_.Join("token"), "s3cret-token\n");
  WriteFileOrDie(tmp_.Join("wrong"), "s3cret-tokeN\n");
  StartDaemon({"--listen", "127.0.0.1:0", "--token-file", tmp_.Join("token")});
  std::string server = absl::StrCat("127.0.0.1:", TcpPort());

  CommandResult ok = Remote({"--server", server, "--token-file", tmp_.Join("token"), "run", Flow("fanout"),
                             "--plain", "-p", "n=3"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("run 1 succeeded in "));
  EXPECT_EQ(ReadFileOrDie(ws_ + "/data/playlist.jsonl").size() > 0, true);

  for (const std::vector<std::string>& auth :
       {std::vector<std::string>{"--token-file", tmp_.Join("wrong")}, std::vector<std::string>{}}) {
    std::vector<std::string> args = {"--server", server};
    args.insert(args.end(), auth.begin(), auth.end());
    args.push_back("runs");
    CommandResult refused = Remote(args);
    EXPECT_EQ(refused.exit_code, 3) << refused.out;
    EXPECT_EQ(refused.err, "asflowctl: asflowd refused the call: missing or wrong token (--token-file)\n");
    EXPECT_EQ(refused.out, "");
  }
  CommandResult local = Ctl({"runs"});
  EXPECT_EQ(local.exit_code, 0) << local.err;
  EXPECT_THAT(local.out, HasSubstr("\n1      succeeded  fanout"));
}

TEST_F(ListenTest, TlsServesAndPlaintextIsRefused) {
  if (!HaveOpenSsl()) GTEST_SKIP() << "openssl is not installed (apt-get install openssl)";
  MakeCertificates();
  WriteFileOrDie(tmp_.Join("token"), "tls-token\n");
  StartDaemon({"--listen", "127.0.0.1:0", "--tls-cert", tmp_.Join("server.pem"), "--tls-key",
               tmp_.Join("server.key"), "--token-file", tmp_.Join("token")});
  std::string server = absl::StrCat("localhost:", TcpPort());
  CommandResult ok = Remote({"--server", server, "--tls-ca", tmp_.Join("ca.pem"), "--token-file",
                             tmp_.Join("token"), "run", Flow("fanout"), "--plain", "-p", "n=2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("run 1 succeeded in "));
  CommandResult plain = Remote({"--server", server, "--token-file", tmp_.Join("token"), "runs"});
  EXPECT_EQ(plain.exit_code, 3);
  EXPECT_EQ(plain.err, absl::StrCat("asflowctl: cannot reach asflowd at ", server, "\n"));
}

TEST_F(ListenTest, MutualTlsNeedsAClientCertificate) {
  if (!HaveOpenSsl()) GTEST_SKIP() << "openssl is not installed (apt-get install openssl)";
  MakeCertificates();
  StartDaemon({"--listen", "127.0.0.1:0", "--tls-cert", tmp_.Join("server.pem"), "--tls-key",
               tmp_.Join("server.key"), "--tls-client-ca", tmp_.Join("ca.pem")});
  std::string server = absl::StrCat("localhost:", TcpPort());
  CommandResult without = Remote({"--server", server, "--tls-ca", tmp_.Join("ca.pem"), "runs"});
  EXPECT_EQ(without.exit_code, 3) << without.out;
  CommandResult with = Remote({"--server", server, "--tls-ca", tmp_.Join("ca.pem"), "--tls-cert",
                               tmp_.Join("client.pem"), "--tls-key", tmp_.Join("client.key"), "runs"});
  EXPECT_EQ(with.exit_code, 0) << with.err;
  EXPECT_THAT(with.out, HasSubstr("RUN    STATE"));
}

}  // namespace
}  // namespace asflow::testing
