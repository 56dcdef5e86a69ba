// asflowctl: the asflow command line. Parses flags and dispatches to
// client/commands.
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "CLI/CLI.hpp"
#include "absl/synchronization/mutex.h"
#include "client/commands.h"
#include "client/dry_run.h"
#include "client/schedule_commands.h"
#include "client/logs_command.h"
#include "client/throttle_commands.h"
#include "common/paths.h"
#include "common/small_file.h"
#include "common/version.h"

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  // Debian's Abseil is built without NDEBUG, so every absl::Mutex (gRPC's
  // too) records lock-order edges for deadlock detection by default, and
  // every destroyed mutex takes a global lock to forget them: 3-6% of a
  // watcher's CPU. The tests keep detection on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  asflow::ClientOptions client;
  client.socket = asflow::DefaultSocketPath();
  if (const char* server = std::getenv("ASFLOW_SERVER")) client.server = server;

  CLI::App app{"asflowctl: submit, watch and inspect asflow runs"};
  app.set_version_flag("--version", asflow::VersionLine("asflowctl"));
  app.require_subcommand(1);
  app.add_option("--server", client.server, "HOST:PORT of a remote asflowd (env ASFLOW_SERVER)");
  app.add_option("--socket", client.socket, "Unix socket of the local asflowd")->capture_default_str();
  std::string token_file;
  if (const char* env = std::getenv("ASFLOW_TOKEN_FILE")) token_file = env;
  if (const char* env = std::getenv("ASFLOW_TLS_CA")) client.tls_ca = env;
  app.add_option("--token-file", token_file, "File with the bearer token for --server (env ASFLOW_TOKEN_FILE)");
  app.add_option("--tls-ca", client.tls_ca, "PEM CA of the --server's certificate: use TLS (env ASFLOW_TLS_CA)");
  app.add_option("--tls-cert", client.tls_cert, "PEM client certificate for mutual TLS");
  app.add_option("--tls-key", client.tls_key, "PEM client key for mutual TLS");

  asflow::RunCommandOptions run_opts;
  CLI::App* run = app.add_subcommand("run", "Submit a flow file and follow its progress");
  run->add_option("flow", run_opts.flow_file, "Flow file (.yaml, .json, .textproto)")->required();
  run->add_option("-p,--param", run_opts.params, "Override a flow parameter: name=value (repeatable)");
  run->add_flag("--keep-going", run_opts.keep_going, "Let independent instances finish after a failure");
  run->add_flag("--detach", run_opts.detach, "Print the run id and return at once");
  bool json = false, plain = false;
  run->add_flag("--json", json, "One JSON object per progress event (for scripts)");
  run->add_option("--max-running", run_opts.max_running, "Running instances the live view shows")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  run->add_flag("--plain", plain, "Plain progress lines even on a terminal");
  run->add_option("--force", run_opts.force,
                  "Run these tasks' instances even if their outputs exist: TASK[,TASK] (repeatable); the old output "
                  "is replaced when the new one commits");
  run->add_option("--only", run_opts.only,
                  "Run only these tasks' instances: TASK[,TASK] (repeatable); the tasks upstream of them must "
                  "have their outputs already");
  run->add_flag("--dry-run", run_opts.dry_run,
                "Say what would run, per task (cached, suppressed, waiting on upstream), and check each program "
                "is on the daemon's PATH; submit nothing");

  asflow::CheckCommandOptions check_opts;
  CLI::App* check = app.add_subcommand(
      "check", "Validate a flow file and its imports; with asflowd running, also a dry run (as run --dry-run)");
  check->add_option("flow", check_opts.flow_file, "Flow file (.yaml, .json, .textproto)")->required();
  check->add_option("-p,--param", check_opts.request.params, "Override a flow parameter: name=value (repeatable)");
  check->add_option("--force", check_opts.request.force, "As run --force");
  check->add_option("--only", check_opts.request.only, "As run --only");
  check->add_flag("--json", check_opts.json, "One JSON object (the v1.CheckFlowResponse)");
  check->add_flag("--local", check_opts.local, "Only the files: ask no daemon");

  int64_t run_id = 0;
  CLI::App* watch = app.add_subcommand("watch", "Follow a run's progress until it ends");
  watch->add_option("run", run_id, "Run id")->required();
  watch->add_flag("--json", json, "One JSON object per progress event (for scripts)");
  int64_t from_seq = 0;
  watch->add_option("--from-seq", from_seq,
                    "Resume after this event (its seq, e.g. from --json); missed events are replayed "
                    "while the daemon still buffers them, else a fresh snapshot comes first");
  watch->add_flag("--plain", plain, "Plain progress lines even on a terminal");
  watch->add_option("--max-running", run_opts.max_running, "Running instances the live view shows")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();

  int limit = 20;
  CLI::App* runs = app.add_subcommand("runs", "List recent runs");
  runs->add_option("-n,--limit", limit, "How many")->capture_default_str();
  const char* kJsonLines = "One JSON object per line (protobuf's JSON mapping; 64-bit integers as strings)";
  runs->add_flag("--json", json, kJsonLines);

  CLI::App* workers = app.add_subcommand("workers", "List connected remote workers");
  workers->add_flag("--json", json, kJsonLines);

  std::string task;
  std::vector<std::string> states;
  CLI::App* tasks = app.add_subcommand("tasks", "List the instances of a run");
  tasks->add_option("run", run_id, "Run id")->required();
  tasks->add_option("--task", task, "Only this task");
  tasks->add_option("--state", states, "Only these states (repeatable)");
  tasks->add_flag("--json", json, kJsonLines);

  CLI::App* cancel = app.add_subcommand("cancel", "Cancel a run");
  cancel->add_option("run", run_id, "Run id")->required();

  std::vector<std::string> params;
  CLI::App* show = app.add_subcommand("show", "Show one instance with its full error text");
  show->add_option("run", run_id, "Run id")->required();
  show->add_option("task", task, "Task name")->required();
  show->add_option("params", params,
                   "Its bindings, name=value; or a unique prefix: name=start or a value's start");
  show->add_flag("--json", json, "The instance as one JSON object");

  bool follow = false;
  std::string logs_task;
  std::vector<std::string> logs_params;
  CLI::App* logs = app.add_subcommand("logs", "Print the stderr of a run's instances (-f: follow it live)");
  logs->add_option("run", run_id, "Run id")->required();
  logs->add_option("task", logs_task, "Only this task");
  logs->add_option("params", logs_params, "Only instances whose bindings start so: name=start or a value's start");
  logs->add_flag("-f,--follow", follow, "Keep printing what running and later instances write until the run ends");

  asflow::ResetCommandOptions reset_opts;
  CLI::App* reset = app.add_subcommand(
      "reset", "Clear suppressed (and failed) instances so the next run runs them again");
  reset->add_option("run", reset_opts.run_id, "Only instances of this run");
  reset->add_option("--task", reset_opts.task, "Only this task (name or flow.task)");
  reset->add_option("--path", reset_opts.path, "Only the instance with this output path");
  reset->add_option("--state", reset_opts.states, "suppressed or failed (default: both)");
  reset->add_flag("--all-workspaces", reset_opts.all_workspaces,
                  "With --task alone: instances of every workspace, not only the current directory's");
  reset->add_flag("-y,--yes", reset_opts.yes, "Reset without asking when more than one run is touched");

  std::vector<std::string> paths;
  CLI::App* cat = app.add_subcommand("cat", "Print output files, decompressing .zst and .gz");
  cat->add_option("paths", paths, "Files")->required();

  CLI::App* throttle = app.add_subcommand("throttle", "List throttle keys: limit, in flight, rate, state, queued");
  std::string target, pause_for;
  CLI::App* pause = app.add_subcommand("pause", "Pause a throttle key or task: running instances finish, nothing new starts");
  pause->add_option("target", target, "Throttle key, task name or flow.task")->required();
  pause->add_option("--for", pause_for, "Resume by itself after this long (10m, 90s, 1h30m)");
  CLI::App* resume = app.add_subcommand("resume", "Resume a paused throttle key or task");
  resume->add_option("target", target, "Throttle key, task name or flow.task")->required();

  asflow::ScheduleAddOptions sched_opts;
  CLI::App* schedule = app.add_subcommand("schedule", "Run a flow file on a timetable (the daemon submits it)");
  schedule->require_subcommand(1);
  CLI::App* sched_add = schedule->add_subcommand("add", "Add a schedule: the flow file is read again at every fire");
  sched_add->add_option("flow", sched_opts.flow_file, "Flow file, inside the workspace")->required();
  sched_add->add_option("--every", sched_opts.every, "Fire every this long: 30s, 15m, 6h, 1d");
  sched_add->add_option("--cron", sched_opts.cron, "Fire at the minutes a cron expression matches, in UTC: \"0 */6 * * *\"");
  sched_add->add_option("-p,--param", sched_opts.params, "Override a flow parameter: name=value (repeatable)");
  sched_add->add_option("--workspace", sched_opts.workspace, "Workspace of its runs (default: the current directory)");
  sched_add->add_option("--name", sched_opts.name, "Its name (default: the flow's name)");
  sched_add->add_flag("--keep-going", sched_opts.keep_going, "Its runs let independent instances finish after a failure");
  CLI::App* sched_list = schedule->add_subcommand("list", "List schedules: next fire, last run and its state, skips");
  sched_list->add_flag("--json", json, kJsonLines);
  std::string sched_target;
  CLI::App* sched_remove = schedule->add_subcommand("remove", "Remove a schedule (its running run goes on)");
  sched_remove->add_option("name", sched_target, "Schedule name or id")->required();
  CLI::App* sched_pause = schedule->add_subcommand("pause", "Stop a schedule firing until resume");
  sched_pause->add_option("name", sched_target, "Schedule name or id")->required();
  CLI::App* sched_resume = schedule->add_subcommand("resume", "Let a paused schedule fire again (from its next time)");
  sched_resume->add_option("name", sched_target, "Schedule name or id")->required();

  CLI::App* daemon = app.add_subcommand("daemon", "Control the local daemon");
  daemon->require_subcommand(1);
  CLI::App* stop = daemon->add_subcommand(
      "stop", "Stop asflowd: running instances get its --stop-grace to finish, nothing new starts (runs resume at "
              "the next start)");
  bool stop_now = false;
  stop->add_flag("--now", stop_now, "Kill running instances at once instead (they run again at the next start)");
  CLI::App* status = daemon->add_subcommand("status", "Say whether asflowd is running");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : asflow::kExitUsage;
  }
  asflow::ProgressMode mode = json    ? asflow::ProgressMode::kJson
                              : plain ? asflow::ProgressMode::kLines
                                      : asflow::ProgressMode::kAuto;
  run_opts.mode = mode;
  if (!token_file.empty()) {
    auto token = asflow::ReadTokenFile(token_file);
    if (!token.ok()) {
      std::fprintf(stderr, "asflowctl: %s\n", std::string(token.status().message()).c_str());
      return asflow::kExitUsage;
    }
    client.token = *token;
  }
  if ((*run && !run_opts.dry_run) || *watch) asflow::InstallInterruptHandler(client);
  if (*run) return asflow::RunCommand(client, run_opts);
  if (*check) return asflow::CheckCommand(client, check_opts);
  if (*watch) return asflow::WatchCommand(client, run_id, from_seq, mode, run_opts.max_running);
  if (*show) return asflow::ShowCommand(client, run_id, task, params, json);
  if (*logs) return asflow::LogsCommand(client, run_id, logs_task, logs_params, follow);
  if (*reset) return asflow::ResetCommand(client, reset_opts);
  if (*runs) return asflow::RunsCommand(client, limit, json);
  if (*workers) return asflow::WorkersCommand(client, json);
  if (*tasks) return asflow::TasksCommand(client, run_id, task, states, json);
  if (*cancel) return asflow::CancelCommand(client, run_id);
  if (*cat) return asflow::CatCommand(paths);
  if (*throttle) return asflow::ThrottleCommand(client);
  if (*pause) return asflow::PauseCommand(client, target, pause_for);
  if (*resume) return asflow::ResumeCommand(client, target);
  if (*sched_add) return asflow::ScheduleAddCommand(client, sched_opts);
  if (*sched_list) return asflow::ScheduleListCommand(client, json);
  if (*sched_remove) return asflow::ScheduleChangeCommand(client, "remove", sched_target);
  if (*sched_pause) return asflow::ScheduleChangeCommand(client, "pause", sched_target);
  if (*sched_resume) return asflow::ScheduleChangeCommand(client, "resume", sched_target);
  if (*stop) return asflow::DaemonStopCommand(client, stop_now);
  if (*status) return asflow::DaemonStatusCommand(client);
  return asflow::kExitUsage;
}
