#include "common/paths.h"

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace asflow {
namespace {

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* v = getenv(name);
  return (v != nullptr && *v != '\0') ? std::string(v) : fallback;
}

}  // namespace

std::string HomeDir() {
  const char* home = getenv("HOME");
  if (home != nullptr && *home != '\0') return home;
  struct passwd* pw = getpwuid(getuid());
  return pw != nullptr ? pw->pw_dir : "/";
}

std::string DefaultSocketPath() {
  const char* xdg = getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg != '\0') return absl::StrCat(xdg, "/asflow/asflowd.sock");
  return absl::StrCat(HomeDir(), "/.asflow/asflowd.sock");
}

std::string DefaultStatePath() {
  return absl::StrCat(EnvOr("XDG_STATE_HOME", HomeDir() + "/.local/state"),
                      "/asflow/state.db");
}

std::string UserDaemonConfigPath() {
  return absl::StrCat(EnvOr("XDG_CONFIG_HOME", HomeDir() + "/.config"), "/asflow/asflowd.conf");
}

std::string DefaultLogPath() {
  std::string state = DefaultStatePath();
  return state.substr(0, state.rfind('/')) + "/asflowd.log";
}

absl::Status MakeDirs(const std::string& dir, int mode) {
  if (dir.empty()) return absl::OkStatus();
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(dir, ": not a directory"));
  }
  size_t slash = dir.rfind('/');
  if (slash != std::string::npos && slash > 0) {
    absl::Status parent = MakeDirs(dir.substr(0, slash), 0755);
    if (!parent.ok()) return parent;
  }
  if (mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path) {
  auto visit = [](const char* p, const struct stat*, int, struct FTW*) {
    return ::remove(p) == 0 || errno == ENOENT ? 0 : -1;
  };
  if (nftw(path.c_str(), visit, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
    return absl::InternalError(absl::StrCat("remove ", path, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  }
  return std::string(buf);
}

bool PathIsUnder(const std::string& path, const std::string& root) {
  if (root == "/") return !path.empty() && path[0] == '/';
  if (path.size() < root.size() || path.compare(0, root.size(), root) != 0) return false;
  return path.size() == root.size() || path[root.size()] == '/';
}

}  // namespace asflow
