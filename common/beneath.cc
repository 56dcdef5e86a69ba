#include "common/beneath.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace asflow {
namespace {

std::atomic<bool> g_use_openat2{true};

constexpr uint64_t kBeneath = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::Utf8SafeCEscape(s), "\""); }

std::string Join(absl::string_view root, absl::string_view rel) {
  if (rel.empty()) return std::string(root);
  if (root.empty() || root.back() == '/') return absl::StrCat(root, rel);
  return absl::StrCat(root, "/", rel);
}

// openat2(2) (glibc 2.36 has no wrapper); -1 with errno set, ENOSYS when the
// kernel (or a seccomp filter) does not offer it.
int Openat2(int dirfd, const char* path, int flags, uint64_t resolve) {
  if (!g_use_openat2.load(std::memory_order_relaxed)) {
    errno = ENOSYS;
    return -1;
  }
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = resolve;
  int fd;
  do {
    fd = static_cast<int>(syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0 && errno == ENOSYS) g_use_openat2.store(false, std::memory_order_relaxed);
  return fd;
}

// Why openat(dirfd, name, ...|O_NOFOLLOW) failed with `err`, as a status
// about `subject` (the whole path asked for); `prefix` is the path up to and
// including `name`.
absl::Status WhyNot(int dirfd, const std::string& name, int err, const std::string& subject,
                    const std::string& prefix) {
  if (err == ELOOP || err == ENOTDIR) {
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) {
        return absl::PermissionDeniedError(absl::StrCat(
            subject, ": ", Quote(prefix), " is a symlink; asflow never follows a symlink below the workspace"));
      }
      if (!S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(absl::StrCat(subject, ": ", Quote(prefix), " is not a directory"));
      }
      // A directory now, but not when it was opened: swapped meanwhile.
      return absl::PermissionDeniedError(absl::StrCat(
          subject, ": ", Quote(prefix),
          " changed while it was opened (a symlink was there); asflow never follows a symlink below the "
          "workspace"));
    }
  }
  if (err == ENOENT) return absl::NotFoundError(absl::StrCat(subject, ": ", Quote(prefix), " does not exist"));
  return absl::ErrnoToStatus(err, absl::StrCat(subject, ": open ", Quote(prefix)));
}

// The O_NOFOLLOW walk: each component opened relative to the one before, so
// no symlink is followed and nothing is looked up twice. `last_flags` opens
// the last component; directories on the way (and the last one, if
// `last_flags` has O_DIRECTORY) are created if missing and `create`.
absl::StatusOr<UniqueFd> Walk(int root_fd, absl::string_view root_name, absl::string_view rel, int last_flags,
                              bool create, const std::string& subject) {
  std::vector<absl::string_view> parts = absl::StrSplit(rel, '/', absl::SkipEmpty());
  if (parts.empty()) {
    int fd = openat(root_fd, ".", last_flags | O_CLOEXEC);
    if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(subject, ": open"));
    return UniqueFd(fd);
  }
  UniqueFd current;
  int dirfd = root_fd;
  for (size_t i = 0; i < parts.size(); ++i) {
    const bool last = i + 1 == parts.size();
    const std::string name(parts[i]);
    const std::string prefix = Join(root_name, absl::string_view(rel.data(), parts[i].end() - rel.data()));
    if (name == "." || name == "..") {
      return absl::InvalidArgumentError(absl::StrCat(subject, ": has a '", name, "' component"));
    }
    const int flags = (last ? last_flags : O_PATH | O_DIRECTORY) | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dirfd, name.c_str(), flags);
    if (fd < 0 && errno == ENOENT && create && (!last || (last_flags & O_DIRECTORY) != 0)) {
      if (mkdirat(dirfd, name.c_str(), 0777) != 0 && errno != EEXIST) {
        return absl::ErrnoToStatus(errno, absl::StrCat(subject, ": creating directory ", Quote(prefix)));
      }
      fd = openat(dirfd, name.c_str(), flags);
    }
    if (fd < 0) return WhyNot(dirfd, name, errno, subject, prefix);
    current.Reset(fd);  // closes the parent, which dirfd named until now
    dirfd = fd;
  }
  return current;
}

// openat2 beneath root_fd, else (no openat2, or it failed and the walk can
// create what is missing or say exactly why) the walk.
// Errors name `subject`, else root_name/rel.
absl::StatusOr<UniqueFd> Open(int root_fd, absl::string_view root_name, absl::string_view rel, int flags,
                              bool create, absl::string_view subject = {}) {
  const std::string path = rel.empty() ? "." : std::string(rel);
  int fd = Openat2(root_fd, path.c_str(), flags, kBeneath);
  if (fd >= 0) return UniqueFd(fd);
  return Walk(root_fd, root_name, rel, flags, create,
              subject.empty() ? Join(root_name, rel) : std::string(subject));
}

}  // namespace

std::pair<absl::string_view, absl::string_view> SplitDirName(absl::string_view rel) {
  size_t slash = rel.rfind('/');
  if (slash == absl::string_view::npos) return {absl::string_view(), rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

absl::StatusOr<UniqueFd> OpenRoot(const std::string& abs_dir) {
  if (abs_dir.empty() || abs_dir[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(Quote(abs_dir), " is not an absolute path"));
  }
  int fd = Openat2(AT_FDCWD, abs_dir.c_str(), O_PATH | O_DIRECTORY, RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
  if (fd >= 0) return UniqueFd(fd);
  int slash = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (slash < 0) return absl::ErrnoToStatus(errno, "open /");
  UniqueFd root(slash);
  return Walk(root.get(), "/", absl::string_view(abs_dir).substr(1), O_PATH | O_DIRECTORY, /*create=*/false,
              abs_dir);
}

absl::StatusOr<UniqueFd> OpenDirBeneath(int root_fd, absl::string_view root_name, absl::string_view rel,
                                        bool create) {
  return Open(root_fd, root_name, rel, O_RDONLY | O_DIRECTORY, create);
}

absl::StatusOr<UniqueFd> OpenParentBeneath(int root_fd, absl::string_view root_name, absl::string_view rel,
                                           bool create) {
  return Open(root_fd, root_name, SplitDirName(rel).first, O_RDONLY | O_DIRECTORY, create, Join(root_name, rel));
}

absl::StatusOr<UniqueFd> OpenFileBeneath(int root_fd, absl::string_view root_name, absl::string_view rel) {
  return Open(root_fd, root_name, rel, O_RDONLY, /*create=*/false);
}

bool ExistsBeneath(int root_fd, absl::string_view rel) { return FirstExistingBeneath(root_fd, rel, "") == 0; }

int FirstExistingBeneath(int root_fd, absl::string_view first, absl::string_view second) {
  auto [dir, name] = SplitDirName(first);
  UniqueFd dirfd;
  int fd = root_fd;
  if (!dir.empty()) {
    absl::StatusOr<UniqueFd> opened = Open(root_fd, "", dir, O_PATH | O_DIRECTORY, /*create=*/false);
    fd = -1;
    if (opened.ok()) {
      dirfd = std::move(*opened);
      fd = dirfd.get();
    }
  }
  struct stat st;
  if (fd >= 0 && fstatat(fd, std::string(name).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return 0;
  if (second.empty()) return -1;
  auto [dir2, name2] = SplitDirName(second);
  if (dir2 != dir) return ExistsBeneath(root_fd, second) ? 1 : -1;
  if (fd < 0) return -1;  // their directory is not there (or not reachable)
  return fstatat(fd, std::string(name2).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 ? 1 : -1;
}

absl::Status UnlinkBeneath(int root_fd, absl::string_view root_name, absl::string_view rel) {
  auto [dir, name] = SplitDirName(rel);
  absl::StatusOr<UniqueFd> dirfd = Open(root_fd, root_name, dir, O_PATH | O_DIRECTORY, /*create=*/false);
  if (!dirfd.ok()) return absl::IsNotFound(dirfd.status()) ? absl::OkStatus() : dirfd.status();
  const std::string n(name);
  if (unlinkat(dirfd->get(), n.c_str(), 0) != 0 && errno != ENOENT) {
    return absl::ErrnoToStatus(errno, absl::StrCat(Join(root_name, rel), ": remove"));
  }
  return absl::OkStatus();
}

void UseOpenat2ForTesting(bool use) { g_use_openat2.store(use, std::memory_order_relaxed); }

}  // namespace asflow
