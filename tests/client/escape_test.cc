#include "client/escape.h"

#include "gtest/gtest.h"

namespace asflow {
namespace {

TEST(EscapeTest, ControlCharactersAndEscapeSequencesAreShownEscaped) {
  EXPECT_EQ(EscapeLine("a\x1b[2Jb"), "a\\x1b[2Jb");
  EXPECT_EQ(EscapeLine("title\x1b]0;pwned\x07!"), "title\\x1b]0;pwned\\x07!");
  EXPECT_EQ(EscapeLine("one\ntwo\rthree\tfour"), "one\\ntwo\\rthree\\tfour");
  EXPECT_EQ(EscapeLine(std::string("nul\0byte\x7f", 9)), "nul\\x00byte\\x7f");
  // C1 CSI (U+009B) starts a sequence on some terminals on its own.
  EXPECT_EQ(EscapeLine("x\xc2\x9b" "31mred"), "x\\u009b31mred");
}

TEST(EscapeTest, PrintableUtf8AndBackslashesStayAsTheyAre) {
  EXPECT_EQ(EscapeLine("café 東京 🚀 a\\b"), "café 東京 🚀 a\\b");
  EXPECT_EQ(EscapeLine("\xc2\xa0nbsp"), "\xc2\xa0nbsp");
}

TEST(EscapeTest, BytesThatAreNotUtf8AreShownAsHex) {
  EXPECT_EQ(EscapeLine("a\xff\xfe" "b"), "a\\xff\\xfeb");
  EXPECT_EQ(EscapeLine("cut \xe6\x9d"), "cut \\xe6\\x9d");
  EXPECT_EQ(EscapeLine("\xc0\xaf"), "\\xc0\\xaf");  // overlong '/'
  EXPECT_EQ(EscapeLine("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

TEST(EscapeTest, EscapeTextKeepsLineBreaks) {
  EXPECT_EQ(EscapeText("line 1\x1b[K\nline 2\r\n"), "line 1\\x1b[K\nline 2\\r\n");
}

}  // namespace
}  // namespace asflow
