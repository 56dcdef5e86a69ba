#include "common/small_file.h"

#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;

TEST(SmallFileTest, ReadsWholeFile) {
  TempDir dir;
  WriteFileOrDie(dir.Join("a.pem"), "line 1\nline 2\n");
  EXPECT_EQ(*ReadSmallFile(dir.Join("a.pem")), "line 1\nline 2\n");
  auto missing = ReadSmallFile(dir.Join("nope"));
  EXPECT_EQ(missing.status().message(), dir.Join("nope") + ": cannot be read");
}

TEST(SmallFileTest, TokenIsTheTrimmedFirstLine) {
  TempDir dir;
  WriteFileOrDie(dir.Join("t"), "  s3cret \r\nsecond line\n");
  EXPECT_EQ(*ReadTokenFile(dir.Join("t")), "s3cret");
  WriteFileOrDie(dir.Join("empty"), "\n");
  EXPECT_EQ(ReadTokenFile(dir.Join("empty")).status().message(), "token file " + dir.Join("empty") + ": empty");
  EXPECT_EQ(ReadTokenFile(dir.Join("nope")).status().message(),
            "token file " + dir.Join("nope") + ": cannot be read");
}

}  // namespace
}  // namespace asflow
