#include "server/error_rules.h"

#include "gtest/gtest.h"

namespace asflow {
namespace {

v1::TaskSpec Task() {
  v1::TaskSpec t;
  t.set_name("extract");
  v1::RetryRule* r = t.mutable_retry();
  r->set_attempts(2);
  r->add_exit_codes(75);
  r->set_timeout(true);
  r->mutable_backoff()->set_seconds(2);
  r->mutable_jitter()->set_seconds(1);
  t.mutable_skip()->set_stderr("ParseError");
  t.mutable_suppress()->add_exit_codes(3);
  t.mutable_suppress()->set_stderr("Transcripts?Disabled");
  t.mutable_suppress()->add_signals(9);
  return t;
}

AttemptFacts Exit(int code, std::string err = "") {
  AttemptFacts f;
  f.exit_code = code;
  f.stderr_tail = std::move(err);
  return f;
}

TEST(ErrorRulesTest, RetryWhileAttemptsRemainThenFallThrough) {
  auto rules = ErrorRules::Compile(Task());
  ASSERT_TRUE(rules.ok()) << rules.status();
  EXPECT_EQ((*rules)->Classify(Exit(75), 1), Verdict::kRetry);
  EXPECT_EQ((*rules)->Classify(Exit(75), 2), Verdict::kRetry);
  EXPECT_EQ((*rules)->Classify(Exit(75), 3), Verdict::kFail);  // 2 retries used
}

TEST(ErrorRulesTest, SkipBeforeSuppressBeforeFail) {
  auto rules = *ErrorRules::Compile(Task());
  // Both skip (stderr) and suppress (exit 3) match: skip wins.
  EXPECT_EQ(rules->Classify(Exit(3, "x\nParseError: bad json\n"), 1), Verdict::kSkip);
  EXPECT_EQ(rules->Classify(Exit(3, "whatever"), 1), Verdict::kSuppress);
  EXPECT_EQ(rules->Classify(Exit(1, "TranscriptsDisabled for v1"), 1), Verdict::kSuppress);
  EXPECT_EQ(rules->Classify(Exit(1, "boom"), 1), Verdict::kFail);
}

TEST(ErrorRulesTest, SignalsAndTimeouts) {
  auto rules = *ErrorRules::Compile(Task());
  AttemptFacts killed;
  killed.signal = 9;
  EXPECT_EQ(rules->Classify(killed, 1), Verdict::kSuppress);
  killed.signal = 15;
  EXPECT_EQ(rules->Classify(killed, 1), Verdict::kFail);
  AttemptFacts timeout;
  timeout.timed_out = true;
  timeout.signal = 15;
  EXPECT_EQ(rules->Classify(timeout, 1), Verdict::kRetry);
  EXPECT_EQ(rules->Classify(timeout, 3), Verdict::kFail);
}

TEST(ErrorRulesTest, NoRulesMeansFail) {
  v1::TaskSpec t;
  auto rules = *ErrorRules::Compile(t);
  EXPECT_EQ(rules->Classify(Exit(1, "anything"), 1), Verdict::kFail);
  AttemptFacts to;
  to.timed_out = true;
  EXPECT_EQ(rules->Classify(to, 1), Verdict::kFail);
}

TEST(ErrorRulesTest, SdkErrorTypes) {
  v1::TaskSpec t;
  t.mutable_skip()->add_errors("ConnectionResetError");
  auto rules = *ErrorRules::Compile(t);
  AttemptFacts f;
  f.errors = {"ValueError", "ConnectionResetError"};
  EXPECT_EQ(rules->Classify(f, 1), Verdict::kSkip);
}

// A Python handler reports "module.QualName" and its bases; a rule names
// the type whole or by its last component, and a base matches its subclasses.
TEST(ErrorRulesTest, ErrorsMatchQualifiedNameOrLastComponent) {
  v1::TaskSpec t;
  t.mutable_skip()->add_errors("xml.etree.ElementTree.ParseError");
  t.mutable_suppress()->add_errors("TranscriptsDisabled");
  t.mutable_retry()->set_attempts(1);
  t.mutable_retry()->add_errors("builtins.ConnectionError");
  auto rules = *ErrorRules::Compile(t);
  AttemptFacts disabled;
  disabled.errors = {"youtube_transcript_api._errors.TranscriptsDisabled",
                     "youtube_transcript_api._errors.CouldNotRetrieveTranscript", "Exception", "BaseException"};
  EXPECT_EQ(rules->Classify(disabled, 1), Verdict::kSuppress);
  AttemptFacts parse;
  parse.errors = {"xml.etree.ElementTree.ParseError", "SyntaxError", "Exception", "BaseException"};
  EXPECT_EQ(rules->Classify(parse, 1), Verdict::kSkip);
  AttemptFacts other_parse;  // same last component, other module: the qualified rule does not match
  other_parse.errors = {"mylib.ParseError", "Exception", "BaseException"};
  EXPECT_EQ(rules->Classify(other_parse, 1), Verdict::kFail);
  AttemptFacts reset;  // a subclass of the builtin named with its module
  reset.errors = {"ConnectionResetError", "ConnectionError", "OSError", "Exception", "BaseException"};
  EXPECT_EQ(rules->Classify(reset, 1), Verdict::kRetry);
  EXPECT_EQ(rules->Classify(reset, 2), Verdict::kFail);
  AttemptFacts suffix_only;  // a partial last component is no match
  suffix_only.errors = {"pkg.NotTranscriptsDisabled"};
  EXPECT_EQ(rules->Classify(suffix_only, 1), Verdict::kFail);
}

TEST(ErrorRulesTest, RetryDelayDoublesPlusJitter) {
  auto rules = *ErrorRules::Compile(Task());
  EXPECT_EQ(rules->RetryDelay(1, 0.0), absl::Seconds(2));
  EXPECT_EQ(rules->RetryDelay(2, 0.0), absl::Seconds(4));
  EXPECT_EQ(rules->RetryDelay(3, 0.5), absl::Seconds(8.5));
}

TEST(ErrorRulesTest, BadRegexNamesField) {
  v1::TaskSpec t;
  t.mutable_suppress()->set_stderr("(unclosed");
  auto rules = ErrorRules::Compile(t);
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().message(), "suppress.stderr: invalid regular expression: missing ): (unclosed");
}

}  // namespace
}  // namespace asflow
