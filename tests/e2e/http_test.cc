// End-to-end tests of asflowd's HTTP listener (--http): who may be served
// (every route refuses a missing or wrong token: walked over the server's
// own route table), TLS and mutual TLS, the token prompt's cookie, and the
// JSON API and event stream against what asflowctl says, over real
// sockets with cpp-httplib's client.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <regex>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "server/http_routes.h"
#include "tests/e2e/tcp_fixture.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

class HttpTest : public TcpE2eTest {
 protected:
  // A TLS client whose handshake the server refused may write into a
  // closed socket (OpenSSL writes without MSG_NOSIGNAL): an error, not a
  // signal that ends the test (asflowd ignores SIGPIPE the same way).
  static void SetUpTestSuite() {
    TcpE2eTest::SetUpTestSuite();
    signal(SIGPIPE, SIG_IGN);
  }

  void SetUp() override {
    TcpE2eTest::SetUp();
    WriteFileOrDie(tmp_.Join("token"), "s3cret-token\n");
    std::filesystem::copy(std::string(ASFLOW_TEST_DATA_DIR) + "/web/scripts", ws_ + "/scripts",
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
  }

  // The HTTP port the last started daemon logged ("serving http on H:P").
  int HttpPort() {
    int port = 0;
    std::string log = tmp_.Join(absl::StrCat("daemon/asflowd.", daemon_starts_, ".log"));
    EXPECT_TRUE(WaitFor(
        [&] {
          std::smatch m;
          std::string text = ReadAll(log);
          static const std::regex re("serving https? on [0-9.]+:([0-9]+)");
          return std::regex_search(text, m, re) && absl::SimpleAtoi(m[1].str(), &port);
        },
        5s))
        << ReadAll(log);
    return port;
  }

  void StartHttp(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--http", "127.0.0.1:0", "--token-file", tmp_.Join("token")};
    args.insert(args.end(), extra.begin(), extra.end());
    StartDaemon(args);
    port_ = HttpPort();
  }

  httplib::Client Client() {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_connection_timeout(Scaled(5s));
    cli.set_read_timeout(Scaled(10s));
    return cli;
  }
  httplib::Headers Bearer(const std::string& token = "s3cret-token") {
    return {{"Authorization", "Bearer " + token}};
  }

  // GET `path` with the token; the body parsed as JSON (fails the test on
  // another status).
  Json GetJson(const std::string& path) {
    auto res = Client().Get(path.c_str(), Bearer());
    EXPECT_TRUE(res) << path;
    if (!res) return Json();
    EXPECT_EQ(res->status, 200) << path << ": " << res->body;
    return Json::parse(res->body, nullptr, false);
  }

  // Runs the dashboard's test flow to its end (--keep-going) and returns
  // asflowctl's output.
  std::string RunDash(const std::string& n) {
    CommandResult r = Ctl({"run", std::string(ASFLOW_TEST_DATA_DIR) + "/web/dash.flow.yaml", "--plain",
                           "--keep-going", "-p", "n=" + n, "-p", "sleep=0"});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;  // id 3 fails
    return r.out;
  }

  int port_ = 0;
};

// Every route of the table, with a missing token, a wrong one (header and
// cookie), answers 401 and nothing else: a route added to the table is
// covered here without a change to this test.
TEST_F(HttpTest, EveryRouteRefusesAMissingOrWrongToken) {
  StartHttp();
  const std::vector<std::pair<std::string, httplib::Headers>> refused = {
      {"no token", {}},
      {"wrong bearer", Bearer("s3cret-tokeN")},
      {"empty bearer", Bearer("")},
      {"wrong cookie", {{"Cookie", "asflow_token=s3cret-tokeN"}, {"X-Asflow-Request", "1"}}},
      {"a browser without the cookie", {{"Accept", "text/html"}}},
  };
  ASSERT_GE(HttpRoutes().size(), 14u);  // the throttle routes too
  for (const HttpRoute& route : HttpRoutes()) {
    for (const auto& [what, headers] : refused) {
      httplib::Client cli = Client();
      auto res = std::string(route.method) == "POST" ? cli.Post(route.example, headers, "token=wrong", "application/x-www-form-urlencoded")
                                                     : cli.Get(route.example, headers);
      ASSERT_TRUE(res) << route.method << " " << route.example;
      EXPECT_EQ(res->status, 401) << route.method << " " << route.example << " with " << what << ": " << res->body;
    }
  }
  // A path that is no route is refused the same way (not told apart).
  auto unknown = Client().Get("/no/such/path");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);
  // The right token opens every route (404 for the example run, which does
  // not exist; never 401).
  for (const HttpRoute& route : HttpRoutes()) {
    if (route.id == RouteId::kEvents || route.id == RouteId::kLogin) continue;  // below
    httplib::Client cli = Client();
    auto res = std::string(route.method) == "POST" ? cli.Post(route.example, Bearer(), "", "text/plain")
                                                   : cli.Get(route.example, Bearer());
    ASSERT_TRUE(res) << route.example;
    EXPECT_NE(res->status, 401) << route.method << " " << route.example << ": " << res->body;
  }
}

TEST_F(HttpTest, ABrowserGetsTheTokenPromptAndThenACookie) {
  StartHttp();
  auto prompt = Client().Get("/runs/1", {{"Accept", "text/html"}});
  ASSERT_TRUE(prompt);
  EXPECT_EQ(prompt->status, 401);
  EXPECT_THAT(prompt->body, HasSubstr("<form method=\"post\" action=\"/login\">"));
  EXPECT_THAT(prompt->body, HasSubstr("name=\"next\" value=\"/runs/1\""));

  auto wrong = Client().Post("/login", "token=nope&next=%2Fruns%2F1", "application/x-www-form-urlencoded");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_THAT(wrong->body, HasSubstr("That is not the token"));
  EXPECT_FALSE(wrong->has_header("Set-Cookie"));

  auto right = Client().Post("/login", "token=s3cret-token&next=%2Fruns%2F1", "application/x-www-form-urlencoded");
  ASSERT_TRUE(right);
  EXPECT_EQ(right->status, 303);
  EXPECT_EQ(right->get_header_value("Location"), "/runs/1");
  EXPECT_EQ(right->get_header_value("Set-Cookie"), "asflow_token=s3cret-token; Path=/; HttpOnly; SameSite=Strict");
  // An open redirect is not possible.
  auto away = Client().Post("/login", "token=s3cret-token&next=%2F%2Fevil.example", "application/x-www-form-urlencoded");
  ASSERT_TRUE(away);
  EXPECT_EQ(away->get_header_value("Location"), "/");

  httplib::Headers cookie = {{"Cookie", "asflow_token=s3cret-token"}};
  auto page = Client().Get("/runs/1", cookie);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->body, HasSubstr("<script type=\"module\" src=\"/static/app.js\"></script>"));
  auto script = Client().Get("/static/app.js", cookie);
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);
  EXPECT_EQ(script->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  // The cookie alone does not let another site's form cancel a run: a
  // change needs the X-Asflow-Request header, which only a script of the
  // page can send.
  auto forged = Client().Post("/api/v1/runs/1:cancel", cookie, "", "text/plain");
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 401);
  cookie.emplace("X-Asflow-Request", "1");
  auto allowed = Client().Post("/api/v1/runs/1:cancel", cookie, "", "text/plain");
  ASSERT_TRUE(allowed);
  EXPECT_EQ(allowed->status, 404) << allowed->body;  // no run 1: past the check
  EXPECT_EQ(Json::parse(allowed->body)["error"]["message"], "run 1 not found");
}

TEST_F(HttpTest, TcpWithoutATokenOrTlsIsRefused) {
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--http", "127.0.0.1:0"},
            "asflowd: --http 127.0.0.1:0: TCP callers must prove who they are, even on loopback (any local user "
            "can connect to a loopback port). Give --token-file or mutual TLS (--tls-cert, --tls-key, "
            "--tls-client-ca), or --insecure to let anyone who can connect see and cancel runs\n"},
           {{"--http", "0.0.0.0:0", "--token-file", tmp_.Join("token")},
            "asflowd: --http 0.0.0.0:0 is not a loopback address: anyone on the network could submit commands. "
            "Give --tls-cert and --tls-key (and --tls-client-ca for mutual TLS), or --insecure to serve "
            "plaintext anyway\n"},
           {{"--http", "localhost"}, "asflowd: --http localhost: expected HOST:PORT\n"},
       }) {
    std::vector<std::string> argv = {kDaemon, "--socket", socket_, "--state", state_, "--allow-root", home_};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunProcess(MakeLaunch(argv, tmp_.path()), 10s);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_FALSE(FileExists(socket_));
  }
}

TEST_F(HttpTest, InsecureServesWithoutATokenAndSaysSoLoudly) {
  StartDaemon({"--http", "127.0.0.1:0", "--insecure"});
  port_ = HttpPort();
  auto res = Client().Get("/api/v1/runs");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(ReadAll(tmp_.Join("daemon/asflowd.1.log")),
              HasSubstr("INSECURE: --http 127.0.0.1:0 accepts callers without a token or client certificate "
                        "(--insecure): anyone who can connect can see and cancel runs"));
}

TEST_F(HttpTest, TlsAndMutualTls) {
  if (!HaveOpenSsl()) GTEST_SKIP() << "openssl is not installed (apt-get install openssl)";
  MakeCertificates();
  StartDaemon({"--http", "127.0.0.1:0", "--tls-cert", tmp_.Join("server.pem"), "--tls-key", tmp_.Join("server.key"),
               "--tls-client-ca", tmp_.Join("ca.pem")});
  port_ = HttpPort();
  // Plaintext gets nowhere.
  auto plain = Client().Get("/api/v1/runs");
  EXPECT_FALSE(plain && plain->status == 200);
  // TLS without a client certificate: the handshake fails.
  httplib::SSLClient anonymous("localhost", port_);
  anonymous.set_ca_cert_path(tmp_.Join("ca.pem").c_str());
  anonymous.set_connection_timeout(5);
  anonymous.set_read_timeout(5);
  auto refused = anonymous.Get("/api/v1/runs");
  EXPECT_FALSE(refused && refused->status == 200);
  // With one: served, no token needed (mutual TLS is the proof).
  httplib::SSLClient client("localhost", port_, tmp_.Join("client.pem"), tmp_.Join("client.key"));
  client.set_ca_cert_path(tmp_.Join("ca.pem").c_str());
  client.enable_server_certificate_verification(true);
  client.set_connection_timeout(5);
  client.set_read_timeout(10);
  auto ok = client.Get("/api/v1/runs");
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "{\"runs\":[],\"nextPageToken\":\"\"}\n");
}

TEST_F(HttpTest, JsonApiAnswersWhatAsflowctlShows) {
  StartHttp();
  std::string out = RunDash("12");
  EXPECT_THAT(out, HasSubstr("error: fetch(id=3): exit code 1: RateLimited: the API refused id 3 (HTTP 429)"));

  Json runs = GetJson("/api/v1/runs");
  ASSERT_EQ(runs["runs"].size(), 1u) << runs.dump();
  const Json& run = runs["runs"][0];
  EXPECT_EQ(run["id"], "1");
  EXPECT_EQ(run["flow"], "dash");
  EXPECT_EQ(run["state"], "RUN_FAILED");
  EXPECT_EQ(run["workspace"], ws_);
  EXPECT_EQ(run["error"], "fetch(id=3): exit code 1: RateLimited: the API refused id 3 (HTTP 429)");
  // The same counts as asflowctl runs (TOTAL DONE CACHED FAILED).
  CommandResult table = Ctl({"runs"});
  int64_t total = 0, done = 0, failed = 0, skipped = 0;
  for (const Json& t : run["tasks"]) {
    int64_t v;
    ASSERT_TRUE(absl::SimpleAtoi(t["total"].get<std::string>(), &v));
    total += v;
    ASSERT_TRUE(absl::SimpleAtoi(t["done"].get<std::string>(), &v));
    done += v;
    ASSERT_TRUE(absl::SimpleAtoi(t["failed"].get<std::string>(), &v));
    failed += v;
    ASSERT_TRUE(absl::SimpleAtoi(t["skipped"].get<std::string>(), &v));
    skipped += v;
  }
  EXPECT_EQ(total, 13);
  EXPECT_EQ(done, 11);  // the list, and 10 of 12 fetches (3 failed, 10 skipped)
  EXPECT_EQ(failed, 1);
  EXPECT_EQ(skipped, 1);
  EXPECT_THAT(table.out, HasSubstr(absl::StrCat("1      failed     dash")));
  // TOTAL DONE CACHED SKIPPED SUPPRESSED FAILED CANCELLED WORKSPACE
  EXPECT_THAT(table.out, HasSubstr(absl::StrFormat("%8d %8d %8d %8d %10d %8d %9d  %s", total, done, 0, skipped, 0,
                                                   failed, 0, ws_)));

  // Filters and pages.
  EXPECT_EQ(GetJson("/api/v1/runs?state=failed")["runs"].size(), 1u);
  EXPECT_EQ(GetJson("/api/v1/runs?state=succeeded,cancelled")["runs"].size(), 0u);
  EXPECT_EQ(GetJson("/api/v1/runs?flow=other")["runs"].size(), 0u);
  Json page = GetJson("/api/v1/runs?limit=1");
  EXPECT_EQ(page["nextPageToken"], "1");
  EXPECT_EQ(GetJson("/api/v1/runs?limit=1&page_token=1")["runs"].size(), 0u);

  Json problems = GetJson("/api/v1/runs/1/tasks?state=failed,skipped");
  ASSERT_EQ(problems["instances"].size(), 2u) << problems.dump();
  EXPECT_EQ(problems["instances"][0]["params"]["id"], "3");
  EXPECT_EQ(problems["instances"][0]["state"], "FAILED");
  // The whole stored text (the stderr tail), not just the first line.
  EXPECT_EQ(problems["instances"][0]["error"],
            "exit code 1: RateLimited: the API refused id 3 (HTTP 429)\nRateLimited: the API refused id 3 (HTTP 429)");
  EXPECT_EQ(problems["instances"][1]["params"]["id"], "10");
  EXPECT_EQ(problems["instances"][1]["state"], "SKIPPED");

  Json one = GetJson("/api/v1/runs/1/tasks?task=fetch&page_size=2");
  ASSERT_EQ(one["instances"].size(), 2u);
  Json seq = one["instances"][0]["seq"];
  Json details = GetJson(absl::StrCat("/api/v1/runs/1/instances/", seq.get<std::string>()));
  EXPECT_EQ(details["instance"]["output"], "data/fetch/1.jsonl.zst");
  EXPECT_EQ(details["workspace"], ws_);
  EXPECT_EQ(details["outputExists"], true);
  EXPECT_EQ(details["outputSize"], std::to_string(std::filesystem::file_size(ws_ + "/data/fetch/1.jsonl.zst")));
  EXPECT_EQ(Decompress("zstd", ws_ + "/data/fetch/1.jsonl.zst"),
            "{\"id\": 1, \"n\": 1}\n{\"id\": 1, \"n\": 2}\n{\"id\": 1, \"n\": 3}\n");

  // Bad input is a clear 400 / 404.
  auto bad = Client().Get("/api/v1/runs/1/tasks?state=exploded", Bearer());
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_EQ(Json::parse(bad->body)["error"]["message"],
            "state=exploded: not an instance state (queued, running, done, cached, skipped, suppressed, failed, "
            "cancelled, reset)");
  auto missing = Client().Get("/api/v1/runs/99", Bearer());
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(Json::parse(missing->body)["error"]["message"], "run 99 not found");

  Json workers = GetJson("/api/v1/workers");
  EXPECT_EQ(workers, Json::parse("{\"workers\":[]}"));
}

TEST_F(HttpTest, CancelFromTheApiIsWhatAsflowctlSees) {
  StartHttp();
  int64_t id = DetachPath(std::string(ASFLOW_TEST_DATA_DIR) + "/web/dash.flow.yaml", {"n=50", "sleep=5"});
  ASSERT_TRUE(WaitFor([&] { return GetJson(absl::StrCat("/api/v1/runs/", id))["tasks"].size() == 2; }, 10s));
  auto res = Client().Post(absl::StrCat("/api/v1/runs/", id, ":cancel").c_str(), Bearer(), "", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(res->body, "{\"state\":\"RUN_CANCELLED\"}\n");
  CommandResult runs = Ctl({"runs"});
  EXPECT_THAT(runs.out, HasSubstr(absl::StrCat(id, "      cancelled  dash")));
}

TEST_F(HttpTest, PauseAndResumeFromTheApiAreWhatAsflowctlSees) {
  StartHttp({"--throttle", "yt: {limit: 2, rate: auto}"});
  Json list = GetJson("/api/v1/throttle");
  ASSERT_EQ(list["keys"].size(), 1u) << list.dump();
  EXPECT_EQ(list["keys"][0]["name"], "yt");
  EXPECT_EQ(list["keys"][0]["limit"], 2);
  EXPECT_EQ(list["keys"][0]["state"], "open");
  EXPECT_EQ(list["keys"][0]["definedBy"], "asflowd");
  EXPECT_EQ(list["keys"][0]["effectiveRate"], 5.0);

  auto paused = Client().Post("/api/v1/throttle/yt:pause?for=10m", Bearer(), "", "text/plain");
  ASSERT_TRUE(paused);
  ASSERT_EQ(paused->status, 200) << paused->body;
  Json status = Json::parse(paused->body)["status"];
  EXPECT_EQ(status["state"], "paused");
  EXPECT_NE(status["pausedUntilMs"], "0");
  EXPECT_THAT(Ctl({"throttle"}).out, HasSubstr("paused until"));

  auto resumed = Client().Post("/api/v1/throttle/yt:resume", Bearer(), "", "text/plain");
  ASSERT_TRUE(resumed);
  ASSERT_EQ(resumed->status, 200) << resumed->body;
  EXPECT_EQ(Json::parse(resumed->body)["wasPaused"], true);
  EXPECT_THAT(Ctl({"throttle"}).out, Not(HasSubstr("paused")));

  // A task of a flow not running now, until resumed; asflowctl resumes it.
  auto task = Client().Post("/api/v1/throttle/dash.fetch:pause", Bearer(), "", "text/plain");
  ASSERT_TRUE(task);
  EXPECT_EQ(task->status, 200) << task->body;
  EXPECT_THAT(Ctl({"resume", "dash.fetch"}).out, HasSubstr("dash.fetch"));

  auto unknown = Client().Post("/api/v1/throttle/nope:pause", Bearer(), "", "text/plain");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_THAT(unknown->body, HasSubstr("no throttle key or task named 'nope' (keys: yt"));
  auto bad = Client().Post("/api/v1/throttle/yt:pause?for=soon", Bearer(), "", "text/plain");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, HasSubstr("for=soon: expected a duration"));
}

TEST_F(HttpTest, EventStreamEndsWithTheRunAndResumesFromLastEventId) {
  StartHttp();
  RunDash("4");
  // A finished run's stream: its stored state, then the end.
  httplib::Client cli = Client();
  std::string body;
  auto res = cli.Get("/api/v1/events?run_id=1", Bearer(), [&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_THAT(body, HasSubstr("retry: 2000\n\nid: "));
  EXPECT_THAT(body, HasSubstr("\"snapshot\":{\"runs\":[{\"id\":\"1\",\"flow\":\"dash\""));
  EXPECT_TRUE(absl::EndsWith(body, "event: end\ndata: {}\n\n")) << body;

  // A live run: read until its first instance event, hang up, and come
  // back with Last-Event-ID: the stream goes on right after that event
  // (no snapshot), to the end. The run is held so that this holds at any
  // speed (a slow reader under TSan once took the whole run in the message
  // with its first instance event, whose id was then the run's last: the
  // case further below): both tasks are paused; the list is resumed once
  // the stream's snapshot is in (so an instance event comes after it), the
  // fetches only after the hang-up (so the run cannot end before).
  std::filesystem::remove_all(ws_ + "/data");
  auto throttle = [&](const std::string& action) {
    auto res = Client().Post(absl::StrCat("/api/v1/throttle/", action).c_str(), Bearer(), "", "text/plain");
    ASSERT_TRUE(res) << action;
    EXPECT_EQ(res->status, 200) << action << ": " << res->body;
  };
  throttle("dash.list:pause");
  throttle("dash.fetch:pause");
  int64_t id = DetachPath(std::string(ASFLOW_TEST_DATA_DIR) + "/web/dash.flow.yaml", {"n=8", "sleep=0.2"});
  body.clear();
  std::string path = absl::StrCat("/api/v1/events?run_id=", id);
  httplib::Client first = Client();
  bool list_resumed = false;
  // The stream sends a keep-alive every 10 s: a give-up time of our own.
  const auto give_up = std::chrono::steady_clock::now() + Scaled(30s);
  first.Get(path.c_str(), Bearer(), [&](const char* data, size_t n) {
    body.append(data, n);
    if (!list_resumed && absl::StrContains(body, "\"snapshot\"")) {
      list_resumed = true;
      throttle("dash.list:resume");
    }
    // Up to the first instance event after the snapshot.
    return !absl::StrContains(body, "\"kind\":") && std::chrono::steady_clock::now() < give_up;
  });
  ASSERT_THAT(body, HasSubstr("\"kind\":"));
  ASSERT_THAT(body, Not(HasSubstr("event: end"))) << "the run ended with its fetches paused";
  std::string last_id;
  static const std::regex kId("id: ([0-9]+)\n");
  for (std::sregex_iterator it(body.begin(), body.end(), kId), e; it != e; ++it) {
    last_id = (*it)[1].str();
  }
  ASSERT_FALSE(last_id.empty()) << body;
  int64_t seq = 0;
  ASSERT_TRUE(absl::SimpleAtoi(last_id, &seq));
  throttle("dash.fetch:resume");
  httplib::Headers resume = Bearer();
  resume.emplace("Last-Event-ID", last_id);
  body.clear();
  // A new connection, as a reconnecting EventSource makes (the hung-up one
  // may still be draining on the daemon's side).
  httplib::Client again = Client();
  res = again.Get(path.c_str(), resume, [&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  ASSERT_TRUE(res) << httplib::to_string(res.error()) << " after Last-Event-ID " << last_id << ": " << body;
  EXPECT_THAT(body, HasSubstr(absl::StrCat("retry: 2000\n\nid: ")));
  EXPECT_THAT(body, HasSubstr(absl::StrCat("data: [{\"seq\":\"", seq + 1, "\"")));
  EXPECT_THAT(body, ::testing::Not(HasSubstr("\"snapshot\"")));
  EXPECT_THAT(body, HasSubstr("\"kind\":\"FINISHED\""));
  EXPECT_THAT(body, HasSubstr("\"state\":\"RUN_FAILED\""));
  EXPECT_TRUE(absl::EndsWith(body, "event: end\ndata: {}\n\n")) << body;
  // Coming back after the run's last event: the run's final snapshot and
  // the end, at once.
  std::string final_id;
  for (std::sregex_iterator it(body.begin(), body.end(), kId), e; it != e; ++it) final_id = (*it)[1].str();
  httplib::Headers after_end = Bearer();
  after_end.emplace("Last-Event-ID", final_id);
  body.clear();
  httplib::Client third = Client();
  res = third.Get(path.c_str(), after_end, [&](const char* data, size_t n) {
    body.append(data, n);
    return true;
  });
  ASSERT_TRUE(res) << httplib::to_string(res.error()) << ": " << body;
  EXPECT_TRUE(absl::StartsWith(body, "retry: 2000\n\nid: ")) << body;
  EXPECT_THAT(body, HasSubstr("\"snapshot\":{\"runs\":[{\"id\":\"" + std::to_string(id) + "\""));
  EXPECT_THAT(body, HasSubstr("\"state\":\"RUN_FAILED\""));
  EXPECT_TRUE(absl::EndsWith(body, "event: end\ndata: {}\n\n")) << body;
  // The summary stream of the same (finished) run says the same in one go.
  body.clear();
  res = cli.Get(absl::StrCat("/api/v1/events?summary=1&run_id=", id).c_str(), Bearer(),
                [&](const char* data, size_t n) {
                  body.append(data, n);
                  return true;
                });
  ASSERT_TRUE(res);
  EXPECT_THAT(body, HasSubstr("\"state\":\"RUN_FAILED\""));
}

// A daemon that stops closes its streams without an "end" event, so a
// browser's EventSource comes back when the daemon does.
TEST_F(HttpTest, StreamsCloseWithoutEndWhenTheDaemonStops) {
  StartHttp();
  std::string body;
  std::atomic<bool> streaming{false};
  std::thread stopper([&] {
    WaitFor([&] { return streaming.load(); }, 10s);
    Ctl({"daemon", "stop"});
  });
  httplib::Client cli = Client();
  auto res = cli.Get("/api/v1/events", Bearer(), [&](const char* data, size_t n) {
    body.append(data, n);
    if (body.find("data: ") != std::string::npos) streaming = true;
    return true;
  });
  stopper.join();
  EXPECT_THAT(body, HasSubstr("retry: 2000\n\nid: "));
  EXPECT_THAT(body, HasSubstr("\"snapshot\""));
  EXPECT_THAT(body, ::testing::Not(HasSubstr("event: end")));
  EXPECT_EQ(WaitChild(daemon_pid_, 10s), 0);
}

}  // namespace
}  // namespace asflow::testing
