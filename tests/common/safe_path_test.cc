#include "common/safe_path.h"

#include <vector>

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

// Issue 12, defect 6: a '*' a parameter value brought was replaced by the
// hash too; with the template's own offsets only those are.
TEST(ExpandStarTest, OnlyTheGivenOffsetsAreReplaced) {
  std::vector<size_t> own = {8};  // "out/a*b-*.txt": the template's '*' is the second
  EXPECT_EQ(ExpandStar("out/a*b-*.txt", "h", &own), "out/a*b-h.txt");
  std::vector<size_t> none;
  EXPECT_EQ(ExpandStar("out/a*b.txt", "h", &none), "out/a*b.txt");
  std::vector<size_t> in_dir = {1};
  EXPECT_EQ(ExpandStar("d*/x.txt", "h", &in_dir), "d*/x.txt");
}

TEST(ExpandStarTest, ReplacesStarsInFileNameOnly) {
  EXPECT_EQ(ExpandStar("out/*/x-*.json", "0123456789abcdef"),
            "out/*/x-0123456789abcdef.json");
  EXPECT_EQ(ExpandStar("*.json", "h"), "h.json");
  EXPECT_EQ(ExpandStar("plain.json", "h"), "plain.json");
}

}  // namespace
}  // namespace asflow
