// LoadFlowFile: imports resolved into the one spec the client submits, and
// every way an import can be wrong reported at file:line:col.
#include "common/flow_imports.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/test_util.h"

namespace asflow {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

constexpr char kPlaylist[] =
    "name: playlist\n"
    "params: {channel: https://example.com/@c}\n"
    "tasks:\n"
    "  - name: fetch\n"
    "    on: data/playlist.jsonl\n"
    "    run: [yt-dlp, --flat-playlist, \"{channel}\"]\n"
    "    limit: 1\n"
    "  - name: unused\n"
    "    run: [\"true\"]\n";

class FlowImportsTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = tmp_.path() + "/" + name;
    WriteFileOrDie(path, text);
    return path;
  }
  std::string Error(const std::string& path) {
    auto loaded = LoadFlowFile(path);
    EXPECT_FALSE(loaded.ok());
    return loaded.ok() ? "" : std::string(loaded.status().message());
  }
  TempDir tmp_;
};

TEST_F(FlowImportsTest, ReachedTasksComeQualifiedWithTheirFlow) {
  Write("playlist.flow.yaml", kPlaylist);
  const std::string path = Write("transcripts.flow.yaml",
                                 "name: transcripts\n"
                                 "imports: [playlist.flow.yaml]\n"
                                 "params: {api: x}\n"
                                 "tasks:\n"
                                 "  - name: transcript\n"
                                 "    for_each: {lines_of: playlist.fetch, as: {video_id: id}}\n"
                                 "    on: data/t/{video_id}.json\n"
                                 "    run: [get, \"{api}\", \"{video_id}\"]\n");
  auto loaded = LoadFlowFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const v1::FlowSpec& spec = loaded->spec;
  EXPECT_EQ(spec.imports_size(), 0);
  ASSERT_EQ(spec.tasks_size(), 2);  // `unused` is not reached
  // Upstream first.
  EXPECT_EQ(spec.tasks(0).name(), "playlist.fetch");
  EXPECT_EQ(spec.tasks(0).flow(), "playlist");
  EXPECT_EQ(spec.tasks(0).limit(), 1);
  EXPECT_EQ(spec.tasks(1).name(), "transcript");
  EXPECT_EQ(spec.tasks(1).flow(), "");
  EXPECT_EQ(spec.tasks(1).for_each().lines_of(), "playlist.fetch");
  EXPECT_EQ(spec.params().at("channel"), "https://example.com/@c");
  EXPECT_EQ(spec.params().at("api"), "x");
  EXPECT_EQ(loaded->Locate("tasks[0].run[0]"), tmp_.path() + "/playlist.flow.yaml:6:11");
  EXPECT_EQ(loaded->Locate("tasks[1].run[0]"), path + ":8:11");
}

TEST_F(FlowImportsTest, ImportedTasksNeedsAreQualifiedTransitively) {
  Write("a.flow.yaml",
        "name: a\n"
        "tasks:\n"
        "  - {name: one, run: [\"true\"]}\n"
        "  - {name: two, needs: one, run: [\"true\"]}\n");
  Write("sub/b.flow.yaml",
        "name: b\n"
        "imports: [../a.flow.yaml]\n"
        "tasks:\n"
        "  - {name: three, needs: a.two, run: [\"true\"]}\n");
  const std::string path = Write("c.flow.yaml",
                                 "name: c\n"
                                 "imports: [sub/b.flow.yaml, a.flow.yaml]\n"
                                 "tasks:\n"
                                 "  - {name: four, needs: [b.three, a.one], run: [\"true\"]}\n");
  auto loaded = LoadFlowFile(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  std::vector<std::string> names;
  for (const auto& t : loaded->spec.tasks()) {
    std::string needs;
    for (const auto& n : t.needs()) needs += " " + n;
    names.push_back(t.name() + ":" + needs);
  }
  EXPECT_THAT(names, ElementsAre("a.two: a.one", "a.one:", "b.three: a.two", "four: b.three a.one"));
}

TEST_F(FlowImportsTest, CycleIsAnErrorAtTheImport) {
  Write("a.flow.yaml", "name: a\nimports: [b.flow.yaml]\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  Write("b.flow.yaml", "name: b\nimports: [a.flow.yaml]\ntasks:\n  - {name: y, run: [\"true\"]}\n");
  const std::string dir = tmp_.path() + "/";
  EXPECT_EQ(Error(dir + "a.flow.yaml"), dir + "b.flow.yaml:2:11: imports[0]: import cycle: " + dir +
                                            "a.flow.yaml -> " + dir + "b.flow.yaml -> " + dir + "a.flow.yaml");
}

TEST_F(FlowImportsTest, MissingFileIsAnErrorAtTheImport) {
  const std::string path = Write("t.flow.yaml", "name: t\nimports: [nope.flow.yaml]\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), path + ":2:11: imports[0]: cannot import 'nope.flow.yaml': " + tmp_.path() +
                             "/nope.flow.yaml: No such file or directory");
}

TEST_F(FlowImportsTest, ImportedFilesProblemsKeepTheirOwnPlace) {
  Write("p.flow.yaml", "name: p\ntasks:\n  - {name: x, run: [\"true\"], limt: 2}\n");
  const std::string path = Write("t.flow.yaml", "name: t\nimports: [p.flow.yaml]\ntasks:\n  - {name: y, needs: p.x, run: [\"true\"]}\n");
  const std::string error = Error(path);
  EXPECT_THAT(error, HasSubstr(path + ":2:11: imports[0]: 'p.flow.yaml' has"));
  EXPECT_THAT(error, HasSubstr(tmp_.path() + "/p.flow.yaml:3:30: tasks[0].limt: unknown field 'limt'"));
}

TEST_F(FlowImportsTest, ImportOfItsOwnNameIsAClash) {
  Write("other.flow.yaml", "name: t\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  const std::string path = Write("t.flow.yaml", "name: t\nimports: [other.flow.yaml]\ntasks:\n  - {name: y, run: [\"true\"]}\n");
  EXPECT_EQ(Error(path),
            path + ":2:11: imports[0]: 'other.flow.yaml' is flow 't', this flow's own name: rename one");
}

TEST_F(FlowImportsTest, TwoFilesOfOneFlowNameClash) {
  Write("p1.flow.yaml", "name: p\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  Write("p2.flow.yaml", "name: p\ntasks:\n  - {name: x, run: [\"true\"]}\n");
  const std::string path =
      Write("t.flow.yaml", "name: t\nimports: [p1.flow.yaml, p2.flow.yaml]\ntasks:\n  - {name: y, run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), path + ":2:25: imports[1]: 'p2.flow.yaml' is flow 'p', as " + tmp_.path() +
                             "/p1.flow.yaml is: a flow name reaches one file");
}

TEST_F(FlowImportsTest, UnknownFlowOrTaskIsAnErrorAtTheReference) {
  Write("playlist.flow.yaml", kPlaylist);
  const std::string path = Write("t.flow.yaml",
                                 "name: t\n"
                                 "imports: [playlist.flow.yaml]\n"
                                 "tasks:\n"
                                 "  - {name: a, needs: [playlst.fetch], run: [\"true\"]}\n"
                                 "  - {name: b, needs: [playlist.fetc], run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), path + ":4:23: tasks[0].needs[0]: unknown task 'playlst.fetch': no imported flow "
                                "'playlst' (imported: playlist)\n" +
                             path + ":5:23: tasks[1].needs[0]: unknown task 'playlist.fetc': flow 'playlist' (" +
                             tmp_.path() + "/playlist.flow.yaml) has fetch, unused");
}

TEST_F(FlowImportsTest, DottedNameWithoutImportsIsUnknown) {
  const std::string path = Write("t.flow.yaml", "name: t\ntasks:\n  - {name: a, needs: [p.x], run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), path + ":3:23: tasks[0].needs[0]: unknown task 'p.x'");
}

TEST_F(FlowImportsTest, ImportedFlowsDisagreeingOnAParameterIsAnError) {
  Write("a.flow.yaml", "name: a\nparams: {channel: one}\ntasks:\n  - {name: x, run: [\"{channel}\"]}\n");
  Write("b.flow.yaml", "name: b\nparams: {channel: two}\ntasks:\n  - {name: x, run: [\"{channel}\"]}\n");
  const std::string path =
      Write("t.flow.yaml", "name: t\nimports: [a.flow.yaml, b.flow.yaml]\ntasks:\n  - {name: y, needs: [a.x, b.x], run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), tmp_.path() + "/b.flow.yaml:2:10: params.channel: 'two' here, 'one' in " + tmp_.path() +
                             "/a.flow.yaml: declare 'channel' in " + path + " to choose");
  // The importing file's own default settles it.
  const std::string chosen =
      Write("u.flow.yaml", "name: u\nimports: [a.flow.yaml, b.flow.yaml]\nparams: {channel: mine}\ntasks:\n"
                           "  - {name: y, needs: [a.x, b.x], run: [\"true\"]}\n");
  auto loaded = LoadFlowFile(chosen);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->spec.params().at("channel"), "mine");
}

TEST_F(FlowImportsTest, SameOutputAcrossFilesIsLocatedInEach) {
  Write("p.flow.yaml", "name: p\ntasks:\n  - {name: x, on: out.txt, run: [\"true\"]}\n");
  const std::string path =
      Write("t.flow.yaml", "name: t\nimports: [p.flow.yaml]\ntasks:\n  - {name: y, needs: p.x, on: out.txt, run: [\"true\"]}\n");
  EXPECT_EQ(Error(path), path + ":4:27: tasks[0].on: same output as task 'p.x' ('out.txt')");
}

}  // namespace
}  // namespace asflow
