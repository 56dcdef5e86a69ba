#include "common/exists_probe.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

bool Lstat(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

TEST(ExistsProbeTest, AnswersAsLstatDoes) {
  TempDir dir;
  WriteFileOrDie(dir.Join("top.txt"), "x");
  WriteFileOrDie(dir.Join("data/a.jsonl.zst"), "x");
  WriteFileOrDie(dir.Join("data/deep/b.txt"), "x");
  ASSERT_EQ(symlink("nowhere", dir.Join("data/dangling").c_str()), 0);
  ExistsProbe probe(dir.path());
  for (const char* rel : {"top.txt", "data/a.jsonl.zst", "data/deep/b.txt", "data/dangling", "data", "data/deep",
                          "missing.txt", "data/missing", "nodir/a.txt", "data/deep/missing", "top.txt/x"}) {
    EXPECT_EQ(probe.Exists(rel), Lstat(dir.Join(rel))) << rel;
  }
  EXPECT_EQ(probe.listings(), 0);
}

TEST(ExistsProbeTest, ReadsADirectoryOnceItHasBeenProbedEnough) {
  TempDir dir;
  for (int i = 0; i < 400; i += 2) WriteFileOrDie(dir.Join("data/" + std::to_string(i) + ".zst"), "x");
  ExistsProbe probe(dir.path());
  for (int i = 0; i < 400; ++i) {
    const std::string rel = "data/" + std::to_string(i) + ".zst";
    EXPECT_EQ(probe.Exists(rel), i % 2 == 0) << rel;
    // A small directory is read after kMinProbes probes.
    EXPECT_EQ(probe.listings(), i + 1 >= ExistsProbe::kMinProbes ? 1 : 0) << rel;
  }
  // Names not asked about before the listing, and other directories.
  EXPECT_FALSE(probe.Exists("data/401.zst"));
  EXPECT_FALSE(probe.Exists("other/0.zst"));
  EXPECT_EQ(probe.listings(), 1);

  // The listing is a snapshot (callers re-check before acting).
  WriteFileOrDie(dir.Join("data/1.zst"), "x");
  EXPECT_FALSE(probe.Exists("data/1.zst"));
  EXPECT_TRUE(ExistsProbe(dir.path()).Exists("data/1.zst"));
}

TEST(ExistsProbeTest, LeavesALargeDirectoryUnreadWhenFewOfItsNamesAreAsked) {
  TempDir dir;
  for (int i = 0; i < 5000; ++i) {
    const std::string path = dir.Join("big/" + std::to_string(i));
    if (i == 0) std::filesystem::create_directories(dir.Join("big"));
    FILE* f = fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    fclose(f);
  }
  struct stat st;
  ASSERT_EQ(stat(dir.Join("big").c_str(), &st), 0);
  const int64_t threshold = st.st_size / ExistsProbe::kDirBytesPerProbe;
  ASSERT_GT(threshold, 2 * ExistsProbe::kMinProbes) << "directory size " << st.st_size;
  ExistsProbe probe(dir.path());
  for (int64_t i = 0; i + 1 < threshold; ++i) EXPECT_TRUE(probe.Exists("big/" + std::to_string(i * 7 % 5000)));
  EXPECT_EQ(probe.listings(), 0);
  EXPECT_TRUE(probe.Exists("big/1"));
  EXPECT_EQ(probe.listings(), 1);
  EXPECT_TRUE(probe.Exists("big/4999"));
  EXPECT_FALSE(probe.Exists("big/5000"));
}

TEST(ExistsProbeTest, ADirectoryMissingAtFirstIsFoundOnceItAppears) {
  TempDir dir;
  ExistsProbe probe(dir.path());
  for (int i = 0; i < 3 * ExistsProbe::kMinProbes; ++i) EXPECT_FALSE(probe.Exists("out/" + std::to_string(i)));
  EXPECT_EQ(probe.listings(), 0);
  for (int i = 0; i < 10; ++i) WriteFileOrDie(dir.Join("out/" + std::to_string(i)), "x");
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(probe.Exists("out/" + std::to_string(i)), i < 10) << round << " " << i;
  }
  EXPECT_EQ(probe.listings(), 1);
}

TEST(ExistsProbeTest, OneDirectoryPerPathIsTrackedOnlyUpToItsLimit) {
  TempDir dir;
  const int dirs = static_cast<int>(ExistsProbe::kMaxDirs) + 100;
  for (int i = 0; i < dirs; i += 7) WriteFileOrDie(dir.Join("out/" + std::to_string(i) + "/result.json"), "x");
  ExistsProbe probe(dir.path());
  for (int i = 0; i < dirs; ++i) {
    const std::string rel = "out/" + std::to_string(i) + "/result.json";
    EXPECT_EQ(probe.Exists(rel), i % 7 == 0) << rel;
  }
  EXPECT_EQ(probe.listings(), 0);
}

// A root that cannot be opened without symlinks holds nothing: its
// instances run, and their writes say why they cannot.
TEST(ExistsProbeTest, ARootThatCannotBeOpenedHoldsNothing) {
  TempDir dir;
  WriteFileOrDie(dir.Join("real/a"), "x");
  ASSERT_EQ(symlink(dir.Join("real").c_str(), dir.Join("link").c_str()), 0);
  ExistsProbe probe(dir.Join("link"));
  EXPECT_FALSE(probe.Exists("a"));
  ExistsProbe missing(dir.Join("not-yet"));
  WriteFileOrDie(dir.Join("not-yet/a"), "x");
  EXPECT_FALSE(missing.Exists("a"));
}

TEST(ExistsProbeTest, NothingBelowASymlinkedDirectoryExists) {
  TempDir dir;
  TempDir outside;
  WriteFileOrDie(outside.Join("a"), "x");
  WriteFileOrDie(dir.Join("data/b"), "x");
  ASSERT_EQ(symlink(outside.path().c_str(), dir.Join("out").c_str()), 0);
  ExistsProbe probe(dir.path());
  EXPECT_FALSE(probe.Exists("out/a"));
  EXPECT_TRUE(probe.Exists("data/b"));
  EXPECT_TRUE(probe.Exists("out"));  // the symlink itself
}

}  // namespace
}  // namespace asflow
