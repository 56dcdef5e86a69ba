#include "server/workspace_fs.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_dir.h"
#include "common/beneath.h"
#include "common/exists_probe.h"
#include "common/line_reader.h"
#include "common/paths.h"
#include "common/unique_fd.h"

namespace asflow {
namespace {

class ReaderSource final : public LineSource {
 public:
  explicit ReaderSource(std::unique_ptr<LineReader> reader) : reader_(std::move(reader)) {}
  absl::StatusOr<bool> Next(std::string* line) override { return reader_->Next(line); }
  int64_t line_number() const override { return reader_->line_number(); }

 private:
  std::unique_ptr<LineReader> reader_;
};

class Probe final : public ExistenceProbe {
 public:
  explicit Probe(const std::string& root) : probe_(root) {}
  bool Exists(absl::string_view rel) override { return probe_.Exists(rel); }

 private:
  ExistsProbe probe_;
};

// A workspace held open as a descriptor: everything below it is reached
// relative to that descriptor, never through a symlink.
class RealWorkspace final : public Workspace {
 public:
  RealWorkspace(std::string path, UniqueFd root, const AtomicFileOptions& file_options)
      : Workspace(std::move(path)), root_(std::move(root)), file_options_(file_options) {}

  bool Exists(absl::string_view rel) override { return ExistsBeneath(root_.get(), rel); }
  int FirstExisting(absl::string_view first, absl::string_view second) override {
    return FirstExistingBeneath(root_.get(), first, second);
  }

  std::unique_ptr<ExistenceProbe> NewProbe() override { return std::make_unique<Probe>(path()); }

  absl::StatusOr<std::unique_ptr<LineSource>> OpenLines(absl::string_view rel) override {
    auto file = OpenFileBeneath(root_.get(), path(), rel);
    if (!file.ok()) return file.status();
    auto reader = LineReader::FromFd(std::move(*file), absl::StrCat(path(), "/", rel));
    if (!reader.ok()) return reader.status();
    return std::make_unique<ReaderSource>(std::move(*reader));
  }

  absl::Status WriteFile(absl::string_view rel, absl::string_view text) override {
    auto file = AtomicFile::OpenBeneath(root_.get(), path(), std::string(rel), file_options_);
    if (!file.ok()) return file.status();
    if (absl::Status s = (*file)->Append(text); !s.ok()) return s;
    return (*file)->Commit();
  }

  absl::Status Remove(absl::string_view rel) override { return UnlinkBeneath(root_.get(), path(), rel); }
  absl::Status RemoveTree(absl::string_view rel) override {
    auto [dir, name] = SplitDirName(rel);
    auto parent = OpenDirBeneath(root_.get(), path(), dir, /*create=*/false);
    if (absl::IsNotFound(parent.status())) return absl::OkStatus();
    if (!parent.ok()) return parent.status();
    return RemoveTreeAt(parent->get(), std::string(name), absl::StrCat(path(), "/", rel));
  }

 private:
  const UniqueFd root_;
  const AtomicFileOptions& file_options_;
};

}  // namespace

absl::StatusOr<std::string> RealWorkspaceFs::RealPath(const std::string& path) { return asflow::RealPath(path); }

absl::StatusOr<std::unique_ptr<Workspace>> RealWorkspaceFs::Open(const std::string& abs_path) {
  absl::StatusOr<UniqueFd> root = OpenRoot(abs_path);
  if (!root.ok()) return absl::Status(root.status().code(), absl::StrCat("workspace ", root.status().message()));
  return std::make_unique<RealWorkspace>(abs_path, std::move(*root), file_options_);
}

bool RealWorkspaceFs::IsPrivateDir(const std::string& dir) {
  struct stat st;
  return lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
         (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

bool RealWorkspaceFs::KillProcessGroup(pid_t pgid) { return pgid > 1 && kill(-pgid, SIGKILL) == 0; }

std::string RealWorkspaceFs::BootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

}  // namespace asflow
