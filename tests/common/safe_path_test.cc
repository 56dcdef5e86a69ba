#include "common/safe_path.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "absl/status/status.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

TEST(NormalizeOutputPathTest, DropsDotsAndRepeatedSlashes) {
  EXPECT_EQ(*NormalizeOutputPath("data/x.jsonl"), "data/x.jsonl");
  EXPECT_EQ(*NormalizeOutputPath("./data//./t///x.zst"), "data/t/x.zst");
  EXPECT_EQ(*NormalizeOutputPath("a..b/..c"), "a..b/..c");
}

TEST(NormalizeOutputPathTest, RejectsUnsafePaths) {
  EXPECT_EQ(NormalizeOutputPath("").status(),
            absl::InvalidArgumentError("output path \"\" is empty"));
  EXPECT_EQ(NormalizeOutputPath("/etc/passwd").status(),
            absl::InvalidArgumentError(
                "output path \"/etc/passwd\" is absolute; it must be relative "
                "to the workspace"));
  EXPECT_EQ(NormalizeOutputPath("data/../../x").status(),
            absl::InvalidArgumentError(
                "output path \"data/../../x\" has a '..' component; it must "
                "stay inside the workspace"));
  EXPECT_EQ(NormalizeOutputPath("..").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(NormalizeOutputPath("data/").status(),
            absl::InvalidArgumentError(
                "output path \"data/\" ends with '/'; it must name a file"));
  EXPECT_EQ(NormalizeOutputPath(absl::string_view("a\0b", 3)).status(),
            absl::InvalidArgumentError("output path \"a\\000b\" contains NUL"));
  EXPECT_EQ(NormalizeOutputPath("./.").status(),
            absl::InvalidArgumentError(
                "output path \"./.\" does not name a file"));
  EXPECT_EQ(NormalizeOutputPath("data/.").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CheckInsideWorkspaceTest, AcceptsMissingAndExistingPaths) {
  TempDir ws;
  EXPECT_TRUE(CheckInsideWorkspace(ws.path(), "data/new/x.jsonl").ok());
  WriteFileOrDie(ws.Join("data/x.jsonl"), "{}\n");
  EXPECT_TRUE(CheckInsideWorkspace(ws.path(), "data/x.jsonl").ok());
}

TEST(CheckInsideWorkspaceTest, FollowsSymlinksThatStayInside) {
  TempDir ws;
  WriteFileOrDie(ws.Join("real/keep"), "");
  ASSERT_EQ(symlink("real", ws.Join("alias").c_str()), 0);
  EXPECT_TRUE(CheckInsideWorkspace(ws.path(), "alias/x.jsonl").ok());
}

TEST(CheckInsideWorkspaceTest, RefusesSymlinkEscape) {
  TempDir ws;
  TempDir outside;
  ASSERT_EQ(symlink(outside.path().c_str(), ws.Join("data").c_str()), 0);
  absl::Status s = CheckInsideWorkspace(ws.path(), "data/sub/x.jsonl");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "output path \"data/sub/x.jsonl\" leaves workspace \"" + ws.path() +
                "\" through a symlink (\"" + ws.Join("data") +
                "\" resolves to \"" + outside.path() + "\")");
}

TEST(CheckInsideWorkspaceTest, RefusesDanglingSymlink) {
  TempDir ws;
  ASSERT_EQ(symlink("/nonexistent/asflow", ws.Join("x.jsonl").c_str()), 0);
  absl::Status s = CheckInsideWorkspace(ws.path(), "x.jsonl");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "output path \"x.jsonl\" in workspace \"" + ws.path() +
                             "\" goes through \"" + ws.Join("x.jsonl") +
                             "\", which cannot be resolved (dangling symlink?)");
}

TEST(CheckInsideWorkspaceTest, MissingWorkspaceIsNotFound) {
  TempDir ws;
  EXPECT_EQ(CheckInsideWorkspace(ws.Join("nope"), "x").code(),
            absl::StatusCode::kNotFound);
}

TEST(ErrorPathForTest, StripsTheTemplatesSuffixes) {
  EXPECT_EQ(ErrorPathFor("data/t/a.b.jsonl.zst", "data/t/{id}.jsonl.zst"),
            "data/t/a.b.err");
  EXPECT_EQ(ErrorPathFor("data/playlist.jsonl.zst", "data/playlist.jsonl.zst"),
            "data/playlist.err");
  EXPECT_EQ(ErrorPathFor("out/v1_x.json", "out/v{n}_x.json"), "out/v1_x.err");
  EXPECT_EQ(ErrorPathFor("out/a.b", "out/{id}"), "out/a.b.err");
  EXPECT_EQ(ErrorPathFor("d.x/.hidden", "d.x/.hidden"), "d.x/.hidden.err");
  EXPECT_EQ(ErrorPathFor("v/x.y/1.gz", "v/{id}/{n}.gz"), "v/x.y/1.err");
}

TEST(ExpandStarTest, ReplacesStarsInFileNameOnly) {
  EXPECT_EQ(ExpandStar("out/*/x-*.json", "0123456789abcdef"),
            "out/*/x-0123456789abcdef.json");
  EXPECT_EQ(ExpandStar("*.json", "h"), "h.json");
  EXPECT_EQ(ExpandStar("plain.json", "h"), "plain.json");
}

}  // namespace
}  // namespace asflow
