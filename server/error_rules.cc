#include "server/error_rules.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/spec_validator.h"
#include "re2/re2.h"
#include "server/throttle.h"

namespace asflow {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

template <typename Rule>
absl::Status ErrorRules::CompileMatcher(const Rule& rule, const std::string& field, Matcher* out) {
  out->exit_codes.insert(rule.exit_codes().begin(), rule.exit_codes().end());
  out->signals.insert(rule.signals().begin(), rule.signals().end());
  for (const std::string& e : rule.errors()) {
    // Builtins are reported bare ("ValueError").
    out->errors.insert(absl::StartsWith(e, "builtins.") ? e.substr(9) : e);
  }
  out->timeout = rule.timeout();
  if (!rule.stderr().empty()) {
    RE2::Options options;
    options.set_log_errors(false);
    out->stderr_re = std::make_unique<re2::RE2>(rule.stderr(), options);
    if (!out->stderr_re->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".stderr: invalid regular expression: ", out->stderr_re->error()));
    }
  }
  return absl::OkStatus();
}

bool ErrorRules::Matcher::Matches(const AttemptFacts& facts) const {
  if (facts.exit_code >= 0 && exit_codes.contains(facts.exit_code)) return true;
  if (facts.signal > 0 && signals.contains(facts.signal)) return true;
  if (timeout && facts.timed_out) return true;
  if (stderr_re != nullptr && re2::RE2::PartialMatch(facts.stderr_tail, *stderr_re)) return true;
  for (const std::string& e : facts.errors) {
    // "pkg.mod.TranscriptsDisabled" is matched by itself or by
    // "TranscriptsDisabled".
    size_t dot = e.rfind('.');
    if (errors.contains(e) || (dot != std::string::npos && errors.contains(e.substr(dot + 1)))) return true;
  }
  return false;
}

absl::StatusOr<std::shared_ptr<const ErrorRules>> ErrorRules::Compile(const v1::TaskSpec& task) {
  auto rules = std::make_shared<ErrorRules>();
  if (absl::Status s = CompileMatcher(task.cooldown(), "cooldown", &rules->cooldown_); !s.ok()) return s;
  if (!task.cooldown().retry_after().empty()) {
    RE2::Options options;
    options.set_log_errors(false);
    rules->retry_after_ = std::make_unique<re2::RE2>(task.cooldown().retry_after(), options);
    if (!rules->retry_after_->ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cooldown.retry_after: invalid regular expression: ", rules->retry_after_->error()));
    }
    if (rules->retry_after_->NumberOfCapturingGroups() != 1) {
      return absl::InvalidArgumentError("cooldown.retry_after: needs exactly one capture group");
    }
  }
  if (task.cooldown().has_duration()) rules->cooldown_for_ = FromProto(task.cooldown().duration());
  if (task.cooldown().max_cooldowns() > 0) rules->max_cooldowns_ = task.cooldown().max_cooldowns();
  if (absl::Status s = CompileMatcher(task.retry(), "retry", &rules->retry_); !s.ok()) return s;
  if (absl::Status s = CompileMatcher(task.skip(), "skip", &rules->skip_); !s.ok()) return s;
  if (absl::Status s = CompileMatcher(task.suppress(), "suppress", &rules->suppress_); !s.ok()) return s;
  rules->retry_attempts_ = RetriesOf(task.retry());
  rules->backoff_ = FromProto(task.retry().backoff());
  rules->jitter_ = FromProto(task.retry().jitter());
  return std::shared_ptr<const ErrorRules>(std::move(rules));
}

Verdict ErrorRules::Classify(const AttemptFacts& facts, int attempts) const {
  if (cooldown_.Matches(facts)) return Verdict::kCooldown;
  // attempts - 1 retries have happened so far.
  if (attempts - 1 < retry_attempts_ && retry_.Matches(facts)) return Verdict::kRetry;
  if (skip_.Matches(facts)) return Verdict::kSkip;
  if (suppress_.Matches(facts)) return Verdict::kSuppress;
  return Verdict::kFail;
}

absl::Duration ErrorRules::RetryDelay(int attempts, double u) const {
  int shift = std::min(std::max(attempts - 1, 0), 20);  // cap: backoff x 2^20
  return backoff_ * static_cast<double>(1 << shift) + jitter_ * u;
}

}  // namespace asflow

namespace asflow {

absl::Duration ErrorRules::CooldownFor(absl::string_view text, absl::Time now) const {
  re2::StringPiece value;
  if (retry_after_ != nullptr && re2::RE2::PartialMatch(re2::StringPiece(text.data(), text.size()), *retry_after_,
                                                        &value)) {
    if (std::optional<absl::Duration> wait = ParseRetryAfter(absl::string_view(value.data(), value.size()), now)) {
      return *wait;
    }
  }
  return cooldown_for_;
}

std::string ErrorRules::CooldownCause(const AttemptFacts& facts) const {
  re2::StringPiece matched;
  if (cooldown_.stderr_re != nullptr &&
      cooldown_.stderr_re->Match(facts.stderr_tail, 0, facts.stderr_tail.size(), re2::RE2::UNANCHORED, &matched,
                                 1) &&
      !matched.empty()) {
    std::string text(matched.data(), std::min<size_t>(matched.size(), 60));
    for (char& c : text) {
      if (c == '\n' || c == '\r' || c == '\t') c = ' ';
    }
    return text;
  }
  if (facts.exit_code >= 0 && cooldown_.exit_codes.contains(facts.exit_code)) {
    return absl::StrCat("exit code ", facts.exit_code);
  }
  if (facts.signal > 0 && cooldown_.signals.contains(facts.signal)) return absl::StrCat("signal ", facts.signal);
  if (cooldown_.timeout && facts.timed_out) return "timeout";
  if (!facts.errors.empty()) return facts.errors.front();
  return "cooldown rule";
}

}  // namespace asflow
