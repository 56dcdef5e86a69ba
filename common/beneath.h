// Opening paths below a directory descriptor without ever following a
// symlink, so that nothing outside it can be reached however the tree
// changes meanwhile: every lookup starts from a descriptor that stays
// valid, and a directory swapped for a symlink mid-way is refused, not
// followed. Outputs, .err files, for_each inputs and `asflowctl cat` go
// through here (DESIGN.md, "Security defaults").
//
// Uses openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the kernel has
// it (Linux >= 5.6), else walks one component at a time with O_NOFOLLOW;
// both refuse any symlink below the root and any ".." component. Paths are
// relative and normalised (NormalizeOutputPath). Thread-safe.
#ifndef ASFLOW_COMMON_BENEATH_H_
#define ASFLOW_COMMON_BENEATH_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/unique_fd.h"

namespace asflow {

// Opens the directory at `abs_dir` (absolute, symlink-free, as RealPath
// gives) as O_PATH, refusing a symlink anywhere on its path: the root that
// the other functions resolve beneath. NotFound/PermissionDenied name it.
absl::StatusOr<UniqueFd> OpenRoot(const std::string& abs_dir);

// The directory `rel` below `root_fd` ("" is the root itself), opened
// O_RDONLY | O_DIRECTORY (usable for fsync, *at calls and fdopendir).
// With `create`, missing components are created (mode 0777 & ~umask).
// Errors name `root_name`/`rel`: PermissionDenied if a component is a
// symlink, FailedPrecondition if one is not a directory, NotFound if one
// is missing and !create.
absl::StatusOr<UniqueFd> OpenDirBeneath(int root_fd, absl::string_view root_name,
                                        absl::string_view rel, bool create);

// The directory holding the file `rel` (OpenDirBeneath of its directory
// part); errors name root_name/rel.
absl::StatusOr<UniqueFd> OpenParentBeneath(int root_fd, absl::string_view root_name, absl::string_view rel,
                                           bool create);

// The regular file (or anything but a symlink) `rel` below `root_fd`,
// opened O_RDONLY. Errors as OpenDirBeneath; NotFound if it does not exist.
absl::StatusOr<UniqueFd> OpenFileBeneath(int root_fd, absl::string_view root_name,
                                         absl::string_view rel);

// Whether `rel` names an entry of any type below `root_fd`, reached without
// a symlink (a symlink as the last component exists; one on the way means
// false).
bool ExistsBeneath(int root_fd, absl::string_view rel);
// 0 if `first` exists (as ExistsBeneath), else 1 if `second` does (when not
// empty), else -1. Two names in one directory open it once (an output and
// its .err: the scheduler asks both of every instance it may start).
int FirstExistingBeneath(int root_fd, absl::string_view first, absl::string_view second);

// Removes the entry `rel` (not a directory) below `root_fd`. OK if it is
// not there; errors name root_name/rel.
absl::Status UnlinkBeneath(int root_fd, absl::string_view root_name, absl::string_view rel);

// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
std::pair<absl::string_view, absl::string_view> SplitDirName(absl::string_view rel);

// Tests: false makes every call take the O_NOFOLLOW walk, as on a kernel
// without openat2.
void UseOpenat2ForTesting(bool use);

}  // namespace asflow

#endif  // ASFLOW_COMMON_BENEATH_H_
