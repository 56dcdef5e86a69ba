// asflowctl's subcommands. Each returns the process exit code: 0 success,
// 1 the run failed or was cancelled, 2 bad usage or a bad flow file, 3 the
// daemon could not be reached or refused the request.
#ifndef ASFLOW_CLIENT_COMMANDS_H_
#define ASFLOW_CLIENT_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/connection.h"

namespace asflow {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRunFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;

struct RunCommandOptions {
  std::string flow_file;
  std::vector<std::string> params;  // "name=value"
  bool keep_going = false;
  bool detach = false;
};

int RunCommand(const ClientOptions& client, const RunCommandOptions& options);
int WatchCommand(const ClientOptions& client, int64_t run_id);
int RunsCommand(const ClientOptions& client, int limit);
int TasksCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                 const std::vector<std::string>& states);
int CancelCommand(const ClientOptions& client, int64_t run_id);
int CatCommand(const std::vector<std::string>& paths);
int DaemonStopCommand(const ClientOptions& client);
int DaemonStatusCommand(const ClientOptions& client);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_COMMANDS_H_
