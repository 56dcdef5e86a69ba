#include "server/http_auth.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace asflow {
namespace {

// Cookie values may not hold ';', ',', spaces or quotes: the token is
// stored percent-encoded (all but unreserved characters).
std::string PercentEncode(absl::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::string_view("0123456789ABCDEF" + (c >> 4), 1),
                      absl::string_view("0123456789ABCDEF" + (c & 15), 1));
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hi = 0, lo = 0;
    if (s[i] == '%' && i + 2 < s.size() && (hi = HexValue(s[i + 1])) >= 0 && (lo = HexValue(s[i + 2])) >= 0) {
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

bool HttpAuthorized(const TokenCheck& tokens, const HttpCredentials& creds) {
  if (!tokens.required()) return true;
  absl::string_view bearer = creds.authorization;
  if (absl::ConsumePrefix(&bearer, "Bearer ")) return tokens.Matches(bearer);
  std::string cookie = PercentDecode(CookieValue(creds.cookie, kTokenCookie));
  if (cookie.empty() || !tokens.Matches(cookie)) return false;
  bool safe = creds.method == "GET" || creds.method == "HEAD";
  return safe || creds.request_header == "1";
}

std::string CookieValue(absl::string_view header, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(header, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) return std::string(part);
  }
  return "";
}

std::string TokenCookie(absl::string_view token, bool tls) {
  return absl::StrCat(kTokenCookie, "=", PercentEncode(token), "; Path=/; HttpOnly; SameSite=Strict", tls ? "; Secure" : "");
}

std::string SafeNextPath(absl::string_view next) {
  // A path of this site: "/x", never "//host" or "/\host" (both leave it in
  // browsers), no scheme, no control characters.
  if (next.size() < 1 || next[0] != '/' || (next.size() > 1 && (next[1] == '/' || next[1] == '\\'))) {
    return "/";
  }
  for (char c : next) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "/";
  }
  return std::string(next);
}

}  // namespace asflow
