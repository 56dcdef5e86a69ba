// asflowctl's subcommands. Each returns the process exit code: 0 success,
// 1 the run failed or was cancelled, 2 bad usage or a bad flow file, 3 the
// daemon could not be reached or refused the request.
#ifndef ASFLOW_CLIENT_COMMANDS_H_
#define ASFLOW_CLIENT_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "client/connection.h"
#include "client/progress_sink.h"

namespace asflow {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRunFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;
inline constexpr int kExitDetached = 130;  // Ctrl-C: the run goes on

struct RunCommandOptions {
  ProgressMode mode = ProgressMode::kAuto;
  int max_running = 8;  // running instances shown by the live view
  std::string flow_file;
  std::vector<std::string> params;  // "name=value"
  bool keep_going = false;
  bool detach = false;
  // --force TASK[,TASK]: run these tasks' instances even if their outputs
  // exist. --only TASK[,TASK]: run only these tasks' instances.
  std::vector<std::string> force;
  std::vector<std::string> only;
  // --dry-run: say what would run (FlowService.CheckFlow); submit nothing.
  bool dry_run = false;
};

int RunCommand(const ClientOptions& client, const RunCommandOptions& options);
int WatchCommand(const ClientOptions& client, int64_t run_id, int64_t from_seq, ProgressMode mode,
                 int max_running);
// With `json`, these print one JSON object per line (protobuf's JSON
// mapping with proto field names: the v1::Run, v1::WorkerInfo or
// v1::Instance) instead of a table.
int RunsCommand(const ClientOptions& client, int limit, bool json = false);
// Connected remote workers: pool, slots, running, last heartbeat.
int WorkersCommand(const ClientOptions& client, bool json = false);
int TasksCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                 const std::vector<std::string>& states, bool json = false);
int CancelCommand(const ClientOptions& client, int64_t run_id);
// Shows one instance: state, attempts, timings and its full stored error.
int ShowCommand(const ClientOptions& client, int64_t run_id, const std::string& task,
                const std::vector<std::string>& params, bool json = false);
struct ResetCommandOptions {
  int64_t run_id = 0;
  std::string task;
  std::string path;
  std::vector<std::string> states;
  // Without a run or a path, instances of every workspace, not only the
  // current directory's.
  bool all_workspaces = false;
  // Reset without asking when more than one run is touched.
  bool yes = false;
};
int ResetCommand(const ClientOptions& client, const ResetCommandOptions& options);
// Makes Ctrl-C during `run` and `watch` ask whether to cancel the run or
// detach from it (detach without asking when stdin is not a terminal).
// Blocks SIGINT in every thread and starts a thread that waits for it, so it
// must run before any gRPC channel (and its threads) exists.
void InstallInterruptHandler(const ClientOptions& client);
int CatCommand(const std::vector<std::string>& paths);
int DaemonStopCommand(const ClientOptions& client, bool now);
int DaemonStatusCommand(const ClientOptions& client);

}  // namespace asflow

#endif  // ASFLOW_CLIENT_COMMANDS_H_
