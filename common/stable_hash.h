// A short content hash that never changes between builds, hosts or runs, for
// naming outputs ("*" in an `on` template). Not cryptographic.
#ifndef ASFLOW_COMMON_STABLE_HASH_H_
#define ASFLOW_COMMON_STABLE_HASH_H_

#include <string>

#include "absl/strings/string_view.h"

namespace asflow {

// FNV-1a 64-bit of data as 16 lowercase hex digits.
std::string StableHash(absl::string_view data);

}  // namespace asflow

#endif  // ASFLOW_COMMON_STABLE_HASH_H_
