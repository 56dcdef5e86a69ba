// ErrorRules: a task's cooldown / retry / skip / suppress rules, compiled
// once per run, and the pure decision of what a failed attempt becomes.
// Order: cooldown, then retry while attempts remain and a retry matcher
// matches, then skip, then suppress, else fail. Immutable after Compile; thread-compatible.
#ifndef ASFLOW_SERVER_ERROR_RULES_H_
#define ASFLOW_SERVER_ERROR_RULES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "asflow/v1/flow.pb.h"

namespace re2 {
class RE2;
}

namespace asflow {

// What is known about one failed attempt.
struct AttemptFacts {
  int exit_code = -1;      // >= 0 when the command exited
  int signal = 0;          // when it was killed by a signal
  bool timed_out = false;
  std::string stderr_tail;
  // Exception type and bases from an SDK handler, most derived first, as
  // "module.QualName"; an `errors` entry matches one of them whole or its
  // last dotted component.
  std::vector<std::string> errors;
};

enum class Verdict { kCooldown, kRetry, kSkip, kSuppress, kFail };

class ErrorRules {
 public:
  // InvalidArgument names the field when a stderr regex does not compile.
  static absl::StatusOr<std::shared_ptr<const ErrorRules>> Compile(const v1::TaskSpec& task);

  // `attempts` is how many attempts have run, including this failed one.
  Verdict Classify(const AttemptFacts& facts, int attempts) const;
  // Delay before the next attempt after `attempts` attempts:
  // backoff * 2^(attempts-1) + jitter * u, with u uniform in [0, 1).
  absl::Duration RetryDelay(int attempts, double u) const;
  int max_retries() const { return retry_attempts_; }

  // How long a matched cooldown lasts: what `retry_after` captures from
  // `text` (seconds or an HTTP date, relative to `now`), else `for`.
  absl::Duration CooldownFor(absl::string_view text, absl::Time now) const;
  // What made the cooldown rule match, for the note shown while it lasts:
  // the text its stderr regex matched ("429"), else "exit code 75",
  // "signal 9", "timeout" or the exception type.
  std::string CooldownCause(const AttemptFacts& facts) const;
  // The cap on consecutive cooldowns (default 5).
  int max_cooldowns() const { return max_cooldowns_; }

 private:
  // Matches when any listed condition holds; an empty matcher never does.
  struct Matcher {
    absl::flat_hash_set<int> exit_codes;
    absl::flat_hash_set<int> signals;
    std::unique_ptr<re2::RE2> stderr_re;
    bool timeout = false;
    absl::flat_hash_set<std::string> errors;
    bool Matches(const AttemptFacts& facts) const;
  };
  template <typename Rule>
  static absl::Status CompileMatcher(const Rule& rule, const std::string& field, Matcher* out);

  Matcher cooldown_;
  std::unique_ptr<re2::RE2> retry_after_;
  absl::Duration cooldown_for_ = absl::Seconds(60);
  int max_cooldowns_ = 5;
  Matcher retry_;
  Matcher skip_;
  Matcher suppress_;
  int retry_attempts_ = 0;
  absl::Duration backoff_;
  absl::Duration jitter_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_ERROR_RULES_H_
