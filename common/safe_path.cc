#include "common/safe_path.h"

#include <algorithm>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"

namespace asflow {
namespace {

std::string Quote(absl::string_view s) {
  return absl::StrCat("\"", absl::Utf8SafeCEscape(s), "\"");
}

}  // namespace

absl::StatusOr<std::string> NormalizeOutputPath(absl::string_view rel) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("output path ", Quote(rel), " ", why));
  };
  if (rel.empty()) return bad("is empty");
  if (rel.find('\0') != absl::string_view::npos) return bad("contains NUL");
  if (rel.front() == '/') return bad("is absolute; it must be relative to the workspace");
  if (rel.back() == '/') return bad("ends with '/'; it must name a file");
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") return bad("has a '..' component; it must stay inside the workspace");
    parts.push_back(part);
  }
  // "." and "a/." name a directory, not a file.
  if (parts.empty() || rel == "." || absl::EndsWith(rel, "/.")) {
    return bad("does not name a file");
  }
  return absl::StrJoin(parts, "/");
}

std::string ErrorPathFor(absl::string_view output_path,
                         absl::string_view on_template) {
  absl::string_view base = on_template;
  if (size_t slash = base.rfind('/'); slash != absl::string_view::npos) {
    base = base.substr(slash + 1);
  }
  absl::string_view tail = base;
  size_t search_from = 1;  // a leading dot (".hidden") is not an extension
  if (size_t brace = base.rfind('}'); brace != absl::string_view::npos) {
    tail = base.substr(brace + 1);
    search_from = 0;
  }
  std::string suffix;
  if (size_t dot = tail.find('.', std::min(search_from, tail.size()));
      dot != absl::string_view::npos) {
    suffix = absl::StrReplaceAll(tail.substr(dot), {{"{{", "{"}});
  }
  absl::string_view stem = output_path;
  if (!suffix.empty() && absl::EndsWith(stem, suffix) &&
      stem.size() > suffix.size()) {
    stem.remove_suffix(suffix.size());
  }
  return absl::StrCat(stem, ".err");
}

std::string ExpandStar(absl::string_view path, absl::string_view hash, const std::vector<size_t>* only_at) {
  size_t slash = path.rfind('/');
  size_t start = slash == absl::string_view::npos ? 0 : slash + 1;
  std::string out(path.substr(0, start));
  for (size_t i = start; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '*' && (only_at == nullptr || std::binary_search(only_at->begin(), only_at->end(), i))) {
      out.append(hash.data(), hash.size());
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace asflow
