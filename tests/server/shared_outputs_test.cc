// The submit-time check for task definitions of different runs that may
// write the same outputs: output patterns meeting, and what counts as the
// same command.
#include "server/shared_outputs.h"

#include <string>

#include <gtest/gtest.h>

namespace asflow {
namespace {

std::string P(std::string text) {
  for (char& c : text) {
    if (c == '?') c = kPatternAny;  // '?' stands for a binding here
  }
  return text;
}

TEST(PatternsMayMeetTest, EqualLiteralsMeetAndOthersDoNot) {
  EXPECT_TRUE(PatternsMayMeet("out/a.txt", "out/a.txt"));
  EXPECT_FALSE(PatternsMayMeet("out/a.txt", "out/b.txt"));
  EXPECT_FALSE(PatternsMayMeet("out/a.txt", "out/a.txt.zst"));
  EXPECT_TRUE(PatternsMayMeet("", ""));
}

TEST(PatternsMayMeetTest, ABindingMatchesAnyTextSlashesIncluded) {
  EXPECT_TRUE(PatternsMayMeet(P("out/?.txt"), P("out/?.txt")));
  EXPECT_TRUE(PatternsMayMeet(P("out/?.txt"), "out/a/b.txt"));
  EXPECT_TRUE(PatternsMayMeet(P("out/?-?.txt"), P("out/?.txt")));
  EXPECT_TRUE(PatternsMayMeet(P("?"), "anything"));
  EXPECT_TRUE(PatternsMayMeet(P("a?"), P("?b")));  // "ab"
  EXPECT_FALSE(PatternsMayMeet(P("out/?.txt"), P("out/?.json")));
  EXPECT_FALSE(PatternsMayMeet(P("out/?.txt"), P("other/?.txt")));
  EXPECT_FALSE(PatternsMayMeet(P("a?"), "b"));
}

TEST(PatternsMayMeetTest, LongPatternsStayQuadratic) {
  std::string a, b;
  for (int i = 0; i < 1000; ++i) {
    a += P("?x");
    b += P("x?");
  }
  b += "y";
  EXPECT_FALSE(PatternsMayMeet(a, b));  // a ends in 'x', b in 'y'
}

}  // namespace
}  // namespace asflow
