// AtomicDir: a directory output (`on: data/media/{id}/`) made whole or not
// at all. The command writes any files into a temporary directory beside
// the target; on success the tree is fsynced and renamed into place in one
// step, so a directory under its final name is always complete, and its
// existence is what makes the instance cached.
#ifndef ASFLOW_COMMON_ATOMIC_DIR_H_
#define ASFLOW_COMMON_ATOMIC_DIR_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace asflow {

// Not thread-safe; at most one AtomicDir per final path at a time (the
// temporary's name is fixed, so one left by a crash is found again).
class AtomicDir {
 public:
  // Creates the temporary directory TempNameFor(name) in the parent of
  // `rel` (relative, normalised) below `root_fd`, reached without following
  // any symlink (common/beneath.h; missing parents are created), after
  // removing one a crash left there. Errors name root_name/rel.
  static absl::StatusOr<std::unique_ptr<AtomicDir>> OpenBeneath(int root_fd, const std::string& root_name,
                                                                const std::string& rel, bool sync);
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;
  // Aborts if not committed.
  ~AtomicDir();

  // The temporary's absolute path, for the command ($ASFLOW_OUTPUT_DIR).
  const std::string& temp_path() const { return temp_path_; }

  // With sync: fsyncs every regular file and directory of the tree
  // (symlinks are neither followed nor synced). Then renames the temporary
  // to its final name, which must not exist (AlreadyExists otherwise, and
  // the temporary is removed), and fsyncs the parent. On an error before
  // the rename the temporary is removed. FailedPrecondition if already
  // committed or aborted.
  absl::Status Commit();
  // Removes the temporary tree. Idempotent; no-op after Commit.
  void Abort();

  // ".NAME.asflow-tmpdir": the temporary beside NAME.
  static std::string TempNameFor(absl::string_view name);

 private:
  AtomicDir(UniqueFd parent, std::string name, std::string final_path, std::string temp_path, bool sync);

  const UniqueFd parent_;
  const std::string name_;
  const std::string temp_name_;
  const std::string final_path_;  // for messages
  const std::string temp_path_;
  const bool sync_;
  enum class State { kOpen, kCommitted, kAborted } state_ = State::kOpen;
};

// Removes the entry `name` of the directory `dir_fd` and, if it is a
// directory, everything below it, without following any symlink. OK if it
// is not there; errors name `what`.
absl::Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& what);

}  // namespace asflow

#endif  // ASFLOW_COMMON_ATOMIC_DIR_H_
