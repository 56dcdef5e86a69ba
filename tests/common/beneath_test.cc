#include "common/beneath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/atomic_file.h"
#include "common/line_reader.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::FileExists;
using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Every case runs twice: with openat2, and with the O_NOFOLLOW walk that
// kernels without it get. Both must agree.
class BeneathTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    UseOpenat2ForTesting(GetParam());
    auto root = OpenRoot(ws_.path());
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = std::move(*root);
  }
  void TearDown() override { UseOpenat2ForTesting(true); }

  TempDir ws_;
  TempDir outside_;
  UniqueFd root_;
};

TEST_P(BeneathTest, OpensAndCreatesDirectoriesBelowTheRoot) {
  auto dir = OpenDirBeneath(root_.get(), ws_.path(), "a/b/c", /*create=*/true);
  ASSERT_TRUE(dir.ok()) << dir.status();
  struct stat st;
  EXPECT_EQ(fstat(dir->get(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_TRUE(std::filesystem::is_directory(ws_.Join("a/b/c")));
  auto again = OpenDirBeneath(root_.get(), ws_.path(), "a/b/c", /*create=*/false);
  EXPECT_TRUE(again.ok()) << again.status();
  auto root = OpenDirBeneath(root_.get(), ws_.path(), "", /*create=*/false);
  EXPECT_TRUE(root.ok()) << root.status();
}

TEST_P(BeneathTest, MissingDirectoryIsNotFoundWithoutCreate) {
  auto dir = OpenDirBeneath(root_.get(), ws_.path(), "nope/deeper", /*create=*/false);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dir.status().message(),
            ws_.path() + "/nope/deeper: \"" + ws_.path() + "/nope\" does not exist");
}

TEST_P(BeneathTest, RefusesASymlinkOnTheWayEvenIfItStaysInside) {
  ASSERT_EQ(mkdir(ws_.Join("real").c_str(), 0777), 0);
  ASSERT_EQ(symlink(ws_.Join("real").c_str(), ws_.Join("alias").c_str()), 0);
  ASSERT_EQ(symlink(outside_.path().c_str(), ws_.Join("out").c_str()), 0);
  for (const std::string name : {"alias", "out"}) {
    auto dir = OpenDirBeneath(root_.get(), ws_.path(), name + "/sub", /*create=*/true);
    ASSERT_FALSE(dir.ok()) << name;
    EXPECT_EQ(dir.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(dir.status().message(), ws_.path() + "/" + name + "/sub: \"" + ws_.path() + "/" + name +
                                          "\" is a symlink; asflow never follows a symlink below the workspace");
  }
  EXPECT_FALSE(FileExists(outside_.Join("sub")));
  EXPECT_FALSE(FileExists(ws_.Join("real/sub")));
}

TEST_P(BeneathTest, RefusesAFileOnTheWay) {
  WriteFileOrDie(ws_.Join("f"), "x");
  auto dir = OpenDirBeneath(root_.get(), ws_.path(), "f/sub", /*create=*/true);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(dir.status().message()), HasSubstr("\"" + ws_.Join("f") + "\" is not a directory"));
}

TEST_P(BeneathTest, RefusesDotDot) {
  auto dir = OpenDirBeneath(root_.get(), ws_.path(), "a/../..", /*create=*/true);
  EXPECT_FALSE(dir.ok());
  auto file = OpenFileBeneath(root_.get(), ws_.path(), "../x");
  EXPECT_FALSE(file.ok());
}

TEST_P(BeneathTest, OpensFilesButNotSymlinksToThem) {
  WriteFileOrDie(ws_.Join("d/in.txt"), "hello\n");
  WriteFileOrDie(outside_.Join("secret"), "secret\n");
  ASSERT_EQ(symlink(outside_.Join("secret").c_str(), ws_.Join("d/link.txt").c_str()), 0);
  auto file = OpenFileBeneath(root_.get(), ws_.path(), "d/in.txt");
  ASSERT_TRUE(file.ok()) << file.status();
  auto reader = LineReader::FromFd(std::move(*file), ws_.Join("d/in.txt"));
  ASSERT_TRUE(reader.ok());
  std::string line;
  ASSERT_TRUE(*(*reader)->Next(&line));
  EXPECT_EQ(line, "hello");
  auto link = OpenFileBeneath(root_.get(), ws_.path(), "d/link.txt");
  ASSERT_FALSE(link.ok());
  EXPECT_EQ(link.status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_P(BeneathTest, ExistsBeneathDoesNotLookThroughSymlinks) {
  WriteFileOrDie(ws_.Join("d/x"), "");
  WriteFileOrDie(outside_.Join("y"), "");
  ASSERT_EQ(symlink(outside_.path().c_str(), ws_.Join("out").c_str()), 0);
  EXPECT_TRUE(ExistsBeneath(root_.get(), "d/x"));
  EXPECT_FALSE(ExistsBeneath(root_.get(), "d/nope"));
  EXPECT_FALSE(ExistsBeneath(root_.get(), "out/y"));
  EXPECT_TRUE(ExistsBeneath(root_.get(), "out"));  // the symlink itself
}

TEST_P(BeneathTest, FirstExistingBeneathAnswersLikeTwoExistsBeneath) {
  WriteFileOrDie(ws_.Join("d/a.jsonl.zst"), "");
  WriteFileOrDie(ws_.Join("d/b.err"), "");
  WriteFileOrDie(ws_.Join("e/c.err"), "");
  WriteFileOrDie(ws_.Join("top.err"), "");
  WriteFileOrDie(outside_.Join("y.err"), "");
  ASSERT_EQ(symlink(outside_.path().c_str(), ws_.Join("out").c_str()), 0);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "d/a.jsonl.zst", "d/a.err"), 0);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "d/b.jsonl.zst", "d/b.err"), 1);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "d/z.jsonl.zst", "d/z.err"), -1);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "d/z.jsonl.zst", ""), -1);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "d/c.jsonl.zst", "e/c.err"), 1);  // two directories
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "nodir/a", "nodir/a.err"), -1);
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "top.txt", "top.err"), 1);  // in the root
  EXPECT_EQ(FirstExistingBeneath(root_.get(), "out/y.txt", "out/y.err"), -1);  // not through a symlink
}

TEST_P(BeneathTest, UnlinkBeneathRemovesAndIgnoresMissing) {
  WriteFileOrDie(ws_.Join("d/x.err"), "e");
  EXPECT_TRUE(UnlinkBeneath(root_.get(), ws_.path(), "d/x.err").ok());
  EXPECT_FALSE(FileExists(ws_.Join("d/x.err")));
  EXPECT_TRUE(UnlinkBeneath(root_.get(), ws_.path(), "d/x.err").ok());
  EXPECT_TRUE(UnlinkBeneath(root_.get(), ws_.path(), "nodir/x.err").ok());
  WriteFileOrDie(outside_.Join("keep.err"), "e");
  ASSERT_EQ(symlink(outside_.path().c_str(), ws_.Join("out").c_str()), 0);
  EXPECT_EQ(UnlinkBeneath(root_.get(), ws_.path(), "out/keep.err").code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(FileExists(outside_.Join("keep.err")));
}

TEST_P(BeneathTest, OpenRootRefusesASymlinkedPath) {
  ASSERT_EQ(symlink(ws_.path().c_str(), outside_.Join("ws").c_str()), 0);
  auto root = OpenRoot(outside_.Join("ws"));
  ASSERT_FALSE(root.ok());
  EXPECT_EQ(root.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(OpenRoot("relative/path").ok());
}

TEST_P(BeneathTest, AtomicFileBeneathWritesThroughTheDirectoryItOpened) {
  AtomicFileOptions options;
  options.sync = false;
  auto file = AtomicFile::OpenBeneath(root_.get(), ws_.path(), "race/d/1.txt", options);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append("one\n").ok());
  // The directory is swapped for a symlink to the outside before the
  // commit: the rename still happens in the directory that was opened.
  ASSERT_EQ(rename(ws_.Join("race/d").c_str(), ws_.Join("race/d.real").c_str()), 0);
  ASSERT_EQ(mkdir(outside_.Join("d").c_str(), 0777), 0);
  ASSERT_EQ(symlink(outside_.Join("d").c_str(), ws_.Join("race/d").c_str()), 0);
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(ws_.Join("race/d.real/1.txt")), "one\n");
  EXPECT_TRUE(std::filesystem::is_empty(outside_.Join("d")));
  // A new file now refuses the symlink.
  auto refused = AtomicFile::OpenBeneath(root_.get(), ws_.path(), "race/d/2.txt", options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(std::filesystem::is_empty(outside_.Join("d")));
}

INSTANTIATE_TEST_SUITE_P(Resolvers, BeneathTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Openat2" : "NoFollowWalk";
                         });

}  // namespace
}  // namespace asflow
