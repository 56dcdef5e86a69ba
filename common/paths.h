// Default locations of the daemon's socket, state and log, keyed off the
// environment (HOME, XDG_RUNTIME_DIR, XDG_STATE_HOME) so that a test
// isolates itself by setting those variables. Thread-safe (reads only).
#ifndef ASFLOW_COMMON_PATHS_H_
#define ASFLOW_COMMON_PATHS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace asflow {

// $HOME, else the password database entry of the current user.
std::string HomeDir();
// $XDG_RUNTIME_DIR/asflow/asflowd.sock, else ~/.asflow/asflowd.sock.
std::string DefaultSocketPath();
// $XDG_STATE_HOME/asflow/state.db, else ~/.local/state/asflow/state.db.
std::string DefaultStatePath();
// $XDG_CONFIG_HOME/asflow/asflowd.conf, else ~/.config/asflow/asflowd.conf:
// the configuration of the daemon asflowctl starts on demand.
std::string UserDaemonConfigPath();
// asflowd.log next to the default state file.
std::string DefaultLogPath();
// Creates `dir` and its parents; the last component gets `mode`.
absl::Status MakeDirs(const std::string& dir, int mode = 0700);
// Removes `path` and everything below it without following symlinks; OK
// if it does not exist.
absl::Status RemoveTree(const std::string& path);
// Absolute, symlink-free form of an existing path ("realpath").
absl::StatusOr<std::string> RealPath(const std::string& path);
// Whether `path` equals `root` or lies below it (both absolute, normalised).
bool PathIsUnder(const std::string& path, const std::string& root);

}  // namespace asflow

#endif  // ASFLOW_COMMON_PATHS_H_
