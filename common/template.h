// Output-path and argv templates: "{name}" placeholders, "{{" and "}}" for
// literal braces. Compiled once when a spec is submitted, rendered per
// instance. Immutable after Compile; safe to share between threads.
#ifndef ASFLOW_COMMON_TEMPLATE_H_
#define ASFLOW_COMMON_TEMPLATE_H_

#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace asflow {

// A compiled template. Parameter names are [A-Za-z_][A-Za-z0-9_]*.
class Template {
 public:
  // Parses text. InvalidArgument quoting the text and the 1-based column of
  // the offending character: an unclosed '{', an empty or malformed name, or
  // a '}' without '{'.
  static absl::StatusOr<Template> Compile(absl::string_view text);

  // Distinct parameter names in order of first appearance.
  const std::vector<std::string>& names() const { return names_; }

  // Substitutes every placeholder with lookup(name). lookup returns nullptr
  // for an unknown name, which yields InvalidArgument
  // "unknown parameter 'x' in \"<text>\"". With `literal_stars`, appends
  // the offsets in the result of the template's own '*' characters (not
  // those a parameter value brought).
  absl::StatusOr<std::string> Render(
      absl::FunctionRef<const std::string*(absl::string_view)> lookup,
      std::vector<size_t>* literal_stars = nullptr) const;

  // The source text as given to Compile.
  const std::string& text() const { return text_; }

 private:
  // A literal run (name_index < 0) or a placeholder names_[name_index].
  struct Piece {
    std::string literal;
    int name_index = -1;
  };

  Template() = default;

  std::string text_;
  std::vector<Piece> pieces_;
  std::vector<std::string> names_;
};

// True if name matches [A-Za-z_][A-Za-z0-9_]* (a template parameter name).
bool IsValidParamName(absl::string_view name);

}  // namespace asflow

#endif  // ASFLOW_COMMON_TEMPLATE_H_
