#include "server/error_rules.h"

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/spec_validator.h"
#include "re2/re2.h"

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
  if (absl::Status s = CompileMatcher(task.retry(), "retry", &rules->retry_); !s.ok()) return s;
  if (absl::Status s = CompileMatcher(task.skip(), "skip", &rules->skip_); !s.ok()) return s;
  if (absl::Status s = CompileMatcher(task.suppress(), "suppress", &rules->suppress_); !s.ok()) return s;
  rules->retry_attempts_ = RetriesOf(task.retry());
  rules->backoff_ = FromProto(task.retry().backoff());
  rules->jitter_ = FromProto(task.retry().jitter());
  return std::shared_ptr<const ErrorRules>(std::move(rules));
}

Verdict ErrorRules::Classify(const AttemptFacts& facts, int attempts) const {
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
