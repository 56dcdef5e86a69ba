#include "common/template.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace asflow {
namespace {

bool IsNameStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }

absl::Status TemplateError(absl::string_view what, size_t index,
                           absl::string_view text) {
  // %v-free quoting: Utf8SafeCEscape keeps control bytes readable and UTF-8 intact in messages.
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s at column %d in \"%s\"", what, index + 1, absl::Utf8SafeCEscape(text)));
}

}  // namespace

bool IsValidParamName(absl::string_view name) {
  if (name.empty() || !IsNameStart(name[0])) return false;
  return std::all_of(name.begin(), name.end(), IsNameChar);
}

absl::StatusOr<Template> Template::Compile(absl::string_view text) {
  Template t;
  t.text_ = std::string(text);
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) t.pieces_.push_back(Piece{std::move(literal), -1});
    literal.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '}') {
      if (i + 1 < text.size() && text[i + 1] == '}') {
        literal.push_back('}');
        ++i;
        continue;
      }
      return TemplateError("'}' without '{'", i, text);
    }
    if (c != '{') {
      literal.push_back(c);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '{') {
      literal.push_back('{');
      ++i;
      continue;
    }
    size_t close = text.find('}', i + 1);
    if (close == absl::string_view::npos) {
      return TemplateError("unclosed '{'", i, text);
    }
    absl::string_view name = text.substr(i + 1, close - i - 1);
    if (name.empty()) return TemplateError("empty parameter name", i, text);
    if (!IsValidParamName(name)) {
      return TemplateError(
          absl::StrCat("bad parameter name '", absl::Utf8SafeCEscape(name),
                       "' (expected [A-Za-z_][A-Za-z0-9_]*)"),
          i, text);
    }
    flush();
    auto it = std::find(t.names_.begin(), t.names_.end(), name);
    int index = static_cast<int>(it - t.names_.begin());
    if (it == t.names_.end()) t.names_.emplace_back(name);
    t.pieces_.push_back(Piece{std::string(), index});
    i = close;
  }
  flush();
  return t;
}

absl::StatusOr<std::string> Template::Render(
    absl::FunctionRef<const std::string*(absl::string_view)> lookup,
    std::vector<size_t>* literal_stars) const {
  std::vector<const std::string*> values(names_.size());
  for (size_t i = 0; i < names_.size(); ++i) {
    values[i] = lookup(names_[i]);
    if (values[i] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown parameter '", names_[i], "' in \"",
                       absl::Utf8SafeCEscape(text_), "\""));
    }
  }
  std::string out;
  for (const Piece& p : pieces_) {
    if (p.name_index < 0) {
      if (literal_stars != nullptr) {
        for (size_t i = p.literal.find('*'); i != std::string::npos; i = p.literal.find('*', i + 1)) {
          literal_stars->push_back(out.size() + i);
        }
      }
      out += p.literal;
    } else {
      out += *values[p.name_index];
    }
  }
  return out;
}

}  // namespace asflow
