// asflowctl throttle / pause / resume: throttle keys and task gates
// (docs/flows.md, "Throttle keys"; docs/behaviour.md, "Pause and resume").
#ifndef ASFLOW_CLIENT_THROTTLE_COMMANDS_H_
#define ASFLOW_CLIENT_THROTTLE_COMMANDS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rpc/channel.h"

namespace asflow {

// Lists keys (and paused or cooling task gates): limit, in flight, rate,
// state, queued.
int ThrottleCommand(const ClientOptions& client);
// Pauses a key or task; `duration` empty: until `asflowctl resume`.
int PauseCommand(const ClientOptions& client, const std::string& target, const std::string& duration);
int ResumeCommand(const ClientOptions& client, const std::string& target);

// "10m", "90s", "1h30m" -> a positive duration; InvalidArgument quoting it.
absl::StatusOr<absl::Duration> ParsePauseDuration(const std::string& text);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_THROTTLE_COMMANDS_H_
