// The seed tutorial (examples/youtube) end to end in offline mode: the real
// asflowd and asflowctl, the example's flows and scripts as shipped, and
// offline/fixture_server.py standing in for YouTube on loopback (ten videos:
// vid03 and vid07 with transcripts disabled, vid05 malformed, vid08 failing
// once with 503).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <algorithm>
#include <map>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const std::string kExample = ASFLOW_TEST_DATA_DIR "/../../examples/youtube";

// The fixture's videos: vid01 ... vid10.
std::vector<std::string> Videos() {
  std::vector<std::string> ids;
  for (int i = 1; i <= 10; ++i) ids.push_back(absl::StrFormat("vid%02d", i));
  return ids;
}

// What the fixture serves as the playlist, as yt-dlp prints it.
std::string PlaylistContent() {
  std::string out;
  int i = 0;
  for (const std::string &v : Videos()) {
    absl::StrAppendFormat(&out,
                          "{\"id\": \"%s\", \"title\": \"Video %s\", \"duration\": %d, "
                          "\"url\": \"https://www.youtube.com/watch?v=%s\"}\n",
                          v, v, 60 + i * 7, v);
    ++i;
  }
  return out;
}

// What scripts/transcript.py prints for the fixture's transcript of `id`.
std::string TranscriptContent(const std::string &id) {
  std::string out;
  for (int i = 0; i < 25; ++i) {
    absl::StrAppendFormat(
        &out,
        "{\"video_id\": \"%s\", \"start\": %.1f, \"duration\": 4.0, \"text\": \"%s line %d\"}\n",
        id, i * 4.0, id, i);
  }
  return out;
}

int Occurrences(const std::string &text, const std::string &needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++n;
  return n;
}

std::string SummaryRow(const std::string &task, int total, int done, int cached, int skipped,
                       int suppressed, int failed, int cancelled) {
  return absl::StrFormat("\n  %-24s%5d%9d%9d%9d%11d%9d%10d\n", task, total, done, cached, skipped,
                         suppressed, failed, cancelled);
}

class YoutubeExampleTest : public E2eTest {
 protected:
  void SetUp() override {
    E2eTest::SetUp();
    // Where the fixture's environment (Env()) finds programs.
    for (const char *dir : {"/usr/local/bin", "/usr/bin", "/bin"}) {
      if (access((std::string(dir) + "/python3").c_str(), X_OK) == 0) python_ = true;
    }
    if (!python_) {
      GTEST_SKIP() << "python3 is not installed (not in /usr/local/bin, /usr/bin or /bin); the "
                      "offline YouTube fixture and scripts/transcript.py need it";
    }
    yt_ = ws_ + "/youtube";
    fs::copy(kExample, yt_, fs::copy_options::recursive);
    StartDaemon({"--kill-grace", "1"});
    StartFixtureServer();
  }

  // Starts offline/fixture_server.py on a free port and reads its URL from
  // the first line it prints. TearDown kills it by pid (children_).
  void StartFixtureServer() {
    std::vector<std::string> argv = {"/usr/bin/env", "python3", yt_ + "/offline/fixture_server.py"};
    for (const std::string &arg : FixtureArgs()) argv.push_back(arg);
    Launch launch = MakeLaunch(argv, yt_);
    pid_t pid = SpawnProcess(launch);
    ASSERT_GT(pid, 0);
    children_.push_back(pid);
    ASSERT_TRUE(WaitFor([&] { return absl::StrContains(ReadAll(launch.stdout_path), "\n"); }, 10s))
        << "fixture_server.py printed no URL: " << ReadAll(launch.stderr_path);
    url_ = Lines(ReadAll(launch.stdout_path))[0];
    ASSERT_TRUE(absl::StartsWith(url_, "http://127.0.0.1:")) << url_;
  }

  // The fixture's GET /stats: how often each transcript was requested.
  std::map<std::string, int> Stats() {
    CommandResult r = RunProcess(
        MakeLaunch({"/usr/bin/env", "python3", "-c",
                    "import sys, urllib.request; "
                    "sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
                    url_ + "/stats"},
                   yt_),
        10s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::map<std::string, int> stats;
    std::string body(absl::StripSuffix(absl::StripPrefix(r.out, "{"), "}"));
    for (absl::string_view entry : absl::StrSplit(body, ", ", absl::SkipEmpty())) {
      std::vector<std::string> kv = absl::StrSplit(entry, ": ");
      int n = 0;
      EXPECT_TRUE(kv.size() == 2 && absl::SimpleAtoi(kv[1], &n)) << r.out;
      if (kv.size() == 2)
        stats[std::string(absl::StripPrefix(absl::StripSuffix(kv[0], "\""), "\""))] = n;
    }
    return stats;
  }

  // `stats` with every video's count set to `n` except those in `except`.
  static std::map<std::string, int> AllBut(int n, std::map<std::string, int> except) {
    std::map<std::string, int> stats;
    for (const std::string &v : Videos()) stats[v] = except.count(v) ? except[v] : n;
    return stats;
  }

  CommandResult Transcripts() {
    return Ctl({"run", "transcripts.flow.yaml", "--plain", "-p", "api=" + url_}, yt_, 60s);
  }

  std::string Progress(const std::string &state, const std::string &id) {
    std::string padded = state;
    padded.resize(10, ' ');
    return "\n  " + padded + " transcript(video_id=" + id + ")";
  }

  // Extra fixture_server.py flags (the throttle tests').
  virtual std::vector<std::string> FixtureArgs() { return {}; }

  bool python_ = false;
  std::string yt_;
  std::string url_;
};

TEST_F(YoutubeExampleTest, TranscriptsFlowImportsThePlaylistAndOneCommandDoesBoth) {
  const std::string path = "PATH=" + yt_ + "/offline/bin:/usr/local/bin:/usr/bin:/bin";
  // The dry run finds the offline yt-dlp before anything is fetched, and
  // cannot count the transcripts before the playlist exists.
  CommandResult dry = CtlWithEnv({"run", "--dry-run", "transcripts.flow.yaml"}, {path}, yt_, 60s);
  ASSERT_EQ(dry.exit_code, 0) << dry.out << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("\nplaylist.playlist        1        0          0       0  yt-dlp -> " + yt_ +
                                 "/offline/bin/yt-dlp\n"));
  EXPECT_THAT(dry.out, HasSubstr("\ntranscript               ?        ?          ?       ?  waits on playlist.playlist; "
                                 "python3 -> "));
  EXPECT_FALSE(FileExists(yt_ + "/data/playlist.jsonl.zst"));

  CommandResult both = CtlWithEnv(
      {"run", "transcripts.flow.yaml", "--plain", "-p", "channel=" + url_ + "/@fixture", "-p", "api=" + url_},
      {path}, yt_, 60s);
  ASSERT_EQ(both.exit_code, 0) << both.out << both.err;
  EXPECT_THAT(both.out, HasSubstr(SummaryRow("transcript", 10, 7, 0, 1, 2, 0, 0)));
  EXPECT_THAT(both.out, HasSubstr(SummaryRow("playlist.playlist", 1, 1, 0, 0, 0, 0, 0)));
  EXPECT_EQ(Decompress("zstd", yt_ + "/data/playlist.jsonl.zst"), PlaylistContent());

  // The playlist flow on its own finds its instance made: one identity.
  CommandResult own = CtlWithEnv({"run", "playlist.flow.yaml", "--plain", "-p", "channel=" + url_ + "/@fixture"},
                                 {path}, yt_, 60s);
  ASSERT_EQ(own.exit_code, 0) << own.out << own.err;
  EXPECT_THAT(own.out, HasSubstr(SummaryRow("playlist", 1, 0, 1, 0, 0, 0, 0)));
}

TEST_F(YoutubeExampleTest, OfflineTutorial) {
  // Step 1: the playlist through the offline yt-dlp, found through the PATH
  // the client hands to the daemon.
  CommandResult playlist =
      CtlWithEnv({"run", "playlist.flow.yaml", "--plain", "-p", "channel=" + url_ + "/@fixture"},
                 {"PATH=" + yt_ + "/offline/bin:/usr/local/bin:/usr/bin:/bin"}, yt_, 60s);
  ASSERT_EQ(playlist.exit_code, 0) << playlist.out << playlist.err;
  EXPECT_THAT(playlist.out, HasSubstr(SummaryRow("playlist", 1, 1, 0, 0, 0, 0, 0)));
  std::string lines = Decompress("zstd", yt_ + "/data/playlist.jsonl.zst");
  EXPECT_EQ(Lines(lines).size(), 10u);
  EXPECT_EQ(lines, PlaylistContent());

  // Step 2, first run: 7 done, vid05 skipped, vid03 and vid07 suppressed,
  // vid08 retried once.
  CommandResult first = Transcripts();
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_THAT(first.out, HasSubstr("run 2 succeeded in "));
  EXPECT_THAT(first.out, HasSubstr(SummaryRow("transcript", 10, 7, 0, 1, 2, 0, 0)));
  EXPECT_THAT(first.out,
              HasSubstr(Progress("skipped", "vid05") + "  exit code 1: ParseError: vid05: "));
  for (const char *id : {"vid03", "vid07"}) {
    EXPECT_THAT(first.out, HasSubstr(Progress("suppressed", id) +
                                     "  exit code 3: TranscriptsDisabled: " + id + "\n"));
    std::string err = ReadAll(yt_ + "/data/transcripts/" + id + ".err");
    EXPECT_EQ(err, absl::StrCat("exit code 3: TranscriptsDisabled: ", id,
                                "\nTranscriptsDisabled: ", id, "\n"));
    EXPECT_FALSE(FileExists(yt_ + "/data/transcripts/" + id + ".jsonl.zst"));
  }
  // One retry of vid08, after 1 s + up to 500 ms of jitter.
  std::string retry = LineStartingWith(first.out, "  retry      transcript(video_id=vid08)");
  const std::string retry_prefix =
      "  retry      transcript(video_id=vid08)  attempt 1 of 3 failed, retrying in ";
  const std::string retry_suffix =
      "s: exit code 75: TransientError: HTTP 503 for " + url_ + "/transcript/vid08";
  ASSERT_TRUE(absl::StartsWith(retry, retry_prefix)) << first.out;
  EXPECT_TRUE(absl::EndsWith(retry, retry_suffix)) << retry;
  double delay = 0;
  EXPECT_TRUE(absl::SimpleAtod(
      retry.substr(retry_prefix.size(), retry.size() - retry_prefix.size() - retry_suffix.size()),
      &delay))
      << retry;
  EXPECT_GE(delay, 1.0) << retry;
  EXPECT_LE(delay, 1.5) << retry;
  EXPECT_EQ(Occurrences(first.out, "\n  retry "), 1) << first.out;
  EXPECT_EQ(Occurrences(first.out, "\n  start "), 11) << first.out;
  EXPECT_EQ(Stats(), AllBut(1, {{"vid08", 2}}));

  for (const std::string &id : Videos()) {
    std::string path = yt_ + "/data/transcripts/" + id + ".jsonl.zst";
    if (id == "vid03" || id == "vid05" || id == "vid07") {
      EXPECT_FALSE(FileExists(path)) << path;
      continue;
    }
    EXPECT_THAT(first.out, HasSubstr(Progress("done", id) + "  "));
    ASSERT_TRUE(FileExists(path)) << path;
    EXPECT_EQ(Decompress("zstd", path), TranscriptContent(id)) << path;
  }
  EXPECT_FALSE(FileExists(yt_ + "/data/transcripts/vid05.err"));

  CommandResult suppressed = Ctl({"tasks", "2", "--state", "suppressed"}, yt_);
  ASSERT_EQ(suppressed.exit_code, 0) << suppressed.err;
  std::vector<std::string> rows = TableRows(suppressed.out);
  ASSERT_EQ(rows.size(), 2u) << suppressed.out;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string id = i == 0 ? "vid03" : "vid07";
    EXPECT_THAT(rows[i], HasSubstr(" suppressed "));
    EXPECT_THAT(rows[i], HasSubstr(" transcript(video_id=" + id + ") "));
    EXPECT_TRUE(absl::EndsWith(rows[i], " exit code 3: TranscriptsDisabled: " + id)) << rows[i];
  }
  CommandResult show = Ctl({"show", "2", "transcript", "video_id=vid08"}, yt_);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("  state     done\n"));
  EXPECT_THAT(show.out, HasSubstr("  attempts  2\n"));

  // Second run: only the skipped vid05 is asked again.
  CommandResult second = Transcripts();
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_THAT(second.out, HasSubstr(SummaryRow("transcript", 10, 0, 9, 1, 0, 0, 0)));
  EXPECT_THAT(second.out, HasSubstr("\n  start      transcript(video_id=vid05)\n"));
  EXPECT_EQ(Occurrences(second.out, "\n  start "), 1) << second.out;
  EXPECT_EQ(Stats(), AllBut(1, {{"vid05", 2}, {"vid08", 2}}));

  // Reset the suppressed ones: the third run asks vid03 and vid07 again.
  CommandResult reset =
      Ctl({"reset", "--task", "transcripts.transcript", "--state", "suppressed"}, yt_);
  ASSERT_EQ(reset.exit_code, 0) << reset.out << reset.err;
  EXPECT_EQ(reset.out, "reset 2 instances; the next run runs them again\n");
  EXPECT_FALSE(FileExists(yt_ + "/data/transcripts/vid03.err"));
  EXPECT_FALSE(FileExists(yt_ + "/data/transcripts/vid07.err"));

  CommandResult third = Transcripts();
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  EXPECT_THAT(third.out, HasSubstr(SummaryRow("transcript", 10, 0, 7, 1, 2, 0, 0)));
  EXPECT_EQ(Stats(), AllBut(1, {{"vid03", 2}, {"vid05", 3}, {"vid07", 2}, {"vid08", 2}}));
  EXPECT_TRUE(FileExists(yt_ + "/data/transcripts/vid03.err"));
  EXPECT_TRUE(FileExists(yt_ + "/data/transcripts/vid07.err"));
}

// The fixture told to throttle: the first 3 transcript requests (of a
// 10-minute window: of the test) get 429 with Retry-After: 2; each answer
// takes 200 ms; every request is logged.
class ThrottledYoutubeTest : public YoutubeExampleTest {
 protected:
  std::vector<std::string> FixtureArgs() override {
    return {"--throttle", "3", "--window", "600", "--retry-after", "2", "--delay", "0.2", "--log", Log()};
  }
  std::string Log() { return tmp_.Join("fixture-requests.log"); }

  struct Request {
    double arrived = 0;
    double answered = 0;
    int status = 0;
    int concurrent = 0;  // transcript requests in flight when it arrived
    std::string path;
  };
  // The fixture's log, in arrival order.
  std::vector<Request> Requests() {
    std::vector<Request> out;
    for (const std::string &line : Lines(ReadAll(Log()))) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      Request r;
      EXPECT_TRUE(f.size() == 5 && absl::SimpleAtod(f[0], &r.arrived) && absl::SimpleAtod(f[1], &r.answered) &&
                  absl::SimpleAtoi(f[2], &r.status) && absl::SimpleAtoi(f[3], &r.concurrent))
          << line;
      if (f.size() == 5) r.path = f[4];
      out.push_back(r);
    }
    std::sort(out.begin(), out.end(), [](const Request &a, const Request &b) { return a.arrived < b.arrived; });
    return out;
  }
  static int Count(const std::vector<Request> &requests, int status) {
    return static_cast<int>(
        std::count_if(requests.begin(), requests.end(), [&](const Request &r) { return r.status == status; }));
  }
  // Copies tests/testdata/throttle/NAME.flow.yaml next to the example.
  void CopyFlow(const std::string &name) {
    fs::copy_file(kThrottleData + "/" + name + ".flow.yaml", yt_ + "/" + name + ".flow.yaml");
  }
  // The ATTEMPTS column of every row of `asflowctl tasks RUN`.
  std::vector<std::string> AttemptsAndStates(int64_t run) {
    CommandResult r = Ctl({"tasks", absl::StrCat(run)}, yt_);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    for (const std::string &row : TableRows(r.out)) {
      std::vector<std::string> f = absl::StrSplit(row, ' ', absl::SkipEmpty());
      if (f.size() > 6) out.push_back(absl::StrCat(f[1], " ", f[4], " ", f[5]));  // state attempts instance
    }
    return out;
  }
  const std::string kThrottleData = ASFLOW_TEST_DATA_DIR "/throttle";
};

TEST_F(ThrottledYoutubeTest, TheTutorialCoolsDownOn429AndLosesNothing) {
  CommandResult playlist =
      CtlWithEnv({"run", "playlist.flow.yaml", "--plain", "-p", "channel=" + url_ + "/@fixture"},
                 {"PATH=" + yt_ + "/offline/bin:/usr/local/bin:/usr/bin:/bin"}, yt_, 60s);
  ASSERT_EQ(playlist.exit_code, 0) << playlist.out << playlist.err;
  CommandResult first = Transcripts();
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  // The same outcome as without throttling: every transcript there is.
  EXPECT_THAT(first.out, HasSubstr(SummaryRow("transcript", 10, 7, 0, 1, 2, 0, 0)));
  EXPECT_THAT(first.out, HasSubstr("  waiting    transcript: youtube cooling down until "));
  EXPECT_THAT(first.out, HasSubstr(" (429 from transcript(video_id=vid"));
  for (const std::string &id : Videos()) {
    if (id == "vid03" || id == "vid05" || id == "vid07") continue;
    std::string path = yt_ + "/data/transcripts/" + id + ".jsonl.zst";
    ASSERT_TRUE(FileExists(path)) << path;
    EXPECT_EQ(Decompress("zstd", path), TranscriptContent(id)) << path;
  }
  std::vector<Request> requests = Requests();
  EXPECT_EQ(Count(requests, 429), 3);
  // A 429 is not an attempt: only vid08's 503 counted a second one. (The
  // imported playlist task is in the run too: cached, never attempted.)
  for (const std::string &row : AttemptsAndStates(2)) {
    EXPECT_THAT(row, ::testing::AnyOf(::testing::MatchesRegex("(done|skipped|suppressed) 1 .*"),
                                      ::testing::MatchesRegex("done 2 transcript\\(video_id=vid08\\)"),
                                      ::testing::Eq("cached 0 playlist.playlist()")));
  }
  CommandResult keys = Ctl({"throttle"}, yt_);
  ASSERT_EQ(keys.exit_code, 0) << keys.err;
  EXPECT_THAT(keys.out, HasSubstr("\nyoutube                      4         0 2/s              0  flow transcripts "
                                  "open\n"));
}

TEST_F(ThrottledYoutubeTest, AKeyOfOneWaitsOutEveryRetryAfter) {
  CopyFlow("serial");
  CommandResult run = Ctl({"run", "serial.flow.yaml", "--plain", "-p", "api=" + url_}, yt_, 60s);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  for (const char *id : {"vid01", "vid02", "vid04", "vid06"}) {
    EXPECT_EQ(ReadAll(yt_ + "/out/serial/" + id + ".jsonl"), TranscriptContent(id)) << id;
  }
  std::vector<Request> requests = Requests();
  ASSERT_EQ(requests.size(), 7u);  // three 429s, then the four transcripts
  EXPECT_EQ(Count(requests, 429), 3);
  EXPECT_EQ(Count(requests, 200), 4);
  for (size_t i = 0; i + 1 < requests.size(); ++i) {
    EXPECT_EQ(requests[i].concurrent, 1) << requests[i].path;
    // No request while the key cools down: the next comes 2 s (the
    // Retry-After) or more after a 429 was answered.
    if (requests[i].status == 429) {
      EXPECT_GE(requests[i + 1].arrived - requests[i].answered, 2.0) << requests[i + 1].path;
    }
  }
  for (const std::string &row : AttemptsAndStates(1)) EXPECT_THAT(row, ::testing::StartsWith("done 1 fetch("));
}

TEST_F(ThrottledYoutubeTest, TwoFlowsSharingAKeyNeverPassItsLimitTogether) {
  CopyFlow("a");
  CopyFlow("b");
  std::vector<int64_t> runs;
  for (const char *flow : {"a.flow.yaml", "b.flow.yaml"}) {
    CommandResult r = Ctl({"run", flow, "--detach", "-p", "api=" + url_}, yt_);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    int64_t id = 0;
    ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(r.out), &id)) << r.out;
    runs.push_back(id);
  }
  for (int64_t run : runs) {
    CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"}, yt_, 60s);
    EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
    for (const std::string &row : AttemptsAndStates(run)) EXPECT_THAT(row, ::testing::StartsWith("done 1 fetch("));
  }
  std::vector<Request> requests = Requests();
  EXPECT_EQ(Count(requests, 429), 3);
  EXPECT_EQ(Count(requests, 200), 6);
  int most = 0;
  for (const Request &r : requests) most = std::max(most, r.concurrent);
  EXPECT_EQ(most, 2);  // yt {limit: 2}, for both flows together (each alone may run 8)
  for (const char *id : {"vid01", "vid02", "vid04"}) EXPECT_TRUE(FileExists(yt_ + "/out/a/" + id + ".jsonl"));
  for (const char *id : {"vid06", "vid09", "vid10"}) EXPECT_TRUE(FileExists(yt_ + "/out/b/" + id + ".jsonl"));
}

TEST_F(ThrottledYoutubeTest, APauseHoldsAcrossARestartUntilResumed) {
  CopyFlow("serial");
  CommandResult detached = Ctl({"run", "serial.flow.yaml", "--detach", "-p", "api=" + url_}, yt_);
  ASSERT_EQ(detached.exit_code, 0) << detached.err;
  CommandResult pause = Ctl({"pause", "yt"}, yt_);
  ASSERT_EQ(pause.exit_code, 0) << pause.err;
  EXPECT_EQ(pause.out, "yt paused: running instances finish, nothing new starts until asflowctl resume yt\n");
  const double paused_at = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  // A daemon killed and started again keeps the pause.
  KillDaemon();
  StartDaemon({"--kill-grace", "1"});
  CommandResult keys = Ctl({"throttle"}, yt_);
  ASSERT_EQ(keys.exit_code, 0) << keys.err;
  EXPECT_THAT(keys.out, ::testing::ContainsRegex("\nyt +1 +0 - +[1-4]  flow serial +paused\n")) << keys.out;
  std::this_thread::sleep_for(2s);
  const double resumed_at = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  CommandResult resume = Ctl({"resume", "yt"}, yt_);
  ASSERT_EQ(resume.exit_code, 0) << resume.err;
  EXPECT_EQ(resume.out, "yt resumed (open)\n");
  CommandResult watch = Ctl({"watch", "1", "--plain"}, yt_, 60s);
  EXPECT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  // Nothing asked while paused (but a request already on its way when the
  // pause came, within a second of it).
  for (const Request &r : Requests()) {
    EXPECT_FALSE(r.arrived > paused_at + 1.0 && r.arrived < resumed_at) << r.path << " at " << r.arrived;
  }
  for (const char *id : {"vid01", "vid02", "vid04", "vid06"}) {
    EXPECT_EQ(ReadAll(yt_ + "/out/serial/" + id + ".jsonl"), TranscriptContent(id)) << id;
  }
}

}  // namespace
}  // namespace asflow::testing
