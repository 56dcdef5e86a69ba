#include "common/line_reader.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/codec.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::ElementsAre;

// All lines of `path` (max line length `max`), or fails the test.
std::vector<std::string> ReadLines(const std::string& path,
                                   size_t max = 64 << 20) {
  std::vector<std::string> lines;
  auto reader = LineReader::Open(path, max);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return lines;
  std::string line;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    lines.push_back(line);
    EXPECT_EQ((*reader)->line_number(), static_cast<int64_t>(lines.size()));
  }
  return lines;
}

// Writes `data` to `path` compressed by `codec`.
void WriteEncoded(const std::string& path, Codec codec,
                  const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  auto enc = Encoder::Create(codec, fd, {}, path);
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*enc)->Write(data).ok());
  ASSERT_TRUE((*enc)->Finish().ok());
  close(fd);
}

TEST(LineReaderTest, StripsCarriageReturnBeforeNewline) {
  TempDir dir;
  WriteFileOrDie(dir.Join("crlf"), "a\r\nb\r\n\r\nc\n");
  EXPECT_THAT(ReadLines(dir.Join("crlf")), ElementsAre("a", "b", "", "c"));
}

TEST(LineReaderTest, OnlyOneTrailingCarriageReturnIsStripped) {
  TempDir dir;
  WriteFileOrDie(dir.Join("f"), "a\r\r\nb\rc\n");
  EXPECT_THAT(ReadLines(dir.Join("f")), ElementsAre("a\r", "b\rc"));
}

TEST(LineReaderTest, LastLineWithoutNewlineIsReturned) {
  TempDir dir;
  WriteFileOrDie(dir.Join("f"), "first\nlast");
  EXPECT_THAT(ReadLines(dir.Join("f")), ElementsAre("first", "last"));
  WriteFileOrDie(dir.Join("g"), "first\nlast\r");
  EXPECT_THAT(ReadLines(dir.Join("g")), ElementsAre("first", "last"));
}

TEST(LineReaderTest, EmptyLinesKeptButNoTrailingEmptyLine) {
  TempDir dir;
  WriteFileOrDie(dir.Join("f"), "\n\nx\n");
  EXPECT_THAT(ReadLines(dir.Join("f")), ElementsAre("", "", "x"));
  WriteFileOrDie(dir.Join("g"), "\n");
  EXPECT_THAT(ReadLines(dir.Join("g")), ElementsAre(""));
}

TEST(LineReaderTest, EmptyFileHasNoLines) {
  TempDir dir;
  WriteFileOrDie(dir.Join("empty"), "");
  auto reader = LineReader::Open(dir.Join("empty"));
  ASSERT_TRUE(reader.ok());
  std::string line = "stale";
  EXPECT_FALSE((*reader)->Next(&line).value());
  EXPECT_FALSE((*reader)->Next(&line).value());  // stays at the end
  EXPECT_EQ((*reader)->line_number(), 0);
}

TEST(LineReaderTest, LineTooLongNamesPathAndLineAndIsSticky) {
  TempDir dir;
  std::string path = dir.Join("long.txt");
  WriteFileOrDie(path, "abcd\nabc\r\nabcde\nok\n");
  auto reader = LineReader::Open(path, 4);
  ASSERT_TRUE(reader.ok());
  std::string line;
  ASSERT_TRUE((*reader)->Next(&line).value());
  EXPECT_EQ(line, "abcd");
  ASSERT_TRUE((*reader)->Next(&line).value());
  EXPECT_EQ(line, "abc");
  absl::StatusOr<bool> more = (*reader)->Next(&line);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(more.status().message(), path + ":3: line longer than 4 bytes");
  EXPECT_EQ((*reader)->Next(&line).status(), more.status());
  EXPECT_EQ((*reader)->line_number(), 2);
}

TEST(LineReaderTest, CarriageReturnDoesNotCountTowardLimit) {
  TempDir dir;
  WriteFileOrDie(dir.Join("f"), "abcd\r\nwxyz\r");
  EXPECT_THAT(ReadLines(dir.Join("f"), 4), ElementsAre("abcd", "wxyz"));
}

TEST(LineReaderTest, HugeLineWithoutNewlineIsRejectedWithoutReadingAll) {
  TempDir dir;
  std::string path = dir.Join("huge");
  WriteFileOrDie(path, "short\n" + std::string(3 << 20, 'z'));
  auto reader = LineReader::Open(path, 1 << 20);
  ASSERT_TRUE(reader.ok());
  std::string line;
  ASSERT_TRUE((*reader)->Next(&line).value());
  absl::StatusOr<bool> more = (*reader)->Next(&line);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().message(),
            path + ":2: line longer than 1048576 bytes");
  EXPECT_LE(line.size(), (1u << 20) + 1);
}

TEST(LineReaderTest, LinesSpanningBufferBoundaries) {
  TempDir dir;
  std::string a(300000, 'a'), b(131071, 'b'), c(131072, 'c');
  WriteFileOrDie(dir.Join("f"), a + "\n" + b + "\r\n" + c + "\n\n");
  EXPECT_THAT(ReadLines(dir.Join("f")), ElementsAre(a, b, c, ""));
}

TEST(LineReaderTest, ReadsZstdAndGzipWrittenByEncoder) {
  TempDir dir;
  std::string data;
  std::vector<std::string> expected;
  for (int i = 0; i < 100000; ++i) {
    expected.push_back(absl::StrCat("record\t", i));
    absl::StrAppend(&data, expected.back(), i % 2 ? "\r\n" : "\n");
  }
  data.pop_back();  // last line without newline
  if (data.back() == '\r') data.pop_back();
  for (Codec codec : {Codec::kZstd, Codec::kGzip}) {
    std::string path = dir.Join(absl::StrCat("lines.", CodecName(codec)));
    WriteEncoded(path, codec, data);
    EXPECT_TRUE(ReadLines(path) == expected) << path;
  }
}

TEST(LineReaderTest, ReadsConcatenatedCliFrames) {
  TempDir dir;
  WriteFileOrDie(dir.Join("a"), "a1\na2");  // no newline at the join
  WriteFileOrDie(dir.Join("b"), "b1\nb2\n");
  ASSERT_EQ(std::system(absl::StrCat(
                            "cd '", dir.path(),
                            "' && zstd -q -c a > ab.zst && zstd -q -c b >> "
                            "ab.zst && gzip -c a > ab.gz && gzip -c b >> ab.gz")
                            .c_str()),
            0);
  EXPECT_THAT(ReadLines(dir.Join("ab.zst")), ElementsAre("a1", "a2b1", "b2"));
  EXPECT_THAT(ReadLines(dir.Join("ab.gz")), ElementsAre("a1", "a2b1", "b2"));
}

TEST(LineReaderTest, TruncatedCompressedInputIsDataLoss) {
  TempDir dir;
  std::string data;
  for (int i = 0; i < 50000; ++i)
    absl::StrAppend(&data, "row ", i * 7919, "\n");
  std::string full = dir.Join("full.gz");
  WriteEncoded(full, Codec::kGzip, data);
  std::string gz = ReadFileOrDie(full);
  std::string path = dir.Join("cut.gz");
  WriteFileOrDie(path, gz.substr(0, gz.size() - 100));
  auto reader = LineReader::Open(path);
  ASSERT_TRUE(reader.ok());
  std::string line;
  absl::StatusOr<bool> more;
  int64_t lines = 0;
  while ((more = (*reader)->Next(&line)).ok() && *more) ++lines;
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(more.status().message(), path + ": truncated gzip data");
  EXPECT_GT(lines, 0);
  EXPECT_LT(lines, 50000);
}

TEST(LineReaderTest, MissingFileIsNotFound) {
  TempDir dir;
  std::string path = dir.Join("nope.txt");
  auto reader = LineReader::Open(path);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(reader.status().message(),
            path + ": open: No such file or directory");
}

}  // namespace
}  // namespace asflow
