#include "common/exists_probe.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "common/beneath.h"

namespace asflow {

ExistsProbe::ExistsProbe(const std::string& root) : root_(root) {
  absl::StatusOr<UniqueFd> fd = OpenRoot(root);
  if (fd.ok()) root_fd_ = fd->Release();
}

ExistsProbe::~ExistsProbe() {
  if (root_fd_ >= 0) close(root_fd_);
}

bool ExistsProbe::Stat(absl::string_view rel) {
  struct stat st;
  path_.assign(rel.data(), rel.size());
  return fstatat(root_fd_, path_.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

bool ExistsProbe::Exists(absl::string_view rel) {
  // A workspace that cannot be opened (without symlinks) holds nothing:
  // the instances run, and their writes say why they cannot.
  if (root_fd_ < 0) return false;
  auto [dir, name] = SplitDirName(rel);
  auto it = dirs_.find(dir);
  if (it == dirs_.end()) {
    // One output directory per instance would make one entry per probe.
    if (dirs_.size() >= kMaxDirs) return ExistsBeneath(root_fd_, rel);
    it = dirs_.try_emplace(std::string(dir)).first;
    // A path below a symlink exists for nobody: outputs never go through
    // one (common/beneath.h). Checked once per directory; fstatat below
    // would follow it.
    if (!dir.empty()) {
      absl::StatusOr<UniqueFd> fd = OpenDirBeneath(root_fd_, root_, dir, /*create=*/false);
      it->second.through_symlink = !fd.ok() && !absl::IsNotFound(fd.status());
    }
  }
  Dir& d = it->second;
  if (d.through_symlink) return false;
  if (d.listed) return d.names.contains(name);
  const bool found = Stat(rel);
  ++d.probes;
  MaybeList(dir, d);
  return found;
}

void ExistsProbe::MaybeList(absl::string_view dir, Dir& d) {
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  if (d.probes < d.list_after) return;
  if (dir.empty()) {
    path_ = ".";
  } else {
    path_.assign(dir.data(), dir.size());
  }
  struct stat st;
  if (fstatat(root_fd_, path_.c_str(), &st, 0) != 0 || !S_ISDIR(st.st_mode)) {
    // Missing (so far): each probe's walk stops early, nothing to read.
    // Looked at again once as many probes again have been made.
    d.list_after = d.probes * 2;
    return;
  }
  // Sized now: a directory that grew since it was last looked at waits for
  // more probes.
  const int64_t threshold = std::max<int64_t>(kMinProbes, st.st_size / kDirBytesPerProbe);
  if (d.probes < threshold) {
    d.list_after = threshold;
    return;
  }
  d.list_after = kNever;
  int fd = openat(root_fd_, path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR* stream = fd >= 0 ? fdopendir(fd) : nullptr;
  if (stream == nullptr) {
    if (fd >= 0) close(fd);
    return;  // unreadable: keep probing one path at a time
  }
  // st_size is only an estimate of the number of entries (some file systems
  // give the count itself): stop reading past kMaxEntriesPerProbe entries
  // per probe made, so a listing costs at most a few stats' worth per probe.
  const size_t max_entries = static_cast<size_t>(d.probes) * kMaxEntriesPerProbe;
  bool complete = true;
  for (;;) {
    errno = 0;
    const struct dirent* e = readdir(stream);
    if (e == nullptr) {
      complete = errno == 0;
      break;
    }
    absl::string_view name(e->d_name);
    if (name != "." && name != "..") d.names.emplace(name);
    if (d.names.size() > max_entries) {
      complete = false;
      break;
    }
  }
  closedir(stream);
  if (!complete) {
    d.names = {};  // a partial listing would call present files missing
    return;
  }
  d.listed = true;
  ++listings_;
}

}  // namespace asflow
