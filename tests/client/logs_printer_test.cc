#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "client/logs_command.h"

namespace asflow {
namespace {

v1::LogChunk Chunk(int64_t seq, const std::string& id, int attempt, const std::string& data, bool stored = false) {
  v1::LogChunk c;
  c.set_run_id(1);
  c.set_seq(seq);
  c.set_task("extract");
  (*c.mutable_params())["video_id"] = id;
  c.set_attempt(attempt);
  c.set_data(data);
  c.set_stored(stored);
  return c;
}

TEST(LogPrinterTest, PrefixesEachLineWithItsInstanceAndJoinsSplitLines) {
  LogPrinter p(/*prefix=*/true, /*escape=*/false);
  EXPECT_EQ(p.Add(Chunk(0, "a", 1, "one\ntw")), "extract(video_id=a) | one\n");
  EXPECT_EQ(p.Add(Chunk(1, "b", 1, "other\n")), "extract(video_id=b) | other\n");
  EXPECT_EQ(p.Add(Chunk(0, "a", 1, "o\r\nthree")), "extract(video_id=a) | two\n");
  EXPECT_EQ(p.Flush(), "extract(video_id=a) | three\n");
  EXPECT_EQ(p.Flush(), "");
}

TEST(LogPrinterTest, LaterAttemptsAreNumberedAndStoredTailsEndTheirLastLine) {
  LogPrinter p(true, false);
  EXPECT_EQ(p.Add(Chunk(0, "a", 1, "failed without newline", /*stored=*/true)),
            "extract(video_id=a) | failed without newline\n");
  EXPECT_EQ(p.Add(Chunk(0, "a", 2, "retry\n")), "extract(video_id=a) #2 | retry\n");
}

TEST(LogPrinterTest, WithoutPrefixAChangeOfAttemptIsMarked) {
  LogPrinter p(false, false);
  EXPECT_EQ(p.Add(Chunk(0, "a", 1, "first\n", true)), "first\n");
  EXPECT_EQ(p.Add(Chunk(0, "a", 2, "second\n")), "== attempt 2 (running) ==\nsecond\n");
}

TEST(LogPrinterTest, DroppedBytesAreSaid) {
  LogPrinter p(true, false);
  v1::LogChunk c = Chunk(0, "a", 1, "tail\n");
  c.set_dropped_bytes(4096);
  EXPECT_EQ(p.Add(c), "extract(video_id=a) | [4096 bytes not shown]\nextract(video_id=a) | tail\n");
}

TEST(LogPrinterTest, OnATerminalControlCharactersAreShownNotObeyed) {
  LogPrinter p(false, /*escape=*/true);
  EXPECT_EQ(p.Add(Chunk(0, "a", 1, "\x1b[2Jcleared?\n")), "\\x1b[2Jcleared?\n");
  LogPrinter raw(false, /*escape=*/false);
  EXPECT_EQ(raw.Add(Chunk(0, "a", 1, "\x1b[1mbold\n")), "\x1b[1mbold\n");
}

}  // namespace
}  // namespace asflow
