// What a finished attempt means for its execution: the daemon's rules
// (cooldown, then DESIGN's: retry while attempts remain, then skip, then
// suppress, else fail; infrastructure trouble is never the command's fault) as one pure
// function of the result, so each rule is pinned by a unit test.
#ifndef ASFLOW_SERVER_ATTEMPT_OUTCOME_H_
#define ASFLOW_SERVER_ATTEMPT_OUTCOME_H_

#include <string>

#include "absl/time/time.h"
#include "asflow/v1/flow.pb.h"
#include "server/error_rules.h"
#include "server/runner.h"

namespace asflow {

struct AttemptOutcome {
  enum class Kind {
    // Not the command's fault (its worker was lost; or it was killed
    // because no run needed it, and a run joined meanwhile): queued again
    // at once, not counted as an attempt.
    kRequeue,
    // No worker could take it although its pool had room by count: queued
    // again after `delay`, not counted.
    kRequeueLater,
    // A retry rule matched: queued again after `delay`.
    kRetry,
    // A cooldown rule matched: queued again at once, not counted; the gates
    // of its task (its keys, else the task) start nothing until
    // `cooldown_until`.
    kCooldown,
    // Done with: `state` (DONE, SKIPPED, SUPPRESSED or FAILED).
    kFinal,
  };
  Kind kind = Kind::kFinal;
  v1::InstanceState state = v1::DONE;
  // kFinal: the error text recorded (what happened, then stderr's tail or
  // the traceback). Otherwise the note the waiting instances show.
  std::string error;
  // kFinal SUPPRESSED: what the .err file holds (the traceback alone for
  // an exception, as AsFlow writes it; else the error text).
  std::string err_file;
  absl::Duration delay;
  // kRequeue because the worker was lost: counts towards the loss limit.
  bool lost = false;
  // kCooldown: when it ends, and what matched ("429").
  absl::Time cooldown_until;
  std::string cooldown_cause;
  // kFinal FAILED because the cooldown cap was reached: the count of the
  // task's gates starts again.
  bool cooldown_cap = false;
};

// What the scheduler knows about the execution besides its result.
struct AttemptContext {
  int attempts = 0;      // attempts started, including this one
  int losses = 0;        // worker losses before this attempt
  int max_losses = 3;    // the loss that fails the instance
  bool cancelling = false;  // it was being killed because no run needed it
  absl::Time now;           // when the result came
  // Whether a gate of its task is cooling down now (a matching error then
  // extends that cooldown), and the most cooldowns its gates went through
  // in a row (without a success) so far.
  bool cooling = false;
  int consecutive_cooldowns = 0;
};

// How long an unplaced execution waits before it is tried again.
inline constexpr absl::Duration kUnplacedPause = absl::Milliseconds(200);

// `jitter_u`, uniform in [0, 1), draws the retry's jitter.
AttemptOutcome JudgeAttempt(const ExecResult& result, const ErrorRules& rules, const AttemptContext& ctx,
                            double jitter_u);

// The error text recorded for a failed result: Describe(), then the last
// line of stderr's tail, then the tail (or the traceback of an exception).
std::string ErrorText(const ExecResult& result);

}  // namespace asflow

#endif  // ASFLOW_SERVER_ATTEMPT_OUTCOME_H_
