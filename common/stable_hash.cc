#include "common/stable_hash.h"

#include <cstdint>

namespace asflow {

std::string StableHash(absl::string_view data) {
  // FNV-1a is fixed by its published constants, unlike std::hash.
  uint64_t h = 14695981039346656037ULL;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[h & 0xf];
    h >>= 4;
  }
  return out;
}

}  // namespace asflow
