// Atomic creation or replacement of an output file, compressed according to
// its name.
#ifndef ASFLOW_COMMON_ATOMIC_FILE_H_
#define ASFLOW_COMMON_ATOMIC_FILE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/codec.h"
#include "common/unique_fd.h"

namespace asflow {

// Tuning for AtomicFile. Plain value type.
struct AtomicFileOptions {
  // Compression settings; the codec itself is chosen by
  // CodecForPath(final_path).
  CodecOptions codec;
  // fsync the file before the rename and its directory after it, so a
  // committed file survives a power loss. Tests may turn this off for speed.
  bool sync = true;
  // Create missing parent directories (mode 0777 & ~umask) in Open. They are
  // not removed again if Open or the write later fails.
  bool create_parent_dirs = true;
};

// Writes an output file atomically: data goes through the codec chosen by
// CodecForPath(final_path) into TempPathFor(final_path) in the same
// directory; Commit() finishes the codec, fsyncs the file, renames it over
// final_path and fsyncs the directory — the rename is the commit point, so
// readers see either the old file or the complete new one. Destroying an
// uncommitted AtomicFile, or any failed Append/Commit, removes the temporary.
// Not thread-safe; at most one AtomicFile per final path at a time (the
// temporary's name is fixed).
class AtomicFile {
 public:
  // Opens (creating or truncating) the temporary for `final_path`. Errors
  // name final_path and leave no temporary behind; InvalidArgument if
  // final_path has no file name component (empty or ends in '/').
  static absl::StatusOr<std::unique_ptr<AtomicFile>> Open(
      const std::string& final_path, const AtomicFileOptions& options = {});

  // The same for `rel` (relative, normalised) below the directory
  // `root_fd`, reached without following any symlink (common/beneath.h):
  // the parent directory is opened once and the temporary is created,
  // fsynced and renamed relative to it, so no path is looked up twice and
  // a directory swapped for a symlink meanwhile cannot redirect the write.
  // Missing parents are created if options.create_parent_dirs. Errors name
  // root_name + "/" + rel.
  static absl::StatusOr<std::unique_ptr<AtomicFile>> OpenBeneath(
      int root_fd, const std::string& root_name, const std::string& rel,
      const AtomicFileOptions& options = {});

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Aborts (removes the temporary) if not committed.
  ~AtomicFile();

  // Appends uncompressed bytes. On error the temporary is removed and the
  // file is aborted. FailedPrecondition after Commit or Abort.
  absl::Status Append(absl::string_view data);

  // Makes the file visible at final_path, replacing any existing file. On an
  // error before the rename the temporary is removed and final_path is left
  // untouched; if only the directory fsync fails, the new file is already in
  // place (and the error is still returned). FailedPrecondition if already
  // committed or aborted.
  absl::Status Commit();

  // Closes and removes the temporary. Idempotent; no-op after Commit.
  void Abort();

  // Uncompressed bytes appended so far.
  int64_t bytes_in() const { return bytes_in_; }

  const std::string& final_path() const { return final_path_; }

  // "<dir>/.<basename>.asflow-tmp" (".<basename>.asflow-tmp" when the path
  // has no directory part). Fixed, so a temporary left by a crash is
  // overwritten (O_TRUNC) by the next writer; callers remove stale ones with
  // unlink(TempPathFor(p)).
  static std::string TempPathFor(const std::string& final_path);

 private:
  enum class State { kOpen, kCommitted, kAborted };

  AtomicFile(std::string final_path, UniqueFd dir, std::string name, int fd, bool sync);
  // Creates the temporary for `name` in `dir`; errors name final_path.
  static absl::StatusOr<std::unique_ptr<AtomicFile>> OpenIn(
      UniqueFd dir, std::string name, std::string final_path,
      const AtomicFileOptions& options);

  const std::string final_path_;  // for messages
  const UniqueFd dir_;            // the directory of the file
  const std::string name_;        // its name in dir_
  const std::string temp_name_;   // the temporary's name in dir_
  const bool sync_;
  int fd_;  // -1 once closed
  std::unique_ptr<Encoder> encoder_;
  State state_ = State::kOpen;
  int64_t bytes_in_ = 0;
};

}  // namespace asflow

#endif  // ASFLOW_COMMON_ATOMIC_FILE_H_
