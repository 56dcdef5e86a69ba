// WorkspaceFs: what the scheduler does to the host outside runners, as an
// interface, so scheduler tests run on an in-memory fake: a run's
// workspace files (is an output or .err there, read a for_each input,
// write a suppressed instance's .err, remove a leftover temporary) and the
// process groups a crashed daemon left behind. The real one
// (RealWorkspaceFs) reaches every file below the workspace without
// following symlinks (common/beneath.h).
#ifndef ASFLOW_SERVER_WORKSPACE_FS_H_
#define ASFLOW_SERVER_WORKSPACE_FS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/atomic_file.h"

namespace asflow {

// Lines of a for_each input, decompressed. Not thread-safe.
class LineSource {
 public:
  virtual ~LineSource() = default;
  // The next line (without its newline) and true, or false at the end.
  virtual absl::StatusOr<bool> Next(std::string* line) = 0;
  // 1-based number of the line last returned.
  virtual int64_t line_number() const = 0;
};

// Answers "is this output there?" for many paths of one expansion, cheaply
// (see common/exists_probe.h). Not thread-safe.
class ExistenceProbe {
 public:
  virtual ~ExistenceProbe() = default;
  virtual bool Exists(absl::string_view rel) = 0;
};

// One workspace, open for a run's lifetime. Paths are relative to it and
// normalised. Errors name the workspace and the path. Not thread-safe
// (the scheduler thread owns it).
class Workspace {
 public:
  virtual ~Workspace() = default;
  const std::string& path() const { return path_; }
  // Whether `rel` exists (reached without a symlink).
  virtual bool Exists(absl::string_view rel) = 0;
  // 0 if `first` exists, else 1 if `second` (not empty) does, else -1.
  virtual int FirstExisting(absl::string_view first, absl::string_view second) {
    if (Exists(first)) return 0;
    return !second.empty() && Exists(second) ? 1 : -1;
  }
  // A probe for one expansion's many outputs.
  virtual std::unique_ptr<ExistenceProbe> NewProbe() = 0;
  // Lines of the file `rel`, any compression. NotFound if it is not there.
  virtual absl::StatusOr<std::unique_ptr<LineSource>> OpenLines(absl::string_view rel) = 0;
  // Writes `text` to `rel` atomically (a suppressed instance's .err).
  virtual absl::Status WriteFile(absl::string_view rel, absl::string_view text) = 0;
  // Removes `rel`; OK if it is not there.
  virtual absl::Status Remove(absl::string_view rel) = 0;
  // Removes the directory `rel` and everything below it, following no
  // symlink (a directory output's temporary); OK if it is not there.
  virtual absl::Status RemoveTree(absl::string_view rel) = 0;

 protected:
  explicit Workspace(std::string path) : path_(std::move(path)) {}

 private:
  const std::string path_;
};

class WorkspaceFs {
 public:
  virtual ~WorkspaceFs() = default;
  // The absolute, symlink-free form of an existing directory (realpath);
  // NotFound/PermissionDenied naming it.
  virtual absl::StatusOr<std::string> RealPath(const std::string& path) = 0;
  // Opens the workspace at `abs_path` (absolute, symlink-free).
  virtual absl::StatusOr<std::unique_ptr<Workspace>> Open(const std::string& abs_path) = 0;
  // Whether `dir` (absolute, symlink-free) is owned by this process's user
  // and writable by nobody else.
  virtual bool IsPrivateDir(const std::string& dir) = 0;
  // SIGKILLs process group `pgid`; true if it existed.
  virtual bool KillProcessGroup(pid_t pgid) = 0;
  // This boot's id (a pgid recorded before a reboot means nothing).
  virtual std::string BootId() = 0;
};

// The host's file system and processes.
class RealWorkspaceFs final : public WorkspaceFs {
 public:
  // `file_options` is how .err files are written (fsync or not).
  explicit RealWorkspaceFs(AtomicFileOptions file_options) : file_options_(std::move(file_options)) {}
  absl::StatusOr<std::string> RealPath(const std::string& path) override;
  absl::StatusOr<std::unique_ptr<Workspace>> Open(const std::string& abs_path) override;
  bool IsPrivateDir(const std::string& dir) override;
  bool KillProcessGroup(pid_t pgid) override;
  std::string BootId() override;

 private:
  const AtomicFileOptions file_options_;
};

}  // namespace asflow

#endif  // ASFLOW_SERVER_WORKSPACE_FS_H_
