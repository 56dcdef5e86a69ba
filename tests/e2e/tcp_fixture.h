// E2eTest plus what the TCP suites need: the port a daemon started with
// --listen HOST:0 picked, asflowctl over TCP, and a CA with server and
// client certificates made by openssl in the test.
#ifndef ASFLOW_TESTS_E2E_TCP_FIXTURE_H_
#define ASFLOW_TESTS_E2E_TCP_FIXTURE_H_

#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/e2e/e2e_fixture.h"

namespace asflow::testing {

class TcpE2eTest : public E2eTest {
 protected:
  // The TCP port the last started daemon logged ("listening on tcp H:P").
  int TcpPort() {
    int port = 0;
    std::string log = tmp_.Join(absl::StrCat("daemon/asflowd.", daemon_starts_, ".log"));
    EXPECT_TRUE(WaitFor(
        [&] {
          std::smatch m;
          std::string text = ReadAll(log);
          static const std::regex re("listening on tcp [0-9.]+:([0-9]+)");
          return std::regex_search(text, m, re) && absl::SimpleAtoi(m[1].str(), &port);
        },
        5s))
        << ReadAll(log);
    return port;
  }

  // asflowctl ARGS over TCP (no --socket), run in the workspace.
  CommandResult Remote(std::vector<std::string> args) {
    args.insert(args.begin(), kCtl);
    return RunProcess(MakeLaunch(args, ws_), 30s);
  }

  // Runs openssl; fails the test if it fails.
  void OpenSsl(std::vector<std::string> args) {
    args.insert(args.begin(), {"/usr/bin/env", "openssl"});
    CommandResult r = RunProcess(MakeLaunch(args, tmp_.path()), 60s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // A CA and a certificate signed by it for CN (with SANs localhost and
  // 127.0.0.1): tmp/NAME.pem and tmp/NAME.key.
  void MakeCertificates() {
    OpenSsl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_.Join("ca.key"), "-out",
             tmp_.Join("ca.pem"), "-days", "1", "-subj", "/CN=asflow-test-ca"});
    WriteFileOrDie(tmp_.Join("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
    for (const std::string name : {"server", "client"}) {
      OpenSsl({"req", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp_.Join(name + ".key"), "-out",
               tmp_.Join(name + ".csr"), "-subj", "/CN=" + name});
      OpenSsl({"x509", "-req", "-in", tmp_.Join(name + ".csr"), "-CA", tmp_.Join("ca.pem"), "-CAkey",
               tmp_.Join("ca.key"), "-CAcreateserial", "-out", tmp_.Join(name + ".pem"), "-days", "1",
               "-extfile", tmp_.Join("ext")});
    }
  }

  bool HaveOpenSsl() {
    return RunProcess(MakeLaunch({"/usr/bin/env", "openssl", "version"}, tmp_.path()), 10s).exit_code == 0;
  }
};

}  // namespace asflow::testing

#endif  // ASFLOW_TESTS_E2E_TCP_FIXTURE_H_
