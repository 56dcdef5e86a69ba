// Flow authoring tools end to end (issue 15): imports, run --dry-run and
// check, --force and --only, through the real asflowd and asflowctl.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/test_util.h"

namespace asflow::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// One file per source, as the seed tutorial has them: the playlist, and the
// items that build on it through `imports`.
constexpr char kPlaylistFlow[] =
    "name: playlist\n"
    "params: {channel: c1}\n"
    "tasks:\n"
    "  - name: playlist\n"
    "    on: data/playlist.jsonl\n"
    "    run: [sh, -c, 'echo run >> playlist.calls; printf \"{{\\\"id\\\":\\\"a\\\"}}\\n{{\\\"id\\\":\\\"b\\\"}}\\n{{\\\"id\\\":\\\"$0\\\"}}\\n\"', "
    "\"{channel}\"]\n"
    "    limit: 1\n"
    "  - name: unused\n"
    "    on: data/unused.txt\n"
    "    run: [echo, never]\n";

constexpr char kItemsFlow[] =
    "name: items\n"
    "imports: [flows/playlist.flow.yaml]\n"
    "tasks:\n"
    "  - name: item\n"
    "    for_each: {lines_of: playlist.playlist, as: {id: id}}\n"
    "    on: data/items/{id}.txt\n"
    "    run: [echo, \"item {id}\"]\n";

class FlowToolsTest : public E2eTest {
 protected:
  void WriteFlows() {
    std::filesystem::create_directories(ws_ + "/flows");
    WriteFileOrDie(ws_ + "/flows/playlist.flow.yaml", kPlaylistFlow);
    WriteFileOrDie(ws_ + "/items.flow.yaml", kItemsFlow);
  }
  std::string Read(const std::string& rel) { return ReadFileOrDie(ws_ + "/" + rel); }
};

TEST_F(FlowToolsTest, ImportedTaskRunsOnceUnderItsOwnNameAndItsOutputIsShared) {
  WriteFlows();
  StartDaemon();
  CommandResult r = Ctl({"run", "--plain", "items.flow.yaml", "-p", "channel=zz"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("done       playlist.playlist()"));
  EXPECT_EQ(Read("data/playlist.jsonl"), "{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\":\"zz\"}\n");
  EXPECT_EQ(Read("data/items/zz.txt"), "item zz\n");
  EXPECT_EQ(Read("data/items/a.txt"), "item a\n");
  // Only the task the flow reaches: not the playlist flow's other one.
  EXPECT_FALSE(FileExists(ws_ + "/data/unused.txt"));
  CommandResult tasks = Ctl({"tasks", "1", "--task", "playlist.playlist"});
  ASSERT_EQ(tasks.exit_code, 0) << tasks.err;
  EXPECT_THAT(tasks.out, HasSubstr("data/playlist.jsonl"));

  // The playlist flow run on its own finds the same instance cached: one
  // identity, whichever flow reaches it.
  CommandResult own = Ctl({"run", "--plain", "flows/playlist.flow.yaml", "-p", "channel=zz"});
  ASSERT_EQ(own.exit_code, 0) << own.out << own.err;
  EXPECT_THAT(own.out, HasSubstr("\n  playlist: 1 instance, 1 cached\n"));
  EXPECT_EQ(Read("playlist.calls"), "run\n");
}

TEST_F(FlowToolsTest, ImportsWorkWhenTheDaemonCannotReadTheFlowFiles) {
  // The flow files live where the daemon may not look (outside its
  // allowed root); the client sends what it read.
  const std::string elsewhere = tmp_.Join("elsewhere");
  std::filesystem::create_directories(elsewhere + "/flows");
  WriteFileOrDie(elsewhere + "/flows/playlist.flow.yaml", kPlaylistFlow);
  WriteFileOrDie(elsewhere + "/items.flow.yaml", kItemsFlow);
  StartDaemon();
  CommandResult r = Ctl({"run", "--plain", elsewhere + "/items.flow.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(Read("data/items/c1.txt"), "item c1\n");
}

TEST_F(FlowToolsTest, ImportProblemsAreNamedAtFileLineCol) {
  StartDaemon();
  WriteFileOrDie(ws_ + "/a.flow.yaml", "name: a\nimports: [b.flow.yaml]\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  WriteFileOrDie(ws_ + "/b.flow.yaml", "name: b\nimports: [a.flow.yaml]\ntasks:\n  - {name: y, run: [\"true\"]}\n");
  CommandResult cycle = Ctl({"run", "a.flow.yaml"});
  EXPECT_EQ(cycle.exit_code, 2);
  EXPECT_EQ(cycle.err, "asflowctl: b.flow.yaml:2:11: imports[0]: import cycle: a.flow.yaml -> b.flow.yaml -> "
                       "a.flow.yaml\n");
  WriteFileOrDie(ws_ + "/c.flow.yaml", "name: c\nimports: [gone.flow.yaml]\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  CommandResult missing = Ctl({"check", "c.flow.yaml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.err, "asflowctl: c.flow.yaml:2:11: imports[0]: cannot import 'gone.flow.yaml': gone.flow.yaml: "
                         "No such file or directory\n");
  WriteFlows();
  WriteFileOrDie(ws_ + "/d.flow.yaml",
                 "name: d\nimports: [flows/playlist.flow.yaml]\ntasks:\n  - {name: x, needs: playlist.playlst, run: [\"true\"]}\n");
  CommandResult unknown = Ctl({"run", "d.flow.yaml"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_EQ(unknown.err, "asflowctl: d.flow.yaml:4:22: tasks[0].needs[0]: unknown task 'playlist.playlst': flow "
                         "'playlist' (flows/playlist.flow.yaml) has playlist, unused\n");
  EXPECT_EQ(Ctl({"runs", "--json"}).out, "");  // nothing was submitted
}

TEST_F(FlowToolsTest, DryRunCountsWithoutRunningOrRecordingAnything) {
  WriteFlows();
  StartDaemon();
  CommandResult before = Ctl({"run", "--dry-run", "items.flow.yaml"});
  ASSERT_EQ(before.exit_code, 0) << before.out << before.err;
  EXPECT_THAT(before.out, HasSubstr("dry run of flow items in "));
  EXPECT_THAT(before.out, HasSubstr("\nplaylist.playlist        1        0          0       0  sh -> "));
  EXPECT_THAT(before.out, HasSubstr("\nitem                     ?        ?          ?       ?  waits on playlist.playlist; "
                                    "echo -> "));
  EXPECT_FALSE(FileExists(ws_ + "/playlist.calls"));
  EXPECT_FALSE(FileExists(ws_ + "/data"));
  EXPECT_EQ(Ctl({"runs", "--json"}).out, "");

  ASSERT_EQ(Ctl({"run", "items.flow.yaml"}).exit_code, 0);
  std::filesystem::remove(ws_ + "/data/items/b.txt");
  WriteFileOrDie(ws_ + "/data/items/a.err", "suppressed earlier\n");
  std::filesystem::remove(ws_ + "/data/items/a.txt");
  CommandResult after = Ctl({"run", "--dry-run", "items.flow.yaml"});
  ASSERT_EQ(after.exit_code, 0) << after.out << after.err;
  EXPECT_THAT(after.out, HasSubstr("\nplaylist.playlist        0        1          0       0  "));
  EXPECT_THAT(after.out, HasSubstr("\nitem                     1        1          1       0  "));
  EXPECT_THAT(after.out, HasSubstr("\nwould run 1, cached 2, suppressed 1\n"));

  CommandResult json = Ctl({"check", "--json", "items.flow.yaml", "--force", "item"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("{\"task\":\"item\",\"would_run\":\"3\",\"expanded\":true,\"program\":\"echo\","
                                  "\"program_path\":\"/usr/bin/echo\",\"index\":1}"));
  CommandResult runs = Ctl({"runs", "--json"});
  EXPECT_EQ(Lines(runs.out).size(), 1u) << runs.out;  // only the real run
}

TEST_F(FlowToolsTest, DryRunFindsAProgramMissingFromThePathAtItsLine) {
  WriteFlows();
  std::string flow = kPlaylistFlow;
  flow.replace(flow.find("[sh, -c"), 3, "[shh");
  WriteFileOrDie(ws_ + "/flows/playlist.flow.yaml", flow);
  StartDaemon();
  CommandResult r = Ctl({"run", "--dry-run", "items.flow.yaml"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_EQ(r.err, "flows/playlist.flow.yaml:6:11: tasks[0].run[0] (playlist.playlist): program 'shh' not found on "
                   "the PATH its commands get (/usr/local/bin:/usr/bin:/bin)\n");
  EXPECT_FALSE(FileExists(ws_ + "/playlist.calls"));
}

TEST_F(FlowToolsTest, CheckValidatesWithoutADaemonAndStartsNone) {
  WriteFlows();
  CommandResult r = Ctl({"check", "items.flow.yaml"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "items.flow.yaml: flow items is valid: 2 tasks (1 imported from 1 files)\n"
                   "asflowd is not running: programs on its PATH and instance counts not checked "
                   "(asflowctl run --dry-run starts it)\n");
  EXPECT_FALSE(FileExists(socket_));
  CommandResult bad = Ctl({"check", "items.flow.yaml", "--only", "itemz"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(bad.err, "asflowctl: items.flow.yaml: --only itemz: the flow has no task 'itemz' (it has: "
                     "playlist.playlist, item)\n");
}

constexpr char kVersionFlow[] =
    "name: versions\n"
    "tasks:\n"
    "  - name: out\n"
    "    on: data/out.txt\n"
    "    run: [sh, -c, 'cat version; exit $(cat code)']\n"
    "    suppress: {exit_codes: [3]}\n";

TEST_F(FlowToolsTest, ForceReplacesTheOutputOnlyWhenTheNewOneCommits) {
  WriteFileOrDie(ws_ + "/v.flow.yaml", kVersionFlow);
  WriteFileOrDie(ws_ + "/version", "one\n");
  WriteFileOrDie(ws_ + "/code", "0");
  StartDaemon();
  ASSERT_EQ(Ctl({"run", "v.flow.yaml"}).exit_code, 0);
  EXPECT_EQ(Read("data/out.txt"), "one\n");

  WriteFileOrDie(ws_ + "/version", "two\n");
  CommandResult cached = Ctl({"run", "--plain", "v.flow.yaml"});
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  EXPECT_THAT(cached.out, HasSubstr("\n  out: 1 instance, 1 cached\n"));
  EXPECT_EQ(Read("data/out.txt"), "one\n");

  // A forced attempt that fails leaves the old output whole.
  WriteFileOrDie(ws_ + "/code", "1");
  CommandResult failed = Ctl({"run", "--plain", "v.flow.yaml", "--force", "out"});
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  EXPECT_EQ(Read("data/out.txt"), "one\n");

  WriteFileOrDie(ws_ + "/code", "0");
  CommandResult forced = Ctl({"run", "--plain", "v.flow.yaml", "--force", "out"});
  ASSERT_EQ(forced.exit_code, 0) << forced.out << forced.err;
  EXPECT_THAT(forced.out, HasSubstr("done       out()"));
  EXPECT_EQ(Read("data/out.txt"), "two\n");
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(ws_ + "/data")) left.push_back(e.path().filename());
  EXPECT_EQ(left, std::vector<std::string>{"out.txt"});  // no temporary left
}

TEST_F(FlowToolsTest, ForceRunsASuppressedInstanceAndItsSuccessRemovesTheErr) {
  WriteFileOrDie(ws_ + "/v.flow.yaml", kVersionFlow);
  WriteFileOrDie(ws_ + "/version", "one\n");
  WriteFileOrDie(ws_ + "/code", "3");
  StartDaemon();
  ASSERT_EQ(Ctl({"run", "v.flow.yaml"}).exit_code, 0);
  ASSERT_TRUE(FileExists(ws_ + "/data/out.err"));
  WriteFileOrDie(ws_ + "/code", "0");
  CommandResult still = Ctl({"run", "--plain", "v.flow.yaml"});
  EXPECT_THAT(still.out, HasSubstr("\n  out: 1 instance, 1 cached\n"));
  EXPECT_FALSE(FileExists(ws_ + "/data/out.txt"));
  // A forced attempt that fails keeps the .err (and the suppression).
  WriteFileOrDie(ws_ + "/code", "1");
  EXPECT_EQ(Ctl({"run", "v.flow.yaml", "--force", "out"}).exit_code, 1);
  EXPECT_TRUE(FileExists(ws_ + "/data/out.err"));
  WriteFileOrDie(ws_ + "/code", "0");
  CommandResult forced = Ctl({"run", "--plain", "v.flow.yaml", "--force", "out"});
  ASSERT_EQ(forced.exit_code, 0) << forced.out << forced.err;
  EXPECT_EQ(Read("data/out.txt"), "one\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/out.err"));
}

TEST_F(FlowToolsTest, OnlyRunsTheNamedTaskAndNeedsItsUpstreamOutputs) {
  WriteFlows();
  WriteFileOrDie(ws_ + "/both.flow.yaml",
                 "name: both\n"
                 "imports: [flows/playlist.flow.yaml]\n"
                 "tasks:\n"
                 "  - name: item\n"
                 "    for_each: {lines_of: playlist.playlist, as: {id: id}}\n"
                 "    on: data/items/{id}.txt\n"
                 "    run: [echo, \"item {id}\"]\n"
                 "  - name: other\n"
                 "    on: data/other.txt\n"
                 "    run: [echo, other]\n");
  StartDaemon();
  CommandResult missing = Ctl({"run", "--plain", "both.flow.yaml", "--only", "item"});
  EXPECT_EQ(missing.exit_code, 1) << missing.out;
  EXPECT_THAT(missing.out + missing.err, HasSubstr("error: playlist.playlist(): not run: its output is missing and --only item "
                                     "does not run playlist.playlist (run without --only, or add it)"));
  EXPECT_FALSE(FileExists(ws_ + "/playlist.calls"));
  EXPECT_FALSE(FileExists(ws_ + "/data/other.txt"));

  ASSERT_EQ(Ctl({"run", "--plain", "both.flow.yaml", "--only", "playlist.playlist"}).exit_code, 0);
  EXPECT_TRUE(FileExists(ws_ + "/data/playlist.jsonl"));
  EXPECT_FALSE(FileExists(ws_ + "/data/items"));
  EXPECT_FALSE(FileExists(ws_ + "/data/other.txt"));

  CommandResult only = Ctl({"run", "--plain", "both.flow.yaml", "--only", "item"});
  ASSERT_EQ(only.exit_code, 0) << only.out << only.err;
  EXPECT_EQ(Read("data/items/c1.txt"), "item c1\n");
  EXPECT_FALSE(FileExists(ws_ + "/data/other.txt"));
  EXPECT_EQ(Read("playlist.calls"), "run\n");
}

}  // namespace
}  // namespace asflow::testing
