// End-to-end tests of directory outputs (`on: data/media/{i}/`): the
// command fills $ASFLOW_OUTPUT_DIR, the tree is committed whole, its
// existence caches the instance, a failure or a crash never leaves a
// partial directory under its final name. The real asflowd and asflowctl
// on a temporary socket.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

class DirOutputTest : public E2eTest {
 protected:
  std::string Dir(int i) const { return absl::StrCat(ws_, "/data/media/", i); }

  // Whether the directory of instance i is there, and whole.
  bool Complete(int i) const {
    return ReadAll(Dir(i) + "/video.bin") == absl::StrCat("video ", i, "\n") &&
           ReadAll(Dir(i) + "/sub/info.json") == absl::StrCat("{\"id\":\"", i, "\"}\n") &&
           FileExists(Dir(i) + "/complete");
  }

  // Entries below the workspace whose name marks a temporary.
  std::vector<std::string> Temporaries() const {
    std::vector<std::string> out;
    for (const auto& entry : fs::recursive_directory_iterator(ws_)) {
      const std::string name = entry.path().filename();
      if (absl::EndsWith(name, ".asflow-tmpdir") || absl::EndsWith(name, ".asflow-tmp")) out.push_back(entry.path());
    }
    return out;
  }

  // The final-named directories under data/media.
  std::set<std::string> FinalDirs() const {
    std::set<std::string> out;
    if (!fs::exists(ws_ + "/data/media")) return out;
    for (const auto& entry : fs::directory_iterator(ws_ + "/data/media")) {
      const std::string name = entry.path().filename();
      if (name[0] != '.') out.insert(name);
    }
    return out;
  }
};

TEST_F(DirOutputTest, DirectoryIsCommittedWholeAndCachedNextTime) {
  StartDaemon();
  CommandResult first = Ctl({"run", Flow("media"), "--plain"});
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  for (int i = 1; i <= 6; ++i) EXPECT_TRUE(Complete(i)) << Dir(i);
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());

  CommandResult second = Ctl({"run", Flow("media"), "--plain"});
  ASSERT_EQ(second.exit_code, 0) << second.out << second.err;
  EXPECT_THAT(second.out, HasSubstr("  fetch: 6 instances, 6 cached\n"));
  EXPECT_EQ(Lines(ReadAll(ws_ + "/counter.txt")).size(), 6u) << "a cached directory ran again";

  // Removing one directory runs that instance (and only it) again.
  fs::remove_all(Dir(4));
  CommandResult third = Ctl({"run", Flow("media"), "--plain"});
  ASSERT_EQ(third.exit_code, 0) << third.out << third.err;
  EXPECT_THAT(third.out, HasSubstr("  fetch: 6 instances, 5 cached\n"));
  EXPECT_TRUE(Complete(4));
  EXPECT_EQ(CountLines(ws_ + "/counter.txt")["4"], 2);
}

TEST_F(DirOutputTest, FailedCommandLeavesNoDirectoryBehind) {
  StartDaemon();
  CommandResult r = Ctl({"run", Flow("media"), "--plain", "--keep-going", "-p", "fail=2"});
  ASSERT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.out + r.err, HasSubstr("cannot fetch 2"));
  EXPECT_FALSE(fs::exists(Dir(2)));
  for (int i : {1, 3, 4, 5, 6}) EXPECT_TRUE(Complete(i)) << Dir(i);
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
}

TEST_F(DirOutputTest, RemotePoolAndLinesOfADirectoryAreRefusedAtSubmission) {
  StartDaemon();
  WriteFileOrDie(ws_ + "/remote_dir.flow.yaml",
                 "name: remote_dir\ntasks:\n  - name: fetch\n    on: data/media/\n    run: [true]\n    pool: crawl\n"
                 "  - name: read\n    for_each: {lines_of: fetch, as: i}\n    on: data/{i}.txt\n    run: [true]\n");
  CommandResult r = Ctl({"run", "remote_dir.flow.yaml"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.err, HasSubstr("tasks[0].on: a directory output is written by the daemon's own pool; pool 'crawl' "
                               "runs on remote workers, which cannot ship a directory yet"));
  EXPECT_THAT(r.err, HasSubstr("tasks[1].for_each.lines_of: task 'fetch' writes a directory ('data/media/'); "
                               "lines_of reads a file"));
}

// The crash-safety story: asflowd SIGKILLed while commands fill their
// temporaries. Every directory under a final name is whole; the restarted
// daemon removes the leftovers and finishes the rest.
TEST_F(DirOutputTest, DaemonKilledDuringFanOutLeavesNoPartialDirectory) {
  StartDaemon();
  std::string marker_env;
  const std::string marker = NewMarker(&marker_env);
  const int64_t run = Detach("media", {"n=12", "pause=0.3", "marker=" + marker});
  // Some committed, some in flight (their temporaries exist).
  ASSERT_TRUE(WaitFor([&] { return FinalDirs().size() >= 3 && !Temporaries().empty(); }, 30s))
      << FinalDirs().size() << " directories";
  KillDaemon();
  const std::set<std::string> before = FinalDirs();
  ASSERT_LT(before.size(), 12u) << "the run ended before the kill";
  for (const std::string& name : before) {
    EXPECT_TRUE(Complete(std::stoi(name))) << "partial directory under its final name: " << name;
  }

  StartDaemon();
  CommandResult watch = Ctl({"watch", absl::StrCat(run), "--plain"});
  ASSERT_EQ(watch.exit_code, 0) << watch.out << watch.err;
  for (int i = 1; i <= 12; ++i) EXPECT_TRUE(Complete(i)) << Dir(i);
  EXPECT_THAT(Temporaries(), ::testing::IsEmpty());
  std::map<std::string, int> counts = CountLines(ws_ + "/counter.txt");
  for (const std::string& name : before) EXPECT_EQ(counts[name], 1) << name << " was committed before the kill";
  EXPECT_THAT(ReadAll(tmp_.Join("daemon/asflowd.2.log")), ::testing::ContainsRegex("[1-9][0-9]* stale temporaries removed"));
}

}  // namespace
}  // namespace asflow::testing
