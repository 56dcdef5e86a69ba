#include "server/attempt_outcome.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace asflow {
namespace {

// Infrastructure errors (cannot start, cannot write the output,
// cancelled) are never matched by rules: a rule describes how the command
// fails.
bool RulesApply(const ExecResult& r) {
  return r.output_status.ok() && r.process.spawn_status.ok() && r.process.output_status.ok() &&
         !r.process.cancelled;
}

AttemptFacts FactsOf(const ExecResult& r) {
  AttemptFacts facts;
  facts.exit_code = r.process.exit_code;
  facts.signal = r.process.term_signal;
  facts.timed_out = r.process.timed_out;
  facts.stderr_tail = r.process.stderr_tail;
  // A code session's exception has no stderr: its text (the traceback,
  // ending with "Type: message") is what `stderr` matchers see, as a
  // Python handler worker sends it as its stderr tail.
  if (facts.stderr_tail.empty()) facts.stderr_tail = r.process.error_text;
  facts.errors = r.process.error_types;
  return facts;
}

}  // namespace

std::string ErrorText(const ExecResult& r) {
  std::string text = r.Describe();
  // An SDK handler's exception: its traceback (ending with that line).
  if (!r.process.error_text.empty()) return absl::StrCat(text, "\n", r.process.error_text);
  std::string tail = r.process.stderr_tail;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  if (!tail.empty()) {
    size_t nl = tail.rfind('\n');
    absl::StrAppend(&text, ": ", nl == std::string::npos ? tail : tail.substr(nl + 1));
    absl::StrAppend(&text, "\n", tail);
  }
  return text;
}

AttemptOutcome JudgeAttempt(const ExecResult& result, const ErrorRules& rules, const AttemptContext& ctx,
                            double jitter_u) {
  AttemptOutcome out;
  if (ctx.cancelling && !result.ok()) {
    // Killed because no run needed it, but a run joined meanwhile: the
    // result says nothing about the instance.
    out.kind = AttemptOutcome::Kind::kRequeue;
    return out;
  }
  if (result.infra == ExecResult::Infra::kWithdrawn) {
    out.kind = AttemptOutcome::Kind::kRequeue;
    out.error = "its process stopped it (the caller went away); queued again";
    return out;
  }
  if (result.infra == ExecResult::Infra::kUnplaced) {
    out.kind = AttemptOutcome::Kind::kRequeueLater;
    out.delay = kUnplacedPause;
    return out;
  }
  ExecResult judged = result;
  if (result.infra == ExecResult::Infra::kLost) {
    if (ctx.losses + 1 < ctx.max_losses) {
      out.kind = AttemptOutcome::Kind::kRequeue;
      out.lost = true;
      out.error = absl::StrCat(result.output_status.message(), "; queued again (loss ", ctx.losses + 1, " of ",
                               ctx.max_losses, ")");
      return out;
    }
    judged.output_status = absl::UnavailableError(
        absl::StrCat("lost ", ctx.max_losses, " times, last: ", result.output_status.message()));
  }
  if (judged.ok()) return out;  // kFinal DONE
  out.error = ErrorText(judged);
  const AttemptFacts facts = FactsOf(judged);
  const Verdict verdict = RulesApply(judged) ? rules.Classify(facts, ctx.attempts) : Verdict::kFail;
  switch (verdict) {
    case Verdict::kCooldown:
      if (!ctx.cooling && ctx.consecutive_cooldowns >= rules.max_cooldowns()) {
        // A ban is not hammered forever: this would begin one cooldown
        // more than the cap allows.
        out.state = v1::FAILED;
        out.cooldown_cap = true;
        out.error = absl::StrCat("cooldown cap reached: ", ctx.consecutive_cooldowns,
                                 " cooldowns in a row without a success (max_cooldowns: ", rules.max_cooldowns(),
                                 "); ", out.error);
        return out;
      }
      out.kind = AttemptOutcome::Kind::kCooldown;
      out.cooldown_cause = rules.CooldownCause(facts);
      out.cooldown_until =
          ctx.now + rules.CooldownFor(absl::StrCat(facts.stderr_tail, "\n", judged.process.error_text), ctx.now);
      return out;
    case Verdict::kRetry:
      out.kind = AttemptOutcome::Kind::kRetry;
      out.delay = rules.RetryDelay(ctx.attempts, jitter_u);
      out.error = absl::StrCat("attempt ", ctx.attempts, " of ", rules.max_retries() + 1, " failed, retrying in ",
                               absl::FormatDuration(absl::Trunc(out.delay, absl::Milliseconds(1))), ": ",
                               out.error);
      return out;
    case Verdict::kSkip:
      out.state = v1::SKIPPED;
      return out;
    case Verdict::kSuppress:
      out.state = v1::SUPPRESSED;
      out.err_file = judged.process.error_text.empty() ? out.error : judged.process.error_text;
      return out;
    case Verdict::kFail:
      out.state = v1::FAILED;
      return out;
  }
  return out;
}

}  // namespace asflow
