// What a binary was built from, for --version and the worker handshake:
// the release (CMakeLists.txt's project version) and the git commit
// (written at build time by cmake/GitCommit.cmake). Constants; thread-safe.
#ifndef ASFLOW_COMMON_VERSION_H_
#define ASFLOW_COMMON_VERSION_H_

#include <string>

namespace asflow {

// The release, e.g. "0.2.0" (ASFLOW_VERSION, defined by CMake).
extern const char kVersion[];
// The commit, e.g. "f8b9ba4c1d2e", "f8b9ba4c1d2e-dirty" or "unknown".
extern const char kGitCommit[];

// "PROGRAM 0.2.0 (commit f8b9ba4c1d2e)".
std::string VersionLine(const std::string& program);

}  // namespace asflow

#endif  // ASFLOW_COMMON_VERSION_H_
