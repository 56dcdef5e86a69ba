#include "common/atomic_file.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "common/codec.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::FileExists;
using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Decompressed content of `path`, or the error text.
std::string Decoded(const std::string& path) {
  auto dec = Decoder::Open(path);
  if (!dec.ok()) return std::string(dec.status().message());
  std::string out;
  char buf[4096];
  while (true) {
    auto n = (*dec)->Read(buf, sizeof(buf));
    if (!n.ok()) return std::string(n.status().message());
    if (*n == 0) return out;
    out.append(buf, *n);
  }
}

TEST(AtomicFileTest, TempPathForIsHiddenSiblingWithFixedSuffix) {
  EXPECT_EQ(AtomicFile::TempPathFor("/a/b/out.tsv.zst"),
            "/a/b/.out.tsv.zst.asflow-tmp");
  EXPECT_EQ(AtomicFile::TempPathFor("out.txt"), ".out.txt.asflow-tmp");
  EXPECT_EQ(AtomicFile::TempPathFor("/out"), "/.out.asflow-tmp");
}

TEST(AtomicFileTest, CommitWritesContentAndRemovesTemporary) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  AtomicFileOptions options;
  auto file = AtomicFile::Open(path, options);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(FileExists(AtomicFile::TempPathFor(path)));
  EXPECT_FALSE(FileExists(path));
  ASSERT_TRUE((*file)->Append("hello ").ok());
  ASSERT_TRUE((*file)->Append("world\n").ok());
  EXPECT_EQ((*file)->bytes_in(), 12);
  EXPECT_EQ((*file)->final_path(), path);
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(path), "hello world\n");
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
  file->reset();  // destroying a committed file keeps it
  EXPECT_EQ(ReadFileOrDie(path), "hello world\n");
}

TEST(AtomicFileTest, CompressesByFinalPathExtension) {
  TempDir dir;
  for (const char* name : {"a.zst", "a.gz"}) {
    std::string path = dir.Join(name);
    AtomicFileOptions options;
    options.sync = false;
    auto file = AtomicFile::Open(path, options);
    ASSERT_TRUE(file.ok()) << file.status();
    ASSERT_TRUE((*file)->Append("line 1\nline 2\n").ok());
    ASSERT_TRUE((*file)->Commit().ok());
    EXPECT_EQ(Decoder::Open(path).value()->codec(), CodecForPath(path));
    EXPECT_EQ(Decoded(path), "line 1\nline 2\n");
    EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
  }
}

TEST(AtomicFileTest, EmptyFileCommits) {
  TempDir dir;
  std::string path = dir.Join("empty.txt");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(path), "");
}

TEST(AtomicFileTest, DestroyWithoutCommitLeavesNothing) {
  TempDir dir;
  std::string path = dir.Join("out.gz");
  {
    auto file = AtomicFile::Open(path);
    ASSERT_TRUE(file.ok());
    ASSERT_TRUE((*file)->Append(std::string(500000, 'x')).ok());
  }
  EXPECT_FALSE(FileExists(path));
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
}

TEST(AtomicFileTest, ExistingFileUntouchedUntilCommitThenReplaced) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  WriteFileOrDie(path, "old\n");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append(std::string(300000, 'n')).ok());
  EXPECT_EQ(ReadFileOrDie(path), "old\n");
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(path), std::string(300000, 'n'));
}

TEST(AtomicFileTest, AbortKeepsExistingFile) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  WriteFileOrDie(path, "old\n");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("new\n").ok());
  (*file)->Abort();
  (*file)->Abort();  // idempotent
  EXPECT_EQ(ReadFileOrDie(path), "old\n");
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
}

TEST(AtomicFileTest, StaleTemporaryFromCrashIsOverwritten) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  WriteFileOrDie(AtomicFile::TempPathFor(path),
                 "leftover from a crashed writer, longer than the new data");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append("new\n").ok());
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(path), "new\n");
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
}

TEST(AtomicFileTest, SymlinkAtTemporaryIsNotFollowed) {
  TempDir dir;
  std::string victim = dir.Join("victim");
  WriteFileOrDie(victim, "precious\n");
  std::string path = dir.Join("out.txt");
  ASSERT_EQ(symlink(victim.c_str(), AtomicFile::TempPathFor(path).c_str()), 0);
  auto file = AtomicFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().message(), path + ": creating temporary file " +
                                         AtomicFile::TempPathFor(path) +
                                         ": Too many levels of symbolic links");
  EXPECT_EQ(ReadFileOrDie(victim), "precious\n");
}

TEST(AtomicFileTest, CreatesMissingParentDirectories) {
  TempDir dir;
  std::string path = dir.Join("a/b/c/out.txt");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_TRUE((*file)->Append("x").ok());
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ(ReadFileOrDie(path), "x");
}

TEST(AtomicFileTest, OpenUnderRegularFileFailsNamingPathAndLeavesNothing) {
  TempDir dir;
  WriteFileOrDie(dir.Join("file"), "i am a file\n");
  std::string path = dir.Join("file/sub/out.txt");
  auto file = AtomicFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(
      file.status().message(),
      path + ": creating directory " + dir.Join("file") + ": not a directory");
  EXPECT_EQ(ReadFileOrDie(dir.Join("file")), "i am a file\n");
  EXPECT_FALSE(FileExists(dir.Join("file/sub")));
}

TEST(AtomicFileTest, OpenWithoutCreatingDirsFailsWhenParentMissing) {
  TempDir dir;
  std::string path = dir.Join("missing/out.txt");
  AtomicFileOptions options;
  options.create_parent_dirs = false;
  auto file = AtomicFile::Open(path, options);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(file.status().message(),
            path + ": opening directory " + dir.Join("missing") + ": No such file or directory");
  EXPECT_FALSE(FileExists(dir.Join("missing")));
}

// Runs in a child so that, when the tests run as root (which ignores
// directory permissions), it can drop to "nobody" first.
TEST(AtomicFileTest, OpenInReadOnlyDirectoryFails) {
  TempDir dir;
  ASSERT_EQ(chmod(dir.path().c_str(), 0755), 0);
  std::string ro = dir.Join("ro");
  ASSERT_EQ(mkdir(ro.c_str(), 0555), 0);
  std::string path = ro + "/out.txt";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(10);
    }
    auto file = AtomicFile::Open(path);
    if (file.ok()) _exit(11);
    if (file.status().code() != absl::StatusCode::kPermissionDenied) _exit(12);
    if (file.status().message() != path + ": creating temporary file " +
                                       AtomicFile::TempPathFor(path) +
                                       ": Permission denied") {
      _exit(13);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
  EXPECT_FALSE(FileExists(path));
}

TEST(AtomicFileTest, PathWithoutFileNameIsInvalid) {
  auto file = AtomicFile::Open("/tmp/dir/");
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(file.status().message(),
            "'/tmp/dir/': output path has no file name");
}

TEST(AtomicFileTest, AppendAndCommitAfterAbortFailAndLeaveNoFile) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok());
  (*file)->Abort();
  absl::Status append = (*file)->Append("x");
  EXPECT_EQ(append.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(append.message(), path + ": append after commit or abort");
  absl::Status commit = (*file)->Commit();
  EXPECT_EQ(commit.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(commit.message(), path + ": commit after commit or abort");
  EXPECT_FALSE(FileExists(path));
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
}

TEST(AtomicFileTest, SecondCommitFailsAndKeepsFile) {
  TempDir dir;
  std::string path = dir.Join("out.txt");
  auto file = AtomicFile::Open(path);
  ASSERT_TRUE(file.ok());
  ASSERT_TRUE((*file)->Append("once").ok());
  ASSERT_TRUE((*file)->Commit().ok());
  EXPECT_EQ((*file)->Commit().code(), absl::StatusCode::kFailedPrecondition);
  (*file)->Abort();  // no-op after commit
  EXPECT_EQ(ReadFileOrDie(path), "once");
}

// A real write error: in a child process with a 64 KiB file size limit (and
// SIGXFSZ ignored), write() fails with EFBIG. Exit codes say what went wrong.
TEST(AtomicFileTest, WriteErrorRemovesTemporaryAndReportsPath) {
  TempDir dir;
  std::string path = dir.Join("big.txt");
  WriteFileOrDie(path, "old\n");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = {64 << 10, 64 << 10};
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    auto file = AtomicFile::Open(path);
    if (!file.ok()) _exit(11);
    absl::Status s = (*file)->Append(std::string(1 << 20, 'x'));
    if (s.ok()) _exit(12);
    if (s.message() != path + ": write: File too large") _exit(13);
    if (FileExists(AtomicFile::TempPathFor(path))) _exit(14);
    if ((*file)->Commit().code() != absl::StatusCode::kFailedPrecondition) {
      _exit(15);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadFileOrDie(path), "old\n");
  EXPECT_FALSE(FileExists(AtomicFile::TempPathFor(path)));
}

}  // namespace
}  // namespace asflow
