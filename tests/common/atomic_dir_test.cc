#include "common/atomic_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/beneath.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

namespace fs = std::filesystem;
using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::HasSubstr;

class AtomicDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = OpenRoot(dir_.path());
    ASSERT_TRUE(root.ok()) << root.status();
    root_ = std::move(*root);
  }
  absl::StatusOr<std::unique_ptr<AtomicDir>> Open(const std::string& rel) {
    return AtomicDir::OpenBeneath(root_.get(), dir_.path(), rel, /*sync=*/true);
  }
  TempDir dir_;
  UniqueFd root_;
};

TEST_F(AtomicDirTest, CommitMovesTheWholeTreeIntoPlace) {
  auto d = Open("data/media/v1");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)->temp_path(), dir_.Join("data/media/.v1.asflow-tmpdir"));
  EXPECT_FALSE(fs::exists(dir_.Join("data/media/v1")));
  fs::create_directories((*d)->temp_path() + "/sub");
  WriteFileOrDie((*d)->temp_path() + "/video.bin", "video");
  WriteFileOrDie((*d)->temp_path() + "/sub/info.json", "{}");
  fs::create_symlink("/etc/passwd", (*d)->temp_path() + "/link");  // kept as is, never followed
  ASSERT_TRUE((*d)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(dir_.Join("data/media/v1/video.bin")), "video");
  EXPECT_EQ(ReadFileOrDie(dir_.Join("data/media/v1/sub/info.json")), "{}");
  EXPECT_TRUE(fs::is_symlink(dir_.Join("data/media/v1/link")));
  EXPECT_FALSE(fs::exists(dir_.Join("data/media/.v1.asflow-tmpdir")));
  EXPECT_THAT((*d)->Commit().message(), HasSubstr("not open"));
}

TEST_F(AtomicDirTest, AbortAndDestructionRemoveTheTemporary) {
  {
    auto d = Open("out");
    ASSERT_TRUE(d.ok());
    fs::create_directories((*d)->temp_path() + "/a/b/c");
    WriteFileOrDie((*d)->temp_path() + "/a/b/c/f", "x");
  }
  EXPECT_FALSE(fs::exists(dir_.Join(".out.asflow-tmpdir")));
  EXPECT_FALSE(fs::exists(dir_.Join("out")));
}

TEST_F(AtomicDirTest, LeftoverOfACrashIsRemovedWhenOpenedAgain) {
  fs::create_directories(dir_.Join("m/.v.asflow-tmpdir/half"));
  WriteFileOrDie(dir_.Join("m/.v.asflow-tmpdir/half/part"), "partial");
  auto d = Open("m/v");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE(fs::is_empty((*d)->temp_path()));
}

TEST_F(AtomicDirTest, ExistingDirectoryIsNeverReplaced) {
  fs::create_directories(dir_.Join("out/old"));
  auto d = Open("out");
  ASSERT_TRUE(d.ok());
  WriteFileOrDie((*d)->temp_path() + "/new", "n");
  absl::Status s = (*d)->Commit();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr(dir_.Join("out") + " appeared while the command ran"));
  EXPECT_TRUE(fs::exists(dir_.Join("out/old")));
  EXPECT_FALSE(fs::exists(dir_.Join(".out.asflow-tmpdir")));
}

TEST_F(AtomicDirTest, SymlinkedParentIsRefused) {
  fs::create_directories(dir_.Join("elsewhere"));
  fs::create_directory_symlink(dir_.Join("elsewhere"), dir_.Join("data"));
  auto d = Open("data/v1");
  EXPECT_FALSE(d.ok());
  EXPECT_TRUE(fs::is_empty(dir_.Join("elsewhere")));
}

TEST_F(AtomicDirTest, RemoveTreeFollowsNoSymlink) {
  fs::create_directories(dir_.Join("keep"));
  WriteFileOrDie(dir_.Join("keep/precious"), "p");
  fs::create_directories(dir_.Join("t/in"));
  fs::create_directory_symlink(dir_.Join("keep"), dir_.Join("t/in/link"));
  UniqueFd parent(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY));
  ASSERT_TRUE(RemoveTreeAt(parent.get(), "t", dir_.Join("t")).ok());
  EXPECT_FALSE(fs::exists(dir_.Join("t")));
  EXPECT_EQ(ReadFileOrDie(dir_.Join("keep/precious")), "p");
  EXPECT_TRUE(RemoveTreeAt(parent.get(), "t", dir_.Join("t")).ok()) << "absent is fine";
}

}  // namespace
}  // namespace asflow
