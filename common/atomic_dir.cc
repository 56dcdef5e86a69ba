#include "common/atomic_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/beneath.h"

namespace asflow {
namespace {

// Deeper trees are refused rather than walked (a command could nest
// directories until the daemon's stack ran out).
constexpr int kMaxDepth = 128;

absl::Status Errno(const std::string& what) { return absl::ErrnoToStatus(errno, what); }

// The names in the directory `fd` (not . and ..), each with whether it is
// a directory (lstat semantics: a symlink is not).
absl::StatusOr<std::vector<std::pair<std::string, bool>>> Entries(int fd, const std::string& what) {
  const int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return Errno(what);
  DIR* dir = fdopendir(dup_fd);
  if (dir == nullptr) {
    close(dup_fd);
    return Errno(what);
  }
  rewinddir(dir);
  std::vector<std::pair<std::string, bool>> out;
  errno = 0;
  while (dirent* e = readdir(dir)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      struct stat st;
      is_dir = fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    }
    out.emplace_back(name, is_dir);
    errno = 0;
  }
  const int err = errno;
  closedir(dir);
  if (err != 0) return absl::ErrnoToStatus(err, what);
  return out;
}

absl::Status RemoveBelow(int fd, const std::string& what, int depth) {
  if (depth > kMaxDepth) return absl::FailedPreconditionError(absl::StrCat(what, ": nested too deep to remove"));
  auto entries = Entries(fd, what);
  if (!entries.ok()) return entries.status();
  for (const auto& [name, is_dir] : *entries) {
    const std::string sub = absl::StrCat(what, "/", name);
    if (is_dir) {
      UniqueFd child(openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (child.get() < 0) return Errno(sub);
      if (absl::Status s = RemoveBelow(child.get(), sub, depth + 1); !s.ok()) return s;
      if (unlinkat(fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return Errno(sub);
    } else if (unlinkat(fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return Errno(sub);
    }
  }
  return absl::OkStatus();
}

absl::Status SyncBelow(int fd, const std::string& what, int depth) {
  if (depth > kMaxDepth) return absl::FailedPreconditionError(absl::StrCat(what, ": nested too deep"));
  auto entries = Entries(fd, what);
  if (!entries.ok()) return entries.status();
  for (const auto& [name, is_dir] : *entries) {
    const std::string sub = absl::StrCat(what, "/", name);
    if (is_dir) {
      UniqueFd child(openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (child.get() < 0) return Errno(sub);
      if (absl::Status s = SyncBelow(child.get(), sub, depth + 1); !s.ok()) return s;
      continue;
    }
    struct stat st;
    if (fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Errno(sub);
    if (!S_ISREG(st.st_mode)) continue;  // symlinks, fifos: nothing to sync
    UniqueFd file(openat(fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (file.get() < 0) return Errno(sub);
    if (fsync(file.get()) != 0) return Errno(absl::StrCat(sub, ": fsync"));
  }
  if (fsync(fd) != 0) return Errno(absl::StrCat(what, ": fsync"));
  return absl::OkStatus();
}

}  // namespace

absl::Status RemoveTreeAt(int dir_fd, const std::string& name, const std::string& what) {
  struct stat st;
  if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? absl::OkStatus() : Errno(what);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return Errno(what);
    return absl::OkStatus();
  }
  UniqueFd child(openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (child.get() < 0) return Errno(what);
  if (absl::Status s = RemoveBelow(child.get(), what, 0); !s.ok()) return s;
  if (unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) return Errno(what);
  return absl::OkStatus();
}

std::string AtomicDir::TempNameFor(absl::string_view name) { return absl::StrCat(".", name, ".asflow-tmpdir"); }

AtomicDir::AtomicDir(UniqueFd parent, std::string name, std::string final_path, std::string temp_path, bool sync)
    : parent_(std::move(parent)),
      name_(std::move(name)),
      temp_name_(TempNameFor(name_)),
      final_path_(std::move(final_path)),
      temp_path_(std::move(temp_path)),
      sync_(sync) {}

AtomicDir::~AtomicDir() { Abort(); }

absl::StatusOr<std::unique_ptr<AtomicDir>> AtomicDir::OpenBeneath(int root_fd, const std::string& root_name,
                                                                  const std::string& rel, bool sync) {
  const std::string final_path = absl::StrCat(root_name, "/", rel);
  auto [dir_rel, name] = SplitDirName(rel);
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(final_path, ": names no directory"));
  auto parent = OpenParentBeneath(root_fd, root_name, rel, /*create=*/true);
  if (!parent.ok()) return parent.status();
  const std::string temp_name = TempNameFor(name);
  const std::string temp_path =
      dir_rel.empty() ? absl::StrCat(root_name, "/", temp_name) : absl::StrCat(root_name, "/", dir_rel, "/", temp_name);
  // One a crash left (the name is fixed): its files are not this attempt's.
  if (absl::Status s = RemoveTreeAt(parent->get(), temp_name, temp_path); !s.ok()) return s;
  if (mkdirat(parent->get(), temp_name.c_str(), 0777) != 0) return Errno(absl::StrCat(temp_path, ": mkdir"));
  return std::unique_ptr<AtomicDir>(
      new AtomicDir(std::move(*parent), std::string(name), final_path, temp_path, sync));
}

absl::Status AtomicDir::Commit() {
  if (state_ != State::kOpen) return absl::FailedPreconditionError(absl::StrCat(final_path_, ": not open"));
  absl::Status status;
  if (sync_) {
    UniqueFd tree(openat(parent_.get(), temp_name_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    status = tree.get() < 0 ? Errno(temp_path_) : SyncBelow(tree.get(), temp_path_, 0);
  }
  if (status.ok() && renameat2(parent_.get(), temp_name_.c_str(), parent_.get(), name_.c_str(), RENAME_NOREPLACE) != 0) {
    status = errno == EEXIST || errno == ENOTEMPTY
                 ? absl::AlreadyExistsError(absl::StrCat(final_path_, " appeared while the command ran; kept it"))
                 : Errno(absl::StrCat(final_path_, ": rename"));
  }
  if (!status.ok()) {
    Abort();
    return status;
  }
  state_ = State::kCommitted;
  if (sync_ && fsync(parent_.get()) != 0) return Errno(absl::StrCat(final_path_, ": fsync of its directory"));
  return absl::OkStatus();
}

void AtomicDir::Abort() {
  if (state_ != State::kOpen) return;
  state_ = State::kAborted;
  RemoveTreeAt(parent_.get(), temp_name_, temp_path_).IgnoreError();
}

}  // namespace asflow
