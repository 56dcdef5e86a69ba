#include "common/version.h"

#include "absl/strings/str_cat.h"

namespace asflow {

const char kVersion[] = ASFLOW_VERSION;

std::string VersionLine(const std::string& program) {
  return absl::StrCat(program, " ", kVersion, " (commit ", kGitCommit, ")");
}

}  // namespace asflow
