// JudgeAttempt on a code session's exception: the rules see its text.
#include "server/attempt_outcome.h"

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace asflow {
namespace {

// What SessionHub makes of a ResultOp that raised: exit code 1, the
// exception's types and its traceback, no stderr.
ExecResult PythonException(std::string text) {
  ExecResult r;
  r.process.exit_code = 1;
  r.process.error_types = {"test.Throttled", "Exception"};
  r.process.error_text = std::move(text);
  return r;
}

std::shared_ptr<const ErrorRules> Rules(const std::string& stderr_re) {
  v1::TaskSpec spec;
  spec.set_name("t");
  spec.mutable_cooldown()->set_stderr(stderr_re);
  spec.mutable_cooldown()->set_retry_after(R"(Retry-After: (\d+))");
  spec.mutable_suppress()->set_stderr("Gone for good");
  auto rules = ErrorRules::Compile(spec);
  EXPECT_TRUE(rules.ok()) << rules.status();
  return *rules;
}

TEST(AttemptOutcomeTest, StderrMatchersSeeACodeSessionsExceptionText) {
  const absl::Time now = absl::FromUnixSeconds(1000);
  AttemptContext ctx;
  ctx.attempts = 1;
  ctx.now = now;
  auto rules = Rules("HTTP 429 Too Many Requests");
  AttemptOutcome out = JudgeAttempt(
      PythonException("Traceback (most recent call last):\n  File \"t.py\", line 3, in f\n"
                      "test.Throttled: HTTP 429 Too Many Requests; Retry-After: 3\n"),
      *rules, ctx, 0.0);
  EXPECT_EQ(out.kind, AttemptOutcome::Kind::kCooldown);
  EXPECT_EQ(out.cooldown_until, now + absl::Seconds(3));
  EXPECT_EQ(out.cooldown_cause, "HTTP 429 Too Many Requests");

  out = JudgeAttempt(PythonException("Traceback ...\ntest.Throttled: Gone for good\n"), *rules, ctx, 0.0);
  EXPECT_EQ(out.kind, AttemptOutcome::Kind::kFinal);
  EXPECT_EQ(out.state, v1::SUPPRESSED);
}

TEST(AttemptOutcomeTest, AProcessesStderrTailIsWhatItsMatchersSee) {
  ExecResult r;
  r.process.exit_code = 75;
  r.process.stderr_tail = "fetching\n";
  r.process.error_text = "";
  AttemptContext ctx;
  ctx.attempts = 1;
  auto rules = Rules("429");
  EXPECT_EQ(JudgeAttempt(r, *rules, ctx, 0.0).state, v1::FAILED);
  r.process.stderr_tail = "HTTP 429\nRetry-After: 7\n";
  ctx.now = absl::FromUnixSeconds(50);
  AttemptOutcome out = JudgeAttempt(r, *rules, ctx, 0.0);
  EXPECT_EQ(out.kind, AttemptOutcome::Kind::kCooldown);
  EXPECT_EQ(out.cooldown_until, ctx.now + absl::Seconds(7));
}

}  // namespace
}  // namespace asflow
