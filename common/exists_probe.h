// ExistsProbe answers "does this path exist?" for many paths below one root
// directory, as lstat would, but cheaper in bulk: paths are looked up
// relative to an open descriptor of the root (a short path walk), and once
// enough paths of one directory have been asked about, that directory is
// read once and later answers come from its listing.
//
// Cost model (2-CPU VM, tmpfs; W2 in docs/benchmarks.md): a relative stat
// costs ~1-1.5 µs (an absolute lstat ~2-3 µs, most of it the kernel's walk
// of each component); reading one entry of a listing ~0.25 µs. A directory
// is read once it has been probed max(kMinProbes, st_size /
// kDirBytesPerProbe) times (directories take >= ~8 bytes of st_size per
// entry on tmpfs (20), ext4, xfs and btrfs), and the read is abandoned past
// kMaxEntriesPerProbe entries per probe made (st_size is only an estimate;
// ZFS gives the entry count). So a listing costs at most a few stats per
// probe already made, and a directory of outputs costs ~5x less than
// stating each. At most kMaxDirs directories are tracked.
//
// A listing is a snapshot: an entry created after it was read is reported
// missing, one removed is reported present. Callers must treat "exists" and
// "missing" as hints to re-check where it matters, as with any lstat result
// that may be stale by the time it is used. Not thread-safe; meant to live
// for one pass over many paths (e.g. expanding a task's instances).
#ifndef ASFLOW_COMMON_EXISTS_PROBE_H_
#define ASFLOW_COMMON_EXISTS_PROBE_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"

namespace asflow {

class ExistsProbe {
 public:
  static constexpr int64_t kMinProbes = 64;
  static constexpr int64_t kDirBytesPerProbe = 256;
  // A listing is abandoned past this many entries per probe made.
  static constexpr int64_t kMaxEntriesPerProbe = 32;
  // Directories tracked; probes in further ones are plain stats.
  static constexpr size_t kMaxDirs = 4096;

  // `root`: an existing directory (absolute, symlink-free). If it cannot
  // be opened (common/beneath.h's OpenRoot), nothing exists below it.
  explicit ExistsProbe(const std::string& root);
  ~ExistsProbe();
  ExistsProbe(const ExistsProbe&) = delete;
  ExistsProbe& operator=(const ExistsProbe&) = delete;

  // Whether `rel` (relative to the root, normalised: no "." or ".."
  // components, no leading or doubled '/') names an entry of any type; a
  // dangling symlink exists, but nothing below a directory reached through
  // a symlink does.
  bool Exists(absl::string_view rel);

  // Directories read so far (for tests).
  int listings() const { return listings_; }

 private:
  struct Dir {
    int64_t probes = 0;
    int64_t list_after = kMinProbes;  // probes before the directory is looked at (again)
    bool listed = false;
    bool through_symlink = false;  // a symlink on the way: nothing exists
    absl::flat_hash_set<std::string> names;
  };
  bool Stat(absl::string_view rel);
  void MaybeList(absl::string_view dir, Dir& d);

  const std::string root_;
  int root_fd_ = -1;
  std::string path_;  // NUL-terminated copy of the path being probed
  absl::flat_hash_map<std::string, Dir> dirs_;
  int listings_ = 0;
};

}  // namespace asflow

#endif  // ASFLOW_COMMON_EXISTS_PROBE_H_
