// asflowctl schedule add|list|remove|pause|resume: flow files the daemon
// submits on a timetable (docs/cli.md, "schedule").
#ifndef ASFLOW_CLIENT_SCHEDULE_COMMANDS_H_
#define ASFLOW_CLIENT_SCHEDULE_COMMANDS_H_

#include <string>
#include <vector>

#include "rpc/channel.h"

namespace asflow {

struct ScheduleAddOptions {
  std::string flow_file;
  std::string every;                // "6h"; or
  std::string cron;                 // "0 */6 * * *" (UTC)
  std::vector<std::string> params;  // name=value
  std::string workspace;            // "": the current directory
  std::string name;                 // "": the flow's name
  bool keep_going = false;
};

int ScheduleAddCommand(const ClientOptions& client, const ScheduleAddOptions& options);
// A table (or one JSON object per schedule with `json`).
int ScheduleListCommand(const ClientOptions& client, bool json);
// action: "remove", "pause" or "resume"; `target` a name or an id.
int ScheduleChangeCommand(const ClientOptions& client, const std::string& action, const std::string& target);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_SCHEDULE_COMMANDS_H_
