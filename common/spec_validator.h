// Semantic checks of a FlowSpec that the parser cannot make: names, the task
// graph, templates, limits, rates, durations and regexes. Pure; thread-safe.
#ifndef ASFLOW_COMMON_SPEC_VALIDATOR_H_
#define ASFLOW_COMMON_SPEC_VALIDATOR_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "asflow/v1/flow.pb.h"

namespace asflow {

class SourceMap;

// Most tasks a flow may define.
inline constexpr int kMaxTasks = 1000;
// Most bytes of one parameter value: a flow parameter, a -p override or a
// for_each binding (docs/behaviour.md, "Limits"). Values travel in every
// instance row, event and listing that names them.
inline constexpr size_t kMaxParamValueBytes = 64 << 10;
// Most bytes of a run's parameters, names and values together (and the same
// again for the environment a client hands its commands).
inline constexpr size_t kMaxRunParamsBytes = 256 << 10;

// OK, or one InvalidArgument listing all problems of spec, one per line,
// each "LOCATION: field.path: message" (LOCATION from `where` if non-null,
// else omitted). extra_params: names defined at run time in addition to
// spec.params (e.g. `-p` overrides); templates may use them.
absl::Status ValidateFlowSpec(const v1::FlowSpec& spec,
                              const SourceMap* where = nullptr,
                              absl::Span<const std::string> extra_params = {});

// How many retries a rule allows: `retries`, or the deprecated `attempts`
// (the same count under its old name).
int RetriesOf(const v1::RetryRule& rule);

// One warning per deprecated setting in spec ("LOCATION: field.path:
// message"), e.g. retry.attempts.
std::vector<std::string> DeprecationWarnings(const v1::FlowSpec& spec, const SourceMap* where = nullptr);

// As ValidateFlowSpec, for a spec a flow file's reader converted with
// errors at `form_error_paths` (field paths; "" the whole document):
// problems at, under or above one of those paths are left out, since they
// follow from it (an unknown key leaves its field unset).
absl::Status ValidateFlowSpecBeside(const v1::FlowSpec& spec, const SourceMap* where,
                                    const std::vector<std::string>& form_error_paths);

// A pool name (`pool:`, asflow-worker --pool): [A-Za-z0-9_.-]+.
bool IsPoolName(absl::string_view name);

// Checks a task a code session declares (docs/sessions.md): a name, no
// run/handler/for_each/needs/pool/timeout, a relative `on`, and the same
// limit, rate, compression and error rule checks as a flow file's task.
// InvalidArgument lists each problem as "spec.FIELD: message".
absl::Status ValidateCodeTask(const v1::TaskSpec& task);

// Tokens per second of a task's `rate` ("2/s", "30/min", "0.5/h"); 0 for an
// empty rate (unlimited). InvalidArgument quoting the text otherwise,
// including a rate of 0.
absl::StatusOr<double> ParseRatePerSecond(absl::string_view rate);

// A `rate` of a task or throttle key: fixed, or adaptive (docs/flows.md,
// "Adaptive pacing").
struct RateSpec {
  double per_second = 0;  // fixed: tokens per second; 0: unlimited
  bool adaptive = false;
  double max_per_second = 0;  // adaptive: where it starts and the most
  double min_per_second = 0;  // adaptive: the least it slows down to
};
inline constexpr double kAutoMaxRate = 5;    // `rate: auto`: 5/s
inline constexpr double kAutoMinRate = 0.1;  // ... down to 0.1/s
// "", "2/s" (as ParseRatePerSecond), "auto", or "auto(max: 5/s, min:
// 0.1/s)" (either bound, in any order; `=` for `:` too).
// InvalidArgument quoting the text, or when min > max.
absl::StatusOr<RateSpec> ParseRate(absl::string_view rate);

}  // namespace asflow

#endif  // ASFLOW_COMMON_SPEC_VALIDATOR_H_
