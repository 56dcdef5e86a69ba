#include "common/codec.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace asflow {
namespace {

using ::asflow::testing::ReadFileOrDie;
using ::asflow::testing::TempDir;
using ::asflow::testing::WriteFileOrDie;
using ::testing::HasSubstr;

// Deterministic, partly compressible test data of `n` bytes.
std::string TestData(size_t n) {
  std::string s;
  s.reserve(n + 64);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int line = 0; s.size() < n; ++line) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    absl::StrAppend(&s, "line ", line, " value ", x >> 20, "\t");
    s.push_back(static_cast<char>(x >> 56));  // arbitrary binary byte
    s.push_back('\n');
  }
  s.resize(n);
  return s;
}

// Encodes `chunks` into a new file at `path` with one Write per chunk.
void EncodeFile(const std::string& path, Codec codec,
                const std::vector<std::string>& chunks,
                const CodecOptions& options = {}) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  auto enc = Encoder::Create(codec, fd, options, path);
  ASSERT_TRUE(enc.ok()) << enc.status();
  for (const std::string& c : chunks) ASSERT_TRUE((*enc)->Write(c).ok());
  ASSERT_TRUE((*enc)->Finish().ok());
  close(fd);
}

// Splits `data` into pieces of sizes cycling through some odd numbers.
std::vector<std::string> OddChunks(const std::string& data) {
  static const size_t kSizes[] = {1, 7, 4093, 131073, 65537, 3, 250001};
  std::vector<std::string> chunks;
  size_t pos = 0;
  for (int i = 0; pos < data.size(); ++i) {
    size_t n = kSizes[i % (sizeof(kSizes) / sizeof(kSizes[0]))];
    chunks.push_back(data.substr(pos, n));
    pos += chunks.back().size();
  }
  return chunks;
}

// Reads all of `path` through Decoder with a small odd-sized buffer.
absl::StatusOr<std::string> DecodeFile(const std::string& path) {
  auto dec = Decoder::Open(path);
  if (!dec.ok()) return dec.status();
  std::string out;
  char buf[5000];
  while (true) {
    absl::StatusOr<size_t> n = (*dec)->Read(buf, sizeof(buf));
    if (!n.ok()) return n.status();
    if (*n == 0) return out;
    out.append(buf, *n);
  }
}

// Runs a shell command; returns its exit status.
int RunShell(const std::string& cmd) { return std::system(cmd.c_str()); }

TEST(CodecTest, CodecForPathUsesLastExtensionOfFileName) {
  EXPECT_EQ(CodecForPath("out/a.tsv.zst"), Codec::kZstd);
  EXPECT_EQ(CodecForPath("a.gz"), Codec::kGzip);
  EXPECT_EQ(CodecForPath("/x/a.gz.txt"), Codec::kRaw);
  EXPECT_EQ(CodecForPath("/x.zst/a"), Codec::kRaw);
  EXPECT_EQ(CodecForPath("a.ZST"), Codec::kRaw);
  EXPECT_EQ(CodecForPath(""), Codec::kRaw);
  EXPECT_EQ(CodecName(Codec::kZstd), "zstd");
}

class CodecRoundTripTest : public ::testing::TestWithParam<Codec> {
 protected:
  std::string PathFor(const std::string& stem) {
    switch (GetParam()) {
      case Codec::kZstd:
        return dir_.Join(stem + ".zst");
      case Codec::kGzip:
        return dir_.Join(stem + ".gz");
      case Codec::kRaw:
        break;
    }
    return dir_.Join(stem + ".txt");
  }
  TempDir dir_;
};

TEST_P(CodecRoundTripTest, EmptyInput) {
  std::string path = PathFor("empty");
  EncodeFile(path, GetParam(), {});
  if (GetParam() != Codec::kRaw) {
    EXPECT_FALSE(ReadFileOrDie(path).empty());  // a valid empty frame
  }
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "");
}

TEST_P(CodecRoundTripTest, OneByteWrites) {
  std::string data = TestData(300000);
  std::vector<std::string> chunks;
  for (char c : data) chunks.push_back(std::string(1, c));
  std::string path = PathFor("bytes");
  EncodeFile(path, GetParam(), chunks);
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, data);
}

TEST_P(CodecRoundTripTest, MultiMegabyteInOddChunks) {
  std::string data = TestData(5 * 1000 * 1000 + 17);
  std::string path = PathFor("big");
  EncodeFile(path, GetParam(), OddChunks(data));
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), data.size());
  EXPECT_TRUE(*got == data);
}

TEST_P(CodecRoundTripTest, CopyDecompressedWritesContentToFd) {
  std::string data = TestData(400000);
  std::string path = PathFor("copy");
  EncodeFile(path, GetParam(), {data});
  std::string out_path = dir_.Join("copy.out");
  int fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  absl::Status s = CopyDecompressed(path, fd);
  close(fd);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(ReadFileOrDie(out_path) == data);
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, CodecRoundTripTest,
                         ::testing::Values(Codec::kRaw, Codec::kZstd,
                                           Codec::kGzip),
                         [](const ::testing::TestParamInfo<Codec>& info) {
                           return std::string(CodecName(info.param));
                         });

TEST(CodecTest, ZstdFileReadableByZstdCli) {
  TempDir dir;
  std::string data = TestData(2000000);
  std::string path = dir.Join("a.zst");
  EncodeFile(path, Codec::kZstd, OddChunks(data));
  std::string out = dir.Join("a.out");
  ASSERT_EQ(RunShell(absl::StrCat("zstd -q -d -c '", path, "' > '", out, "'")),
            0);
  EXPECT_TRUE(ReadFileOrDie(out) == data);
}

TEST(CodecTest, MultiThreadedZstdReadableByZstdCliAndDecoder) {
  TempDir dir;
  std::string data = TestData(3000000);
  std::string path = dir.Join("mt.zst");
  CodecOptions options;
  options.zstd_workers = 2;
  options.zstd_level = 1;
  EncodeFile(path, Codec::kZstd, OddChunks(data), options);
  std::string out = dir.Join("mt.out");
  ASSERT_EQ(RunShell(absl::StrCat("zstd -q -d -c '", path, "' > '", out, "'")),
            0);
  EXPECT_TRUE(ReadFileOrDie(out) == data);
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == data);
}

// Checks that `path` holds exactly one zstd frame, readable by the zstd CLI
// and by Decoder as `data`; returns the content size in its header
// (ZSTD_CONTENTSIZE_UNKNOWN if the encoder streamed).
unsigned long long CheckOneZstdFrame(const std::string& path,
                                     const std::string& data) {
  std::string z = ReadFileOrDie(path);
  EXPECT_EQ(ZSTD_findFrameCompressedSize(z.data(), z.size()), z.size())
      << path << ": not exactly one frame";
  std::string out = path + ".out";
  EXPECT_EQ(
      RunShell(absl::StrCat("zstd -q -d -c '", path, "' > '", out, "'")), 0);
  EXPECT_TRUE(ReadFileOrDie(out) == data) << path << " via zstd -d";
  auto got = DecodeFile(path);
  EXPECT_TRUE(got.ok()) << got.status();
  if (got.ok()) {
    EXPECT_TRUE(*got == data) << path << " via Decoder";
  }
  return ZSTD_getFrameContentSize(z.data(), z.size());
}

TEST(CodecTest, SmallZstdOutputIsCompressedWholeWithItsSize) {
  TempDir dir;
  std::string data = TestData(5000);
  std::string path = dir.Join("small.zst");
  EncodeFile(path, Codec::kZstd, OddChunks(data));  // default options
  EXPECT_EQ(CheckOneZstdFrame(path, data), 5000u);
}

TEST(CodecTest, ZstdHoldsBackExactlyHoldBytes) {
  TempDir dir;
  CodecOptions options;
  options.zstd_hold_bytes = 1000;
  std::string at = TestData(1000);
  EncodeFile(dir.Join("at.zst"), Codec::kZstd,
             {at.substr(0, 600), at.substr(600)}, options);
  EXPECT_EQ(CheckOneZstdFrame(dir.Join("at.zst"), at), 1000u);
  std::string over = TestData(1001);
  EncodeFile(dir.Join("over.zst"), Codec::kZstd,
             {over.substr(0, 600), over.substr(600)}, options);
  EXPECT_EQ(CheckOneZstdFrame(dir.Join("over.zst"), over),
            ZSTD_CONTENTSIZE_UNKNOWN);
}

TEST(CodecTest, ZstdStreamsPastHeldBytesWithAndWithoutWorkers) {
  TempDir dir;
  std::string data = TestData(3000000);
  for (size_t hold : {size_t{0}, size_t{1000}, size_t{1} << 20}) {
    for (int workers : {0, 1}) {
      SCOPED_TRACE(absl::StrCat("hold ", hold, ", workers ", workers));
      CodecOptions options;
      options.zstd_hold_bytes = hold;
      options.zstd_workers = workers;
      std::string path =
          dir.Join(absl::StrCat("s", hold, "w", workers, ".zst"));
      EncodeFile(path, Codec::kZstd, OddChunks(data), options);
      EXPECT_EQ(CheckOneZstdFrame(path, data), ZSTD_CONTENTSIZE_UNKNOWN);
    }
  }
}

TEST(CodecTest, GzipFileReadableByGzipCli) {
  TempDir dir;
  std::string data = TestData(2000000);
  std::string path = dir.Join("a.gz");
  EncodeFile(path, Codec::kGzip, OddChunks(data));
  std::string out = dir.Join("a.out");
  ASSERT_EQ(RunShell(absl::StrCat("gzip -d -c '", path, "' > '", out, "'")), 0);
  EXPECT_TRUE(ReadFileOrDie(out) == data);
}

TEST(CodecTest, DecoderReadsConcatenatedZstdFramesFromCli) {
  TempDir dir;
  std::string a = TestData(700000), b = "second frame\n";
  WriteFileOrDie(dir.Join("a"), a);
  WriteFileOrDie(dir.Join("b"), b);
  std::string path = dir.Join("ab.zst");
  ASSERT_EQ(RunShell(absl::StrCat("cd '", dir.path(),
                                  "' && zstd -q -c a > ab.zst && "
                                  "zstd -q -c b >> ab.zst")),
            0);
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == a + b);
}

TEST(CodecTest, DecoderReadsMultiMemberGzipFromCli) {
  TempDir dir;
  std::string a = TestData(700000), b = "second member\n";
  WriteFileOrDie(dir.Join("a"), a);
  WriteFileOrDie(dir.Join("b"), b);
  std::string path = dir.Join("ab.gz");
  ASSERT_EQ(
      RunShell(absl::StrCat("cd '", dir.path(),
                            "' && gzip -c a > ab.gz && gzip -c b >> ab.gz")),
      0);
  auto got = DecodeFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == a + b);
}

TEST(CodecTest, DecoderDetectsFormatByMagicNotName) {
  TempDir dir;
  std::string zst_named_txt = dir.Join("really-zstd.txt");
  EncodeFile(zst_named_txt, Codec::kZstd, {"hello zstd\n"});
  std::string gz_named_txt = dir.Join("really-gzip.txt");
  EncodeFile(gz_named_txt, Codec::kGzip, {"hello gzip\n"});
  std::string raw_named_zst = dir.Join("really-raw.zst");
  WriteFileOrDie(raw_named_zst, "plain\n");
  std::string tiny = dir.Join("tiny");
  WriteFileOrDie(tiny, "\x1f");  // shorter than any magic

  EXPECT_EQ(DecodeFile(zst_named_txt).value(), "hello zstd\n");
  EXPECT_EQ(DecodeFile(gz_named_txt).value(), "hello gzip\n");
  EXPECT_EQ(DecodeFile(raw_named_zst).value(), "plain\n");
  EXPECT_EQ(DecodeFile(tiny).value(), "\x1f");
  EXPECT_EQ(Decoder::Open(raw_named_zst).value()->codec(), Codec::kRaw);
  EXPECT_EQ(Decoder::Open(zst_named_txt).value()->codec(), Codec::kZstd);
}

TEST(CodecTest, OpenMissingFileIsNotFoundNamingPath) {
  TempDir dir;
  std::string path = dir.Join("missing.zst");
  auto dec = Decoder::Open(path);
  ASSERT_FALSE(dec.ok());
  EXPECT_EQ(dec.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dec.status().message(), path + ": open: No such file or directory");
}

// Encodes `data` with `codec` and returns the compressed bytes.
std::string Compressed(const TempDir& dir, Codec codec,
                       const std::string& data) {
  std::string path = dir.Join("tmp-compressed");
  EncodeFile(path, codec, {data});
  return ReadFileOrDie(path);
}

TEST(CodecTest, TruncatedZstdIsDataLoss) {
  TempDir dir;
  std::string z = Compressed(dir, Codec::kZstd, TestData(1000000));
  std::string path = dir.Join("trunc.zst");
  WriteFileOrDie(path, z.substr(0, z.size() / 2));
  auto got = DecodeFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(got.status().message(), path + ": truncated zstd data");
}

TEST(CodecTest, ZstdWithBadChecksumIsDataLoss) {
  TempDir dir;
  std::string z = Compressed(dir, Codec::kZstd, TestData(100000));
  z[z.size() - 1] ^= 0x5A;  // last byte belongs to the content checksum
  std::string path = dir.Join("bad.zst");
  WriteFileOrDie(path, z);
  auto got = DecodeFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(),
              HasSubstr(path + ": corrupt zstd data: "));
  EXPECT_THAT(got.status().message(), HasSubstr("checksum"));
}

TEST(CodecTest, GarbageAfterZstdFrameIsDataLoss) {
  TempDir dir;
  std::string z = Compressed(dir, Codec::kZstd, "ok\n");
  std::string path = dir.Join("garbage.zst");
  WriteFileOrDie(path, z + "not a frame");
  auto got = DecodeFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(got.status().message(),
              HasSubstr(path + ": corrupt zstd data: "));
}

TEST(CodecTest, TruncatedGzipIsDataLoss) {
  TempDir dir;
  std::string z = Compressed(dir, Codec::kGzip, TestData(1000000));
  std::string path = dir.Join("trunc.gz");
  WriteFileOrDie(path, z.substr(0, z.size() / 2));
  auto got = DecodeFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(got.status().message(), path + ": truncated gzip data");
}

TEST(CodecTest, GzipWithBadCrcIsDataLoss) {
  TempDir dir;
  std::string z = Compressed(dir, Codec::kGzip, TestData(100000));
  z[z.size() - 8] ^= 0x5A;  // first byte of the CRC-32 trailer
  std::string path = dir.Join("bad.gz");
  WriteFileOrDie(path, z);
  auto got = DecodeFile(path);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(got.status().message(),
            path + ": corrupt gzip data: incorrect data check");
}

TEST(CodecTest, WriteErrorNamesSubjectAndPoisonsEncoder) {
  int fd = open("/dev/full", O_WRONLY);
  ASSERT_GE(fd, 0);
  auto enc = Encoder::Create(Codec::kRaw, fd, {}, "/out/x.txt");
  ASSERT_TRUE(enc.ok());
  absl::Status s = (*enc)->Write(TestData(300000));
  close(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(s.message(), "/out/x.txt: write: No space left on device");
  absl::Status again = (*enc)->Write("x");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(again.message(), "/out/x.txt: encoder already finished or failed");
}

TEST(CodecTest, ZstdFinishReportsWriteError) {
  int fd = open("/dev/full", O_WRONLY);
  ASSERT_GE(fd, 0);
  auto enc = Encoder::Create(Codec::kZstd, fd, {}, "/out/x.zst");
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*enc)->Write("small").ok());  // still buffered
  absl::Status s = (*enc)->Finish();
  close(fd);
  EXPECT_EQ(s.message(), "/out/x.zst: write: No space left on device");
}

TEST(CodecTest, StreamingZstdFinishReportsWriteError) {
  int fd = open("/dev/full", O_WRONLY);
  ASSERT_GE(fd, 0);
  CodecOptions options;
  options.zstd_hold_bytes = 0;
  auto enc = Encoder::Create(Codec::kZstd, fd, options, "/out/x.zst");
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*enc)->Write("small").ok());  // in zstd's buffers
  absl::Status s = (*enc)->Finish();
  close(fd);
  EXPECT_EQ(s.message(), "/out/x.zst: write: No space left on device");
}

TEST(CodecTest, WriteAfterFinishFails) {
  TempDir dir;
  std::string path = dir.Join("f.gz");
  int fd = open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  auto enc = Encoder::Create(Codec::kGzip, fd, {}, path);
  ASSERT_TRUE(enc.ok());
  ASSERT_TRUE((*enc)->Finish().ok());
  EXPECT_EQ((*enc)->Write("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*enc)->Finish().code(), absl::StatusCode::kFailedPrecondition);
  close(fd);
}

TEST(CodecTest, BadLevelsAreInvalidArgument) {
  CodecOptions zstd;
  zstd.zstd_level = 99;
  auto z = Encoder::Create(Codec::kZstd, 1, zstd, "o.zst");
  ASSERT_FALSE(z.ok());
  EXPECT_EQ(z.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(z.status().message(), HasSubstr("o.zst: bad zstd options"));
  CodecOptions gzip;
  gzip.gzip_level = 10;
  auto g = Encoder::Create(Codec::kGzip, 1, gzip, "o.gz");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().message(), "o.gz: bad gzip level 10 (allowed 0..9)");
}

}  // namespace
}  // namespace asflow
