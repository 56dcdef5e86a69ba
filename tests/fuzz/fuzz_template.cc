// libFuzzer target: output-path and argv templates and the output path
// resolver. Input: a template, then "\n"-separated values bound to the
// names it uses in order. The template is compiled and rendered, its own
// '*' expanded, the result normalized (NormalizeOutputPath) and its .err
// path derived, as the scheduler does for every instance.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/safe_path.h"
#include "common/stable_hash.h"
#include "common/template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size), '\n');
  auto t = asflow::Template::Compile(parts[0]);
  if (!t.ok()) return 0;
  std::map<std::string, std::string> values;
  for (size_t i = 0; i < t->names().size(); ++i) {
    values[t->names()[i]] = i + 1 < parts.size() ? parts[i + 1] : "";
  }
  std::vector<size_t> stars;
  auto rendered = t->Render(
      [&](absl::string_view name) -> const std::string* {
        auto it = values.find(std::string(name));
        return it == values.end() ? nullptr : &it->second;
      },
      &stars);
  if (!rendered.ok()) __builtin_trap();  // every name it uses is bound
  for (size_t i = 0; i < stars.size(); ++i) {
    if (stars[i] >= rendered->size() || (*rendered)[stars[i]] != '*' || (i > 0 && stars[i] <= stars[i - 1])) {
      __builtin_trap();  // offsets must point at '*', ascending
    }
  }
  std::string path = asflow::ExpandStar(*rendered, asflow::StableHash(*rendered), &stars);
  auto rel = asflow::NormalizeOutputPath(path);
  if (rel.ok()) {
    if (rel->empty() || (*rel)[0] == '/' || rel->find('\0') != std::string::npos) __builtin_trap();
    (void)asflow::ErrorPathFor(*rel, parts[0]);
  }
  return 0;
}
