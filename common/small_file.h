// Small whole-file reads shared by asflowd and asflowctl: PEM files and the
// bearer-token file, whose format both sides must agree on. Thread-safe.
#ifndef ASFLOW_COMMON_SMALL_FILE_H_
#define ASFLOW_COMMON_SMALL_FILE_H_

#include <string>

#include "absl/status/statusor.h"

namespace asflow {

// The whole file; NotFound "<path>: cannot be read" otherwise.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path);

// A token file: its first line, surrounding white space removed.
// InvalidArgument names the file when it cannot be read or the token is
// empty.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace asflow

#endif  // ASFLOW_COMMON_SMALL_FILE_H_
