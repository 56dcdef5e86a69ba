#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/beneath.h"

namespace asflow {
namespace {

// Splits "a/b/c" into "a/b" and "c"; the directory is "" when there is no
// slash and "/" for files in the root.
void SplitPath(const std::string& path, std::string* dir, std::string* base) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    dir->clear();
    *base = path;
    return;
  }
  *dir = slash == 0 ? "/" : path.substr(0, slash);
  *base = path.substr(slash + 1);
}

// mkdir -p. Errors name `final_path` (the subject) and the failing directory.
absl::Status MakeDirs(const std::string& dir, const std::string& final_path) {
  if (dir.empty() || dir == "/") return absl::OkStatus();
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        final_path, ": creating directory ", dir, ": not a directory"));
  }
  std::string parent, base;
  SplitPath(dir, &parent, &base);
  if (absl::Status s = MakeDirs(parent, final_path); !s.ok()) return s;
  if (mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat(final_path, ": creating directory ", dir));
  }
  return absl::OkStatus();
}

// Closes fd, reporting errors (which on NFS can carry deferred write errors).
absl::Status CloseFd(int fd, const std::string& subject) {
  // Never retry close on EINTR: on Linux the fd is released regardless.
  if (close(fd) != 0 && errno != EINTR) {
    return absl::ErrnoToStatus(errno, absl::StrCat(subject, ": close"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string AtomicFile::TempPathFor(const std::string& final_path) {
  std::string dir, base;
  SplitPath(final_path, &dir, &base);
  std::string prefix = dir.empty() ? "" : dir == "/" ? "/" : dir + "/";
  return absl::StrCat(prefix, ".", base, ".asflow-tmp");
}

AtomicFile::AtomicFile(std::string final_path, UniqueFd dir, std::string name, int fd, bool sync)
    : final_path_(std::move(final_path)),
      dir_(std::move(dir)),
      name_(std::move(name)),
      temp_name_(absl::StrCat(".", name_, ".asflow-tmp")),
      sync_(sync),
      fd_(fd) {}

AtomicFile::~AtomicFile() { Abort(); }

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::Open(
    const std::string& final_path, const AtomicFileOptions& options) {
  std::string dir, base;
  SplitPath(final_path, &dir, &base);
  if (base.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", final_path, "': output path has no file name"));
  }
  if (options.create_parent_dirs) {
    if (absl::Status s = MakeDirs(dir, final_path); !s.ok()) return s;
  }
  const std::string d = dir.empty() ? "." : dir;
  int dfd = open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(final_path, ": opening directory ", d));
  }
  return OpenIn(UniqueFd(dfd), std::move(base), final_path, options);
}

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::OpenBeneath(
    int root_fd, const std::string& root_name, const std::string& rel,
    const AtomicFileOptions& options) {
  const std::string final_path = absl::StrCat(root_name, "/", rel);
  const absl::string_view base = SplitDirName(rel).second;
  if (base.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", final_path, "': output path has no file name"));
  }
  absl::StatusOr<UniqueFd> dfd = OpenParentBeneath(root_fd, root_name, rel, options.create_parent_dirs);
  if (!dfd.ok()) return dfd.status();
  return OpenIn(std::move(*dfd), std::string(base), final_path, options);
}

absl::StatusOr<std::unique_ptr<AtomicFile>> AtomicFile::OpenIn(
    UniqueFd dir, std::string name, std::string final_path, const AtomicFileOptions& options) {
  const std::string temp_name = absl::StrCat(".", name, ".asflow-tmp");
  // O_NOFOLLOW: a symlink planted at the temporary's name is an error, not a
  // way to overwrite some other file.
  int fd;
  do {
    fd = openat(dir.get(), temp_name.c_str(),
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat(final_path, ": creating temporary file ", TempPathFor(final_path)));
  }
  std::unique_ptr<AtomicFile> file(
      new AtomicFile(std::move(final_path), std::move(dir), std::move(name), fd, options.sync));
  absl::StatusOr<std::unique_ptr<Encoder>> encoder =
      Encoder::Create(CodecForPath(file->name_), fd, options.codec, file->final_path_);
  if (!encoder.ok()) return encoder.status();  // ~AtomicFile removes the temp
  file->encoder_ = *std::move(encoder);
  return file;
}

absl::Status AtomicFile::Append(absl::string_view data) {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_path_, ": append after commit or abort"));
  }
  absl::Status s = encoder_->Write(data);
  if (!s.ok()) {
    Abort();
    return s;
  }
  bytes_in_ += static_cast<int64_t>(data.size());
  return absl::OkStatus();
}

absl::Status AtomicFile::Commit() {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_path_, ": commit after commit or abort"));
  }
  absl::Status s = encoder_->Finish();
  if (s.ok() && sync_ && fsync(fd_) != 0) {
    s = absl::ErrnoToStatus(errno, absl::StrCat(final_path_, ": fsync ", TempPathFor(final_path_)));
  }
  if (s.ok()) {
    int fd = fd_;
    fd_ = -1;
    s = CloseFd(fd, final_path_);
  }
  if (s.ok() && renameat(dir_.get(), temp_name_.c_str(), dir_.get(), name_.c_str()) != 0) {
    s = absl::ErrnoToStatus(
        errno, absl::StrCat(final_path_, ": rename from ", TempPathFor(final_path_)));
  }
  if (!s.ok()) {
    Abort();
    return s;
  }
  state_ = State::kCommitted;
  if (sync_ && fsync(dir_.get()) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(final_path_, ": fsync of its directory"));
  }
  return absl::OkStatus();
}

void AtomicFile::Abort() {
  if (state_ != State::kOpen) return;
  state_ = State::kAborted;
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  // Best effort: nothing useful to do if the temporary cannot be removed;
  // the next writer truncates it anyway.
  unlinkat(dir_.get(), temp_name_.c_str(), 0);
}

}  // namespace asflow
